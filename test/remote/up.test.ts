// up/logs/down against a real sshd on loopback: the remote peer is installed from the packed package,
// set up, started detached, joins the local peer, shows its log, and leaves on down. Host keys that are
// wrong or unknown are refused with the fix.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { MeshNode } from '../../src/node.ts';
import { getJson, startTestNode, tempDir, waitFor } from '../helpers/mesh.ts';
import { runCli } from '../helpers/process.ts';
import { freePort, startSshd, type TestSshd } from './sshd.ts';

const PYTHON = execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();

let sshd: TestSshd;
let local: MeshNode;
let remoteDir: string;
let peerPort: number;
let apiPort: number;
const localDir = tempDir('mlx-mesh-local-');

const cli = (args: string[]) => runCli(args, { env: { SSH_AUTH_SOCK: '' } });

function ssh(extra: string[] = [], knownHosts = sshd.knownHosts): string[] {
  return [`root@127.0.0.1:${sshd.port}`, '--identity', sshd.identity, '--known-hosts', knownHosts, '--remote-data-dir', remoteDir, ...extra];
}

function remotePid(): number | null {
  try {
    return Number(fs.readFileSync(path.join(remoteDir, 'peer.pid'), 'utf8').trim()) || null;
  } catch {
    return null;
  }
}

/** Running, not a zombie (a container's pid 1 may never reap the detached peer). */
function isAlive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

test.before(async () => {
  sshd = await startSshd();
  local = await startTestNode({ name: 'local', dataDir: localDir });
  remoteDir = tempDir('mlx-mesh-remote-');
  peerPort = await freePort();
  apiPort = await freePort();
});

test.after(async () => {
  const pid = remotePid();
  if (pid && isAlive(pid)) process.kill(pid, 'SIGKILL');
  await local?.stop();
  await sshd?.stop();
  fs.rmSync(remoteDir, { recursive: true, force: true });
  fs.rmSync(localDir, { recursive: true, force: true });
  fs.rmSync(sshd.dir, { recursive: true, force: true });
});

test('a changed host key is refused, naming the fix', async () => {
  const r = await cli(['up', ...ssh(['--skip-setup'], sshd.wrongKnownHosts)]);
  assert.is(r.code, 1, r.err);
  assert.match(r.err, /HOST_KEY_MISMATCH/);
  assert.match(r.err, /does not match known_hosts/);
  assert.match(r.err, new RegExp(`ssh-keygen -R '\\[127\\.0\\.0\\.1\\]:${sshd.port}'`));
  assert.not.ok(fs.existsSync(path.join(remoteDir, 'app')), 'nothing was installed');
});

test('an unknown host is refused with the fingerprint and how to add it', async () => {
  const empty = path.join(sshd.dir, 'empty_known_hosts');
  fs.writeFileSync(empty, '');
  const r = await cli(['up', ...ssh(['--skip-setup'], empty)]);
  assert.is(r.code, 1);
  assert.match(r.err, /HOST_KEY_UNKNOWN/);
  assert.match(r.err, /SHA256:/);
  assert.match(r.err, /ssh-keyscan -p/);
});

test('up installs, sets up and starts the remote peer, which joins the local peer', async () => {
  const r = await cli([
    'up',
    ...ssh(['--python', PYTHON, '--port', String(peerPort), '--api-port', String(apiPort), '--no-mdns']),
    '--peer', `127.0.0.1:${local.peer.port}`,
    '--api', local.api.url,
    '--timeout', '60',
  ]);
  assert.is(r.code, 0, `${r.out}\n${r.err}`);
  assert.match(r.out, /installed in /);
  assert.match(r.out, /MLX works/);
  assert.match(r.out, /✅ joined: /);
  const id = fs.readFileSync(path.join(remoteDir, 'peer-id'), 'utf8').trim();
  const pid = remotePid();
  assert.ok(pid && isAlive(pid), 'the remote peer runs after the SSH session closed');
  const info = await getJson(`${local.api.url}/distributed/gpu-info`);
  assert.ok(info.devices.some((d: { device_id: string }) => d.device_id === id), JSON.stringify(info));
});

test('a second up changes nothing and leaves the peer running', async () => {
  const before = remotePid();
  const r = await cli(['up', ...ssh(['--skip-setup', '--port', String(peerPort), '--no-mdns']), '--api', local.api.url, '--timeout', '20']);
  assert.is(r.code, 0, r.err);
  assert.match(r.out, /already installed/);
  assert.match(r.out, /already running/);
  assert.is(remotePid(), before);
});

test('logs shows the remote peer log', async () => {
  const id = fs.readFileSync(path.join(remoteDir, 'peer-id'), 'utf8').trim();
  const r = await cli(['logs', ...ssh(['-n', '50'])]);
  assert.is(r.code, 0, r.err);
  assert.match(r.out, new RegExp(`mlx-mesh peer ${id}`));
});

test('down stops the remote peer and it leaves the cluster', async () => {
  const id = fs.readFileSync(path.join(remoteDir, 'peer-id'), 'utf8').trim();
  const pid = remotePid()!;
  const r = await cli(['down', ...ssh(), '--api', local.api.url]);
  assert.is(r.code, 0, r.err);
  assert.match(r.out, /stopped/);
  assert.match(r.out, /left the cluster/);
  assert.not.ok(isAlive(pid));
  await waitFor(() => !local.peer.membership.has(id), 5000, 'the peer to leave');
  const again = await cli(['down', ...ssh(), '--api', local.api.url]);
  assert.is(again.code, 0);
  assert.match(again.out, /no peer was running/);
});

test.run();
