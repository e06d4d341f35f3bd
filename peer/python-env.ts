// Which Python runs the engine. Order: --python, MLX_MESH_PYTHON, the managed venv in the data dir,
// then python3 on PATH (never a bare `python`, which is Python 2 or missing on many Macs).
import fs from 'node:fs';
import path from 'node:path';

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
