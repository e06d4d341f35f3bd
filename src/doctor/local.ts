// Checks of this machine: Node, Python and MLX, memory, ports, data dir and disk. Each is a small
// function over facts passed in, so tests can feed it controlled inputs.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { FindResult, PythonEnvCheck } from '../../peer/python-env.ts';
import { installHint, managedVenvDir } from '../../peer/python-env.ts';
import { type CheckResult, fail, pass, skip, warn } from './check.ts';

const G = 'this machine';
const GiB = 2 ** 30;
const gib = (n: number) => `${(n / GiB).toFixed(1)} GiB`;

export function checkNode(version = process.versions.node): CheckResult {
  const major = Number(version.split('.')[0]);
  return major >= 20
    ? pass(G, 'Node.js', `v${version}`)
    : fail(G, 'Node.js', `v${version} is older than 20`, 'install Node ≥ 20 (https://nodejs.org, or "brew install node")');
}

export function checkInterpreter(found: FindResult, platform: NodeJS.Platform = process.platform): CheckResult {
  if (found.found) return pass(G, 'Python interpreter', `${found.found.executable} (Python ${found.found.version}, ${found.found.machine})`);
  const why = found.rejected.map((r) => `${r.path}: ${r.reason}`).join('; ') || 'no python3 on PATH or in the usual places';
  return fail(G, 'Python interpreter', `no Python ≥ 3.10 (${why})`, installHint(platform));
}

export function checkVenv(env: PythonEnvCheck, dataDir: string): CheckResult {
  const venv = managedVenvDir(dataDir);
  const dd = ` --data-dir ${dataDir}`;
  if (env.python.source === 'venv') {
    return env.problems.length
      ? fail(G, 'venv', `${venv} is used but incomplete: ${env.problems[0]}`, `run "mlx-mesh setup${dd}"`)
      : pass(G, 'venv', `${venv} (used by the engine)`);
  }
  if (env.python.source === 'flag' || env.python.source === 'env') {
    return warn(G, 'venv', `the engine uses ${env.python.path} (${env.python.source === 'flag' ? '--python' : 'MLX_MESH_PYTHON'}), not the managed venv`);
  }
  return fail(G, 'venv', `no venv at ${venv}: the engine would fall back to python3 on PATH`, `run "mlx-mesh setup${dd}"`);
}

export function checkMlx(env: PythonEnvCheck): CheckResult {
  if (env.versions.mlx && env.versions['mlx-lm'] && !env.problems.some((p) => /cannot run MLX/.test(p))) {
    return pass(G, 'mlx and mlx-lm', `mlx ${env.versions.mlx}, mlx-lm ${env.versions['mlx-lm']} (Python ${env.versions.python})`);
  }
  const why = env.problems.find((p) => /cannot run MLX/.test(p)) ?? 'not importable';
  return fail(G, 'mlx and mlx-lm', why, env.fix || 'run "mlx-mesh setup"');
}

export function checkDevice(env: PythonEnvCheck, platform: NodeJS.Platform = process.platform, arch = process.arch): CheckResult {
  if (!env.device) return fail(G, 'MLX device', 'unknown (MLX does not run)', env.fix || 'run "mlx-mesh setup"');
  if (platform === 'darwin' && arch === 'arm64' && !env.device.startsWith('gpu')) {
    return warn(G, 'MLX device', `${env.device}: Metal is not used`, 'use a native arm64 Python and the macOS "mlx" wheel ("mlx-mesh setup --force")');
  }
  return pass(G, 'MLX device', env.device);
}

/** Linux: the engine's CPU matmuls on MLX's bundled reference BLAS make prefill several times slower. */
export function checkBlas(
  env: PythonEnvCheck,
  platform: NodeJS.Platform = process.platform,
  requested = process.env.MLX_MESH_BLAS,
): CheckResult {
  const title = 'BLAS';
  if (platform !== 'linux') return skip(G, title, 'MLX uses Metal and Accelerate here');
  if (!env.blas) return skip(G, title, 'unknown (MLX does not run)');
  if (env.blas === 'bundled') {
    const install = 'install BLIS ("apt install libblis4-pthread") or OpenBLAS ("apt install libopenblas0-pthread")';
    return warn(
      G,
      title,
      "MLX's bundled reference BLAS (unblocked, one thread): a prompt takes several times longer",
      requested === 'bundled' || requested === '' ? `unset MLX_MESH_BLAS (it asks for the bundled BLAS); ${install} if neither is` : `${install}; the engine loads it at its next start`,
    );
  }
  // Only a missing compiler is worth a fix (rows_gemm.NO_COMPILER says "C compiler"): turned off, or standing
  // aside for a multi-threaded BLAS, is a choice.
  if (env.rowsGemm?.includes('C compiler')) {
    return warn(
      G,
      title,
      `${env.blas}, without rows_gemm: a batched decode step (several requests at once) takes up to 1.4× longer`,
      'install a C compiler ("apt install gcc"): the engine builds rows_gemm at its next start',
    );
  }
  // rows_gemm is compiled for this CPU; if it multiplies 2 rows slower than the BLAS does 2 single rows,
  // it costs every batched decode step here, and turning it off is the fix.
  if (env.rowsGemmSpeed !== undefined && env.rowsGemmSpeed >= 1) {
    return warn(
      G,
      title,
      `${env.blas}: rows_gemm takes ${env.rowsGemmSpeed.toFixed(2)}× the time of two single-row products on this CPU, so batched decode steps run slower with it`,
      'set MLX_MESH_ROWS_GEMM=0 for "mlx-mesh join" (and report this CPU, from "lscpu", as an issue)',
    );
  }
  if (env.rowsGemm && env.rowsGemm !== 'on') return pass(G, title, `${env.blas} (rows_gemm ${env.rowsGemm})`);
  return pass(G, title, env.rowsGemmSpeed !== undefined ? `${env.blas} (2 rows in ${env.rowsGemmSpeed.toFixed(2)}× the time of two single rows)` : env.blas);
}

/** Linux: MLX's CPU backend allocates in every operation, and glibc's malloc costs each engine step
 *  6–13% more than with jemalloc (peer/engine/mlx_mesh_engine/allocator.py). */
export function checkMalloc(env: PythonEnvCheck, platform: NodeJS.Platform = process.platform, requested = process.env.MLX_MESH_MALLOC): CheckResult {
  const title = 'malloc';
  if (platform !== 'linux') return skip(G, title, "the system's (nothing to choose here)");
  if (!env.malloc) return skip(G, title, 'unknown (MLX does not run)');
  if (env.malloc !== 'system') return pass(G, title, `${env.malloc} (the engine preloads it)`);
  if (requested?.trim() === 'system') return pass(G, title, "the system's (MLX_MESH_MALLOC=system)");
  return warn(
    G,
    title,
    "glibc's: every engine step takes 6–13% longer than with jemalloc",
    'install jemalloc ("apt install libjemalloc2"): the engine preloads it at its next start',
  );
}

export function checkMemory(total = os.totalmem(), free = os.freemem()): CheckResult {
  const detail = `${gib(total)} total, ${gib(free)} available`;
  return free < 1 * GiB
    ? warn(G, 'memory', detail, 'close other applications: model layers are placed by available memory')
    : pass(G, 'memory', detail);
}

/** Tries to listen on the port: true when free, else the error code (EADDRINUSE, EACCES). */
export function probePort(port: number, host = '0.0.0.0'): Promise<true | string> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    s.listen({ port, host, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

export interface PortOwner {
  peerId: string;
  role?: string;
  port?: number;
  apiPort?: number;
}

export function checkPort(label: string, flag: string, port: number, probe: true | string, owner: PortOwner | null): CheckResult {
  const title = `${label} port ${port}`;
  if (probe === true) return pass(G, title, 'free');
  if (owner) return pass(G, title, `held by mlx-mesh peer ${owner.peerId}${owner.role ? ` (${owner.role})` : ''}`);
  return fail(
    G,
    title,
    probe === 'EADDRINUSE' ? 'in use by another program' : `cannot listen: ${probe}`,
    `find it with "lsof -nP -iTCP:${port} -sTCP:LISTEN" and stop it, or pass ${flag} <other port> to join`,
  );
}

export function checkDataDir(dataDir: string): CheckResult {
  try {
    fs.mkdirSync(dataDir, { recursive: true });
    const probe = path.join(dataDir, `.doctor-${process.pid}`);
    fs.writeFileSync(probe, 'ok');
    fs.rmSync(probe);
    return pass(G, 'data dir', `${dataDir} is writable`);
  } catch (err) {
    return fail(G, 'data dir', `${dataDir} is not writable (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, `fix its permissions ("chown -R $USER ${dataDir}") or pass --data-dir <dir>`);
  }
}

export function checkDisk(dataDir: string, freeBytes?: number): CheckResult {
  let free = freeBytes;
  if (free === undefined) {
    try {
      const s = fs.statfsSync(fs.existsSync(dataDir) ? dataDir : path.dirname(dataDir));
      free = s.bavail * s.bsize;
    } catch (err) {
      return warn(G, 'disk space', `cannot read: ${(err as Error).message}`);
    }
  }
  const detail = `${gib(free)} free for ${dataDir}`;
  return free < 2 * GiB ? fail(G, 'disk space', detail, 'free some disk space: the venv needs ~1 GiB and models several GiB') : pass(G, 'disk space', detail);
}
