// Which Python runs the engine, and the managed venv it normally lives in.
// resolvePython picks the interpreter for the engine: --python, MLX_MESH_PYTHON, the managed venv in the
// data dir, then python3 on PATH (never a bare `python`, which is Python 2 or missing on many Macs).
// The rest finds a base interpreter ≥ 3.10, builds/repairs the venv, installs the pinned requirements and
// verifies them with a tiny MLX computation, so `setup`, `join` and `doctor` share one notion of "ready".
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { meshError } from '../core/errors.ts';
import { ENGINE_DIR } from '../core/paths.ts';

export type PythonSource = 'flag' | 'env' | 'venv' | 'path';

export interface ResolvedPython {
  path: string;
  source: PythonSource;
}

export function managedVenvDir(dataDir: string): string {
  return path.join(dataDir, 'venv');
}

export function venvPython(venvDir: string): string {
  return path.join(venvDir, 'bin', 'python');
}

export function resolvePython(opts: { python?: string; dataDir: string; env?: NodeJS.ProcessEnv }): ResolvedPython {
  const env = opts.env ?? process.env;
  if (opts.python) return { path: opts.python, source: 'flag' };
  if (env.MLX_MESH_PYTHON) return { path: env.MLX_MESH_PYTHON, source: 'env' };
  const managed = venvPython(managedVenvDir(opts.dataDir));
  if (fs.existsSync(managed)) return { path: managed, source: 'venv' };
  return { path: 'python3', source: 'path' };
}

export const MIN_PYTHON: [number, number] = [3, 10];
export const REQUIREMENTS_FILE = path.join(ENGINE_DIR, 'requirements.txt');
const STAMP = '.mlx-mesh-stamp.json';

export interface PythonProbe {
  path: string;
  version: string;
  major: number;
  minor: number;
  /** CPU architecture the interpreter runs as (an x86 Python under Rosetta cannot load MLX). */
  machine: string;
  executable: string;
}

function run(cmd: string, args: string[], timeoutMs: number, env?: NodeJS.ProcessEnv, signal?: AbortSignal) {
  return new Promise<{ code: number; stdout: string; stderr: string; error?: NodeJS.ErrnoException }>((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, env: env ?? process.env, signal }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 127) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr), error: (error ?? undefined) as NodeJS.ErrnoException | undefined });
    });
  });
}

/** Runs the interpreter once to learn its version and architecture; null when it does not run. */
export async function probePython(python: string): Promise<PythonProbe | null> {
  const script = 'import sys, platform, json; print(json.dumps([list(sys.version_info[:3]), platform.machine(), sys.executable]))';
  const r = await run(python, ['-c', script], 15_000);
  if (r.code !== 0) return null;
  try {
    const [[major, minor, micro], machine, executable] = JSON.parse(r.stdout.trim().split('\n').pop()!);
    return { path: python, version: `${major}.${minor}.${micro}`, major, minor, machine, executable };
  } catch {
    return null;
  }
}

export function versionOk(p: Pick<PythonProbe, 'major' | 'minor'>): boolean {
  return p.major > MIN_PYTHON[0] || (p.major === MIN_PYTHON[0] && p.minor >= MIN_PYTHON[1]);
}

/** Where to look for a base interpreter, best first: Homebrew and python.org on macOS, then PATH. */
export function interpreterCandidates(platform: NodeJS.Platform = process.platform): string[] {
  const minors = [13, 12, 11, 10];
  const out: string[] = [];
  if (platform === 'darwin') {
    for (const prefix of ['/opt/homebrew/bin', '/usr/local/bin']) {
      out.push(...minors.map((m) => `${prefix}/python3.${m}`), `${prefix}/python3`);
    }
    out.push(...minors.map((m) => `/Library/Frameworks/Python.framework/Versions/3.${m}/bin/python3`));
  }
  out.push(...minors.map((m) => `python3.${m}`), 'python3');
  // Apple's /usr/bin/python3 is 3.9 on current macOS: it is probed last and refused by the version check.
  return out;
}

export interface FindResult {
  found: PythonProbe | null;
  /** Interpreters that ran but were unsuitable, with the reason. */
  rejected: { path: string; reason: string }[];
}

export async function findInterpreter(opts: { python?: string; platform?: NodeJS.Platform; arch?: string } = {}): Promise<FindResult> {
  const platform = opts.platform ?? process.platform;
  const arch = opts.arch ?? process.arch;
  const rejected: FindResult['rejected'] = [];
  const candidates = opts.python ? [opts.python] : interpreterCandidates(platform);
  const seen = new Set<string>();
  for (const c of candidates) {
    if (c.startsWith('/') && !fs.existsSync(c)) continue;
    const p = await probePython(c);
    if (!p) {
      if (opts.python) rejected.push({ path: c, reason: 'does not run' });
      continue;
    }
    if (seen.has(p.executable)) continue;
    seen.add(p.executable);
    if (!versionOk(p)) {
      rejected.push({ path: c, reason: `Python ${p.version} is older than ${MIN_PYTHON.join('.')}` });
      continue;
    }
    if (platform === 'darwin' && arch === 'arm64' && p.machine !== 'arm64') {
      rejected.push({ path: c, reason: `runs as ${p.machine} (Rosetta); MLX needs a native arm64 Python` });
      continue;
    }
    return { found: p, rejected };
  }
  return { found: null, rejected };
}

export function installHint(platform: NodeJS.Platform = process.platform): string {
  return platform === 'darwin'
    ? 'install Python 3.12 with "brew install python@3.12" (or from python.org), then run "mlx-mesh setup"'
    : 'install Python ≥ 3.10 with venv support (e.g. "apt-get install python3 python3-venv"), then run "mlx-mesh setup"';
}

export interface Stamp {
  requirementsSha256: string;
  python: string;
  installer: string;
  versions: Record<string, string>;
  createdAt: string;
}

export function requirementsHash(file = REQUIREMENTS_FILE): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

export function readStamp(venvDir: string): Stamp | null {
  try {
    return JSON.parse(fs.readFileSync(path.join(venvDir, STAMP), 'utf8')) as Stamp;
  } catch {
    return null;
  }
}

export interface Verified {
  ok: boolean;
  versions: Record<string, string>;
  device?: string;
  metal?: boolean;
  /** The CBLAS the engine's CPU matmuls would use ("bundled" or a library), as its hello says. */
  blas?: string;
  /** Whether rows_gemm stands in front of it: "on", or "off: why". */
  rows_gemm?: string;
  /** When it is on: 2 rows through it ÷ two one-row products by the BLAS (below 1 is what it is for). */
  rows_gemm_speed?: number;
  /** The malloc the engine preloads ("libjemalloc.so.2"), or "system". */
  malloc?: string;
  error?: string;
}

// `mlx_mesh_engine.verify` imports what the engine imports and runs one small MLX computation; with
// `timeRowsGemm` (doctor) it also times rows_gemm against the BLAS (~20 ms).
export async function verifyPython(python: string, timeoutMs = 60_000, signal?: AbortSignal, timeRowsGemm = false): Promise<Verified> {
  const env = { ...process.env, PYTHONWARNINGS: 'ignore', PYTHONPATH: ENGINE_DIR };
  const r = await run(python, ['-m', 'mlx_mesh_engine.verify', ...(timeRowsGemm ? ['--time-rows-gemm'] : [])], timeoutMs, env, signal);
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    const v = JSON.parse(line) as Verified;
    return { ok: !!v.ok, versions: v.versions ?? {}, device: v.device, metal: v.metal, blas: v.blas, rows_gemm: v.rows_gemm, rows_gemm_speed: v.rows_gemm_speed, malloc: v.malloc, error: v.error };
  } catch {
    const why = r.error?.code === 'ENOENT' ? `${python} does not exist` : (r.stderr.trim().split('\n').pop() ?? `exit ${r.code}`);
    return { ok: false, versions: {}, error: why };
  }
}

export interface PythonEnvCheck {
  ok: boolean;
  python: ResolvedPython;
  versions: Record<string, string>;
  device?: string;
  blas?: string;
  /** rows_gemm in front of the BLAS: "on", or "off: why" (Linux; absent elsewhere). */
  rowsGemm?: string;
  /** When it is on and `timeRowsGemm` was asked: 2 rows through it ÷ two single rows by the BLAS. */
  rowsGemmSpeed?: number;
  /** The malloc the engine preloads, or "system" (Linux; allocator.py). */
  malloc?: string;
  problems: string[];
  /** The one command (or step) that makes this environment work. */
  fix: string;
}

/** What `join` and `doctor` call: is the engine's interpreter usable, and if not, what to run. */
export async function checkPythonEnv(opts: { python?: string; dataDir: string; env?: NodeJS.ProcessEnv; signal?: AbortSignal; timeRowsGemm?: boolean }): Promise<PythonEnvCheck> {
  const python = resolvePython(opts);
  const problems: string[] = [];
  const dataFlag = opts.dataDir ? ` --data-dir ${opts.dataDir}` : '';
  let fix = '';
  if (python.source === 'venv') {
    const stamp = readStamp(managedVenvDir(opts.dataDir));
    if (!stamp) problems.push(`the venv ${managedVenvDir(opts.dataDir)} was not completed by "mlx-mesh setup"`);
    else if (stamp.requirementsSha256 !== requirementsHash()) problems.push('the venv was built for other pinned requirements (mlx-mesh was upgraded)');
  } else if (python.source === 'path') {
    problems.push(`no managed venv at ${managedVenvDir(opts.dataDir)}; falling back to python3 on PATH`);
  }
  const v = await verifyPython(python.path, undefined, opts.signal, opts.timeRowsGemm);
  if (!v.ok) problems.push(`${python.path} (${python.source}) cannot run MLX: ${v.error}`);
  if (problems.length) {
    fix =
      python.source === 'flag' || python.source === 'env'
        ? `install the engine's packages into that interpreter ("${python.path} -m pip install -r ${REQUIREMENTS_FILE}") or drop ${python.source === 'flag' ? '--python' : 'MLX_MESH_PYTHON'} and run "mlx-mesh setup${dataFlag}"`
        : `run "mlx-mesh setup${dataFlag}"`;
  }
  // A working interpreter outside the venv is usable; only a failing import makes the check fail.
  return { ok: v.ok && !(python.source === 'venv' && problems.length), python, versions: v.versions, device: v.device, blas: v.blas, rowsGemm: v.rows_gemm, rowsGemmSpeed: v.rows_gemm_speed, malloc: v.malloc, problems, fix };
}

export type SetupStep = (event: { step: string; detail?: string; done?: boolean }) => void;

export interface SetupResult {
  python: string;
  venvDir: string;
  base: PythonProbe;
  installer: 'uv' | 'pip' | 'none';
  changed: boolean;
  versions: Record<string, string>;
  device?: string;
  seconds: number;
}

async function which(cmd: string): Promise<string | null> {
  const r = await run('sh', ['-c', `command -v ${cmd}`], 5000);
  return r.code === 0 ? r.stdout.trim() || null : null;
}

function tail(text: string, lines = 15): string {
  return text.trim().split('\n').slice(-lines).join('\n');
}

/** Creates or repairs `<dataDir>/venv` and installs the pinned requirements. Fast when nothing changed. */
export async function ensurePythonEnv(opts: {
  dataDir: string;
  python?: string;
  force?: boolean;
  onStep?: SetupStep;
}): Promise<SetupResult> {
  const started = Date.now();
  const step: SetupStep = opts.onStep ?? (() => {});
  const venvDir = managedVenvDir(opts.dataDir);
  const py = venvPython(venvDir);
  const reqHash = requirementsHash();

  // Fast path: the stamp matches these requirements (and --python's version, when given) and the imports
  // still work. Without --python an existing venv is kept even if a newer interpreter appeared since.
  const stamp = readStamp(venvDir);
  const existing = fs.existsSync(py) ? await probePython(py) : null;
  const wanted = opts.python ? await probePython(opts.python) : null;
  if (!opts.force && stamp && existing && stamp.requirementsSha256 === reqHash && stamp.python === existing.version && (!wanted || wanted.version === existing.version)) {
    step({ step: 'verify', detail: `${venvDir} is up to date (Python ${existing.version}), checking imports` });
    const v = await verifyPython(py);
    if (v.ok) {
      step({ step: 'verify', detail: `MLX works (${v.device}); nothing to install`, done: true });
      const base = wanted ?? existing;
      return { python: py, venvDir, base, installer: 'none', changed: false, versions: v.versions, device: v.device, seconds: (Date.now() - started) / 1000 };
    }
    step({ step: 'verify', detail: `imports fail (${v.error}); repairing` });
  }

  step({ step: 'interpreter', detail: opts.python ? `checking ${opts.python}` : 'looking for Python ≥ 3.10' });
  const { found: base, rejected } = await findInterpreter({ python: opts.python });
  if (!base) {
    const why = rejected.map((r) => `${r.path}: ${r.reason}`).join('; ');
    throw meshError('PYTHON_NOT_FOUND', `no Python ≥ ${MIN_PYTHON.join('.')} found${why ? ` (${why})` : ''}: ${installHint()}`);
  }
  step({ step: 'interpreter', detail: `${base.executable} (Python ${base.version}, ${base.machine})`, done: true });

  fs.mkdirSync(opts.dataDir, { recursive: true });
  if (existing && existing.version !== base.version) {
    step({ step: 'venv', detail: `venv uses Python ${existing.version}, rebuilding with ${base.version}` });
    fs.rmSync(venvDir, { recursive: true, force: true });
  } else if (fs.existsSync(venvDir) && !existing) {
    step({ step: 'venv', detail: 'venv is broken (its interpreter does not run), rebuilding' });
    fs.rmSync(venvDir, { recursive: true, force: true });
  }
  fs.rmSync(path.join(venvDir, STAMP), { force: true });

  const uv = await which('uv');
  if (!fs.existsSync(py)) {
    step({ step: 'venv', detail: `creating ${venvDir}` });
    const r = uv
      ? await run(uv, ['venv', '--seed', '--python', base.executable, venvDir], 300_000)
      : await run(base.executable, ['-m', 'venv', venvDir], 300_000);
    if (r.code !== 0) {
      throw meshError(
        'PYTHON_NOT_FOUND',
        `could not create the venv with ${base.executable}: ${tail(r.stderr || r.stdout, 5)}` +
          (process.platform === 'linux' ? ' (on Debian/Ubuntu: "apt-get install python3-venv")' : ''),
      );
    }
    step({ step: 'venv', detail: venvDir, done: true });
  }

  const installer = uv ? 'uv' : 'pip';
  step({ step: 'install', detail: `pinned requirements with ${installer} (${REQUIREMENTS_FILE})` });
  const r = uv
    ? await run(uv, ['pip', 'install', '--python', py, '-r', REQUIREMENTS_FILE], 1_800_000)
    : await run(py, ['-m', 'pip', 'install', '--disable-pip-version-check', '--no-input', '-r', REQUIREMENTS_FILE], 1_800_000);
  if (r.code !== 0) {
    throw meshError('SETUP_FAILED', `installing the requirements failed:\n${tail(r.stderr || r.stdout)}\nfix the cause above, then run "mlx-mesh setup" again`);
  }
  step({ step: 'install', done: true });

  step({ step: 'verify', detail: 'importing mlx and mlx_lm, running a tiny MLX computation' });
  const v = await verifyPython(py, 180_000);
  if (!v.ok) {
    throw meshError('SETUP_FAILED', `the venv was built but MLX does not run: ${v.error}. MLX on Linux needs glibc ≥ 2.35; on macOS an Apple-silicon Mac`);
  }
  step({ step: 'verify', detail: `MLX works (${v.device})`, done: true });

  const newStamp: Stamp = { requirementsSha256: reqHash, python: base.version, installer, versions: v.versions, createdAt: new Date().toISOString() };
  fs.writeFileSync(path.join(venvDir, STAMP), `${JSON.stringify(newStamp, null, 2)}\n`);
  return { python: py, venvDir, base, installer, changed: true, versions: v.versions, device: v.device, seconds: (Date.now() - started) / 1000 };
}
