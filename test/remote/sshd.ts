// A real OpenSSH server on 127.0.0.1 for the remote tests: generated host and client keys, an
// authorized_keys and a known_hosts in a temp dir, root login by key only. stop() kills it.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../helpers/process.ts';

export interface TestSshd {
  port: number;
  dir: string;
  /** Client private key authorized for root. */
  identity: string;
  /** known_hosts holding the server's real host key as [127.0.0.1]:port. */
  knownHosts: string;
  /** known_hosts holding another key for the same name (a "changed" host). */
  wrongKnownHosts: string;
  stop(): Promise<void>;
}

export const SSHD = '/usr/sbin/sshd';

export function sshdAvailable(): boolean {
  return fs.existsSync(SSHD) && typeof process.getuid === 'function' && process.getuid() === 0;
}


function keygen(file: string): string {
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'mlx-mesh-test', '-f', file]);
  return fs.readFileSync(`${file}.pub`, 'utf8').trim();
}

export async function startSshd(): Promise<TestSshd> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlx-mesh-sshd-'));
  const hostPub = keygen(path.join(dir, 'host_ed25519'));
  const otherPub = keygen(path.join(dir, 'other_host_ed25519'));
  const clientPub = keygen(path.join(dir, 'client_ed25519'));
  fs.writeFileSync(path.join(dir, 'authorized_keys'), `${clientPub}\n`, { mode: 0o600 });
  const port = await freePort();
  const name = `[127.0.0.1]:${port}`;
  const strip = (pub: string) => pub.split(' ').slice(0, 2).join(' ');
  fs.writeFileSync(path.join(dir, 'known_hosts'), `${name} ${strip(hostPub)}\n`);
  fs.writeFileSync(path.join(dir, 'wrong_known_hosts'), `${name} ${strip(otherPub)}\n`);
  const config = path.join(dir, 'sshd_config');
  fs.writeFileSync(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${path.join(dir, 'host_ed25519')}`,
      `PidFile ${path.join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
      'PermitRootLogin prohibit-password',
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      'Subsystem sftp internal-sftp',
      'LogLevel VERBOSE',
    ].join('\n') + '\n',
  );
  fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const log = fs.openSync(path.join(dir, 'sshd.log'), 'a');
  const child: ChildProcess = spawn(SSHD, ['-D', '-e', '-f', config], { stdio: ['ignore', log, log] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // Ready once it accepts TCP connections.
  const deadline = Date.now() + 10_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`sshd did not start: ${fs.readFileSync(path.join(dir, 'sshd.log'), 'utf8')}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    dir,
    identity: path.join(dir, 'client_ed25519'),
    knownHosts: path.join(dir, 'known_hosts'),
    wrongKnownHosts: path.join(dir, 'wrong_known_hosts'),
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
      fs.closeSync(log);
    },
  };
}

export { freePort };
