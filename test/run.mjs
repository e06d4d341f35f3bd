#!/usr/bin/env node
// The project's test command (`npm test`): builds dist/ (the CLI the tests spawn), makes sure the test
// data dir has the engine's Python environment (with the test extras), runs every uvu file in its own
// process (a hang or crash stays contained and is reported), then the type check and the engine's
// pytest suite, and ends with one line `N passed, N failed`.
// Usage: node test/run.mjs [substring...]   — only files whose path contains one of the substrings.
//
// Tests never touch the user's ~/.mlx-mesh: MLX_MESH_DATA_DIR is set to a test data dir
// (default ~/.cache/mlx-mesh-test) for this process and every test.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const filters = process.argv.slice(2);
// Generous: on a loaded machine the SSH bootstrap test alone can take minutes.
const FILE_TIMEOUT_MS = Number(process.env.MLX_MESH_TEST_TIMEOUT_MS ?? 600_000);
const dataDir = (process.env.MLX_MESH_DATA_DIR ??= path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'mlx-mesh-test'));
const tsc = path.join(root, 'node_modules/typescript/bin/tsc');
// Engines and the mlx_lm reference run BLIS on one thread, as a user's do (blas.py), so rows_gemm
// (peer/engine/mlx_mesh_engine/rows_gemm.py) takes their batched products and the tests check that path.

function findTests(dir) {
  const out = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...findTests(p));
    else if (entry.name.endsWith('.test.ts')) out.push(p);
  }
  return out.sort();
}

function run(cmd, args, opts = {}) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], detached: true, ...opts });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const timer = setTimeout(() => {
      output += `\n[test runner] timed out after ${FILE_TIMEOUT_MS / 1000} s: killed\n`;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {}
    }, FILE_TIMEOUT_MS);
    child.on('error', (err) => (output += `\n[test runner] ${err.message}\n`));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, signal, output, seconds: (Date.now() - started) / 1000 });
    });
  });
}

const venvPython = path.join(dataDir, 'venv', 'bin', 'python');
function python() {
  return process.env.MLX_MESH_PYTHON ?? (fs.existsSync(venvPython) ? venvPython : 'python3');
}

/** The managed venv of the test data dir, built by the product's own `setup`, plus pytest. */
async function ensureEngineEnv() {
  if (process.env.MLX_MESH_PYTHON) return null;
  const probe = await run(venvPython, ['-c', 'import mlx_lm, cbor2, pytest']);
  if (probe.code === 0) return null;
  process.stdout.write(`· building the engine environment in ${dataDir} (first run only)\n`);
  const setup = await run(process.execPath, [path.join(root, 'bin/mlx-mesh.js'), 'setup', '--data-dir', dataDir]);
  if (setup.code !== 0) return `mlx-mesh setup failed:\n${setup.output}`;
  const extras = path.join(root, 'peer/engine/requirements-dev.txt');
  const pip = await run(venvPython, ['-m', 'pip', 'install', '-q', '--disable-pip-version-check', '-r', extras]);
  return pip.code === 0 ? null : `installing the test extras failed:\n${pip.output}`;
}

let passed = 0;
let failed = 0;
const failures = [];

// Each test file and the pytest run get a temporary directory of their own (TMPDIR, which Node's
// os.tmpdir(), Python's tempfile and pytest's tmp_path follow), removed when they end: the data dirs,
// fetched weights and sockets the tests make do not pile up in /tmp from run to run.
const runTmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mlx-mesh-run-'));
async function runWithOwnTmp(cmd, args, env = process.env) {
  const tmp = fs.mkdtempSync(path.join(runTmp, 't'));
  try {
    return await run(cmd, args, { env: { ...env, TMPDIR: tmp } });
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

// dist/ is what bin/mlx-mesh.js runs, so the build comes first; a build error fails the run here.
{
  const r = await run(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.build.json')]);
  const ok = r.code === 0;
  passed += ok ? 1 : 0;
  failed += ok ? 0 : 1;
  process.stdout.write(`${ok ? '✔' : '✘'} build (tsc -p tsconfig.build.json)  ${r.seconds.toFixed(1)} s\n`);
  if (!ok) failures.push(['build', r.output]);
}
{
  const problem = await ensureEngineEnv();
  if (problem) {
    failed += 1;
    failures.push(['engine environment', problem]);
    process.stdout.write('✘ engine environment\n');
  }
}

const files = findTests(path.join(root, 'test')).filter(
  (f) => filters.length === 0 || filters.some((s) => path.relative(root, f).includes(s)),
);
function uvuCounts(r) {
  const total = Number(/Total:\s+(\d+)/.exec(r.output)?.[1] ?? 0);
  const ok = Number(/Passed:\s+(\d+)/.exec(r.output)?.[1] ?? 0);
  let bad = total - ok;
  if (r.code !== 0 && bad === 0) bad = 1; // crashed or hung before uvu could count
  return { total, ok, bad };
}

// A file that fails is run once more, and both outcomes are printed: a failure that does not repeat
// is reported as flaky (with its first output) instead of hiding, and one that repeats fails the run.
const flaky = [];
for (const file of files) {
  const rel = path.relative(root, file);
  let r = await runWithOwnTmp(process.execPath, ['--import', 'tsx', file]);
  let { total, ok, bad } = uvuCounts(r);
  if (bad && !process.env.MLX_MESH_TEST_NO_RETRY) {
    process.stdout.write(`· ${rel} failed ${bad} of ${total || ok + bad}; running it again\n`);
    const first = r;
    r = await runWithOwnTmp(process.execPath, ['--import', 'tsx', file]);
    ({ total, ok, bad } = uvuCounts(r));
    if (!bad) flaky.push([rel, first.output]);
  }
  passed += ok;
  failed += bad;
  const mark = bad ? '✘' : '✔';
  process.stdout.write(`${mark} ${rel}  ${ok}/${total || ok + bad}  ${r.seconds.toFixed(1)} s\n`);
  if (bad) failures.push([rel, r.output]);
}

// The type checker is a test too: a type error is a bug nobody has hit yet.
if (filters.length === 0 || filters.includes('typecheck')) {
  const r = await run(process.execPath, [tsc, '--noEmit', '-p', root]);
  const ok = r.code === 0;
  passed += ok ? 1 : 0;
  failed += ok ? 0 : 1;
  process.stdout.write(`${ok ? '✔' : '✘'} typecheck (tsc --noEmit)  ${r.seconds.toFixed(1)} s\n`);
  if (!ok) failures.push(['typecheck', r.output]);
}

const runPytest = filters.length === 0 || filters.some((s) => 'peer/engine/tests'.includes(s) || s === 'pytest');
if (runPytest && fs.existsSync(path.join(root, 'peer/engine/tests'))) {
  const r = await runWithOwnTmp(python(), ['-m', 'pytest', 'peer/engine/tests', '-q', '-p', 'no:cacheprovider'], {
    ...process.env,
    PYTHONPATH: path.join(root, 'peer/engine'),
  });
  const ok = Number(/(\d+) passed/.exec(r.output)?.[1] ?? 0);
  let bad = Number(/(\d+) failed/.exec(r.output)?.[1] ?? 0) + Number(/(\d+) errors?/.exec(r.output)?.[1] ?? 0);
  if (r.code !== 0 && bad === 0) bad = 1;
  passed += ok;
  failed += bad;
  process.stdout.write(`${bad ? '✘' : '✔'} pytest peer/engine/tests  ${ok}/${ok + bad}  ${r.seconds.toFixed(1)} s\n`);
  if (bad) failures.push(['pytest peer/engine/tests', r.output]);
}

for (const [name, output] of flaky) {
  process.stdout.write(`\n──── flaky (failed once, passed when run again): ${name} ────\n${output.slice(-3000)}\n`);
}
for (const [name, output] of failures) {
  process.stdout.write(`\n──── ${name} ────\n${output.slice(-6000)}\n`);
}
fs.rmSync(runTmp, { recursive: true, force: true });
process.stdout.write(`\n${passed} passed, ${failed} failed\n`);
process.exitCode = failed ? 1 : 0;
