// Makes the remote run exactly this mlx-mesh: `npm pack` the local package, copy the tarball, install it
// under the remote data dir when its hash differs. The package is never fetched by name from a registry.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { meshError } from '../../core/errors.ts';
import { PACKAGE_ROOT } from '../../core/paths.ts';
import type { RemoteHost } from './connection.ts';
import { sq } from './shell.ts';

export const MIN_NODE_MAJOR = 20;

export interface LocalPackage {
  file: string;
  sha256: string;
  version: string;
}

let packed: Promise<LocalPackage> | null = null;

/** Removes the packed tarball's temp dir (the remote keeps its own copy). */
export async function discardPack(): Promise<void> {
  const p = packed;
  packed = null;
  const pkg = await p?.catch(() => null);
  if (pkg) fs.rmSync(path.dirname(pkg.file), { recursive: true, force: true });
}

/** Packs this package once per process (the tarball lands in a temp dir). */
export function packLocal(root = PACKAGE_ROOT): Promise<LocalPackage> {
  packed ??= new Promise((resolve, reject) => {
    // What runs here is what gets packed: the compiled dist/ as it is. --ignore-scripts, because `prepare`
    // (tsc) needs dev dependencies that an installed mlx-mesh does not have.
    if (!fs.existsSync(path.join(root, 'dist', 'src', 'cli.js'))) {
      return reject(meshError('SSH_FAILED', `${root} has no compiled dist/: run "npm run build" there first`));
    }
    const dest = fs.mkdtempSync(path.join(os.tmpdir(), 'mlx-mesh-pack-'));
    execFile('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dest], { cwd: root, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) return reject(meshError('SSH_FAILED', `"npm pack" of the local mlx-mesh failed: ${String(stderr).trim() || err.message}`));
      const info = JSON.parse(String(stdout))[0] as { filename: string; version: string };
      const file = path.join(dest, info.filename);
      const sha256 = createHash('sha256').update(fs.readFileSync(file)).digest('hex');
      resolve({ file, sha256, version: info.version });
    });
  });
  return packed;
}

export interface RemoteLayout {
  dataDir: string;
  app: string;
  bin: string;
  logDir: string;
  log: string;
  pid: string;
}

export function remoteLayout(dataDir: string): RemoteLayout {
  const app = path.posix.join(dataDir, 'app');
  return {
    dataDir,
    app,
    bin: path.posix.join(app, 'node_modules', 'mlx-mesh', 'bin', 'mlx-mesh.js'),
    logDir: path.posix.join(dataDir, 'logs'),
    log: path.posix.join(dataDir, 'logs', 'peer.log'),
    pid: path.posix.join(dataDir, 'peer.pid'),
  };
}

export interface RemoteFacts {
  os: string;
  osVersion: string;
  arch: string;
  node: string | null;
  nodePath: string | null;
  path: string;
  dataDir: string;
}

/** One round trip: OS, Node, PATH, and the data dir made absolute (SFTP does not expand `~`). */
export async function inspectRemote(host: RemoteHost, dataDirSpec: string): Promise<RemoteFacts> {
  const dd = dataDirSpec === '~' ? '"$HOME"' : dataDirSpec.startsWith('~/') ? `"$HOME"/${sq(dataDirSpec.slice(2))}` : sq(dataDirSpec);
  const out = await host.run(
    [
      `mkdir -p ${dd} && cd ${dd} && echo "dir=$(pwd -P)"`,
      'echo "os=$(uname -s)"',
      'echo "arch=$(uname -m)"',
      'echo "osv=$( (sw_vers -productVersion 2>/dev/null) || uname -r)"',
      'echo "nodepath=$(command -v node || true)"',
      'echo "node=$(node -p process.versions.node 2>/dev/null || true)"',
      'echo "path=$PATH"',
    ].join('; '),
    'inspecting the remote machine',
  );
  const kv = Object.fromEntries(out.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1).trim()]));
  return {
    os: kv.os ?? '',
    osVersion: kv.osv ?? '',
    arch: kv.arch ?? '',
    node: kv.node || null,
    nodePath: kv.nodepath || null,
    path: kv.path ?? '',
    dataDir: kv.dir,
  };
}

export function checkRemoteNode(label: string, facts: RemoteFacts): void {
  if (!facts.node) {
    throw meshError(
      'SSH_FAILED',
      `Node.js is not on the PATH of ${label}'s login shell: install Node ≥ ${MIN_NODE_MAJOR} there (${facts.os === 'Darwin' ? '"brew install node"' : 'https://nodejs.org or your package manager'})`,
    );
  }
  if (Number(facts.node.split('.')[0]) < MIN_NODE_MAJOR) {
    throw meshError('SSH_FAILED', `${label} has Node ${facts.node}; mlx-mesh needs Node ≥ ${MIN_NODE_MAJOR}: upgrade it there`);
  }
}

/** Installs the packed tarball under `<dataDir>/app` unless the same one is already there. */
export async function installRemote(host: RemoteHost, layout: RemoteLayout, pkg: LocalPackage): Promise<boolean> {
  const stampFile = path.posix.join(layout.app, '.mlx-mesh-sha256');
  const current = (await host.exec(`cat ${sq(stampFile)} 2>/dev/null`)).stdout.trim();
  if (current === pkg.sha256 && (await host.exec(`test -f ${sq(layout.bin)}`)).code === 0) return false;
  const tgz = path.posix.join(layout.app, `mlx-mesh-${pkg.sha256.slice(0, 12)}.tgz`);
  await host.run(`mkdir -p ${sq(layout.app)} && cd ${sq(layout.app)} && { test -f package.json || echo '{"private":true}' > package.json; }`, 'preparing the install dir');
  await host.putFile(pkg.file, tgz);
  await host.run(
    `cd ${sq(layout.app)} && npm install --omit=dev --no-audit --no-fund --loglevel=error ${sq(`./${path.posix.basename(tgz)}`)} && ` +
      `printf %s ${pkg.sha256} > ${sq(stampFile)} && find . -maxdepth 1 -name 'mlx-mesh-*.tgz' ! -name ${sq(path.posix.basename(tgz))} -delete`,
    'installing mlx-mesh with npm',
  );
  return true;
}
