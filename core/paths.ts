// Where the package's own files are, whether this code runs from the TypeScript sources (development,
// tests) or from the compiled `dist/` (an installed package): both live below the package root.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function findPackageRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'peer', 'engine'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`mlx-mesh package root not found above ${from}`);
  }
}

export const PACKAGE_ROOT = findPackageRoot(path.dirname(fileURLToPath(import.meta.url)));
/** The Python engine package (`python -m mlx_mesh_engine` runs with this as its PYTHONPATH). */
export const ENGINE_DIR = path.join(PACKAGE_ROOT, 'peer', 'engine');
export const PACKAGE_VERSION: string = JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')).version;
