// `mlx-mesh setup` for real: a clean data dir gets a working venv (pip against PyPI), a second run
// installs nothing and is much faster, and checkPythonEnv tells join what to run when it is missing.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { checkPythonEnv, findInterpreter, readStamp, versionOk } from '../../peer/python-env.ts';
import { runCli } from '../helpers/process.ts';

const PYTHON = execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlx-mesh-setup-'));

const cli = (args: string[]) => runCli(args);

test.after(() => fs.rmSync(dataDir, { recursive: true, force: true }));

test('before setup, checkPythonEnv fails and says to run setup', async () => {
  const check = await checkPythonEnv({ dataDir, env: { ...process.env, MLX_MESH_PYTHON: path.join(dataDir, 'nope', 'python') } });
  assert.not.ok(check.ok);
  assert.match(check.fix, /MLX_MESH_PYTHON|mlx-mesh setup/);
  assert.ok(check.problems.some((p) => /cannot run MLX/.test(p)), check.problems.join('\n'));
});

let cold = 0;

test('setup on a clean data dir builds a working venv and prints the versions', async () => {
  const r = await cli(['setup', '--data-dir', dataDir, '--python', PYTHON]);
  cold = r.seconds;
  assert.is(r.code, 0, `${r.out}\n${r.err}`);
  assert.match(r.out, /✅ venv/);
  assert.match(r.out, /✅ install/);
  assert.match(r.out, /Installed with (pip|uv)/);
  assert.match(r.out, /mlx\s+0\.\d+/);
  assert.match(r.out, /mlx-lm\s+0\.\d+/);
  assert.ok(fs.existsSync(path.join(dataDir, 'venv', 'bin', 'python')));
  assert.ok(readStamp(path.join(dataDir, 'venv'))?.versions.mlx);
});

test('a second setup installs nothing and is much faster', async () => {
  const r = await cli(['setup', '--data-dir', dataDir, '--python', PYTHON, '--json']);
  assert.is(r.code, 0, r.err);
  const result = JSON.parse(r.out);
  assert.is(result.changed, false);
  assert.is(result.installer, 'none');
  assert.match(r.err, /nothing to install/);
  assert.ok(r.seconds * 3 < cold, `warm ${r.seconds} s vs cold ${cold} s`);
  process.stdout.write(`  setup cold ${cold.toFixed(1)} s, warm ${r.seconds.toFixed(1)} s\n`);
});

test('after setup, checkPythonEnv passes with the venv and its versions', async () => {
  const env = { ...process.env };
  delete env.MLX_MESH_PYTHON;
  const check = await checkPythonEnv({ dataDir, env });
  assert.ok(check.ok, check.problems.join('\n'));
  assert.is(check.python.source, 'venv');
  assert.ok(check.versions.mlx);
  assert.is(check.device, 'cpu');
});

test('a broken venv (its interpreter fails) is reported with the command that fixes it', async () => {
  const env = { ...process.env };
  delete env.MLX_MESH_PYTHON;
  fs.rmSync(path.join(dataDir, 'venv', 'bin', 'python'));
  fs.writeFileSync(path.join(dataDir, 'venv', 'bin', 'python'), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
  const check = await checkPythonEnv({ dataDir, env });
  assert.not.ok(check.ok);
  assert.match(check.fix, new RegExp(`mlx-mesh setup --data-dir ${dataDir}`));
});

test('interpreter search refuses old or missing interpreters and never tries a bare python', async () => {
  const missing = await findInterpreter({ python: '/nonexistent/python3' });
  assert.is(missing.found, null);
  assert.not.ok(versionOk({ major: 3, minor: 9 }));
  assert.ok(versionOk({ major: 3, minor: 10 }));
  const { interpreterCandidates } = await import('../../peer/python-env.ts');
  for (const p of ['darwin', 'linux'] as const) assert.not.ok(interpreterCandidates(p).some((c) => path.basename(c) === 'python'));
  assert.ok(interpreterCandidates('darwin').includes('/opt/homebrew/bin/python3.12'));
});

test.run();
