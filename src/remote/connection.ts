// One SSH connection to a target: keys from the agent, --identity or ~/.ssh/config, the host key checked
// against known_hosts, and commands run in the remote login shell.
import fs from 'node:fs';
import { NodeSSH } from 'node-ssh';
import { meshError, MeshError } from '../../core/errors.ts';
import { checkHostKey, defaultKnownHostsFiles, fingerprint, type HostKeyVerdict, hostKeyName, keyTypeOf, knownKeyTypes, loadKnownHosts } from './known-hosts.ts';
import { loginShell, sq } from './shell.ts';
import type { SshTarget } from './target.ts';

export interface ConnectOptions {
  /** known_hosts files to trust (default: the target's UserKnownHostsFile, else ~/.ssh/known_hosts and the system file). */
  knownHosts?: string[];
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

// ssh2 names RSA signature algorithms apart from the key type stored in known_hosts.
const ALGS_FOR_TYPE: Record<string, string[]> = { 'ssh-rsa': ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] };

function ofType(type: string): string[] {
  return ALGS_FOR_TYPE[type] ?? [type];
}

function sshCommandFor(t: SshTarget): string {
  return `ssh ${t.port === 22 ? '' : `-p ${t.port} `}${t.user}@${t.host}`;
}

export function hostKeyError(t: SshTarget, verdict: HostKeyVerdict, key: Buffer, files: string[]): MeshError {
  const name = hostKeyName(t.host, t.port);
  const fp = `${keyTypeOf(key)} ${fingerprint(key)}`;
  const file = files[0];
  if (verdict.status === 'mismatch') {
    const where = verdict.entries.map((e) => `${e.file}:${e.line}`).join(', ');
    return meshError(
      'HOST_KEY_MISMATCH',
      `the SSH host key of ${name} (${fp}) does not match known_hosts (${where}). ` +
        `This can be an attack, or the machine was reinstalled. If you are sure it is the right machine, remove the old key with ` +
        `"ssh-keygen -R '${name}' -f ${verdict.entries[0].file}" and connect once with "${sshCommandFor(t)}" to accept the new one`,
      { host: name, fingerprint: fp },
    );
  }
  if (verdict.status === 'revoked') {
    return meshError('HOST_KEY_MISMATCH', `the SSH host key of ${name} (${fp}) is marked @revoked in ${verdict.entry.file}:${verdict.entry.line}`, { host: name });
  }
  return meshError(
    'HOST_KEY_UNKNOWN',
    `${name} is not in ${files.join(' or ')} (its key: ${fp}). Connect once with "${sshCommandFor(t)}" and accept the key after ` +
      `checking the fingerprint, or add it with "ssh-keyscan -p ${t.port} ${t.host} >> ${file}"`,
    { host: name, fingerprint: fp },
  );
}

export class RemoteHost {
  private readonly ssh = new NodeSSH();

  private constructor(readonly target: SshTarget) {}

  static async connect(target: SshTarget, opts: ConnectOptions = {}): Promise<RemoteHost> {
    const env = opts.env ?? process.env;
    const files = opts.knownHosts ?? target.knownHostsFiles ?? defaultKnownHostsFiles();
    const entries = loadKnownHosts(files);
    let rejected: MeshError | null = null;

    const methods: Record<string, unknown>[] = [];
    if (env.SSH_AUTH_SOCK && !target.identitiesOnly) methods.push({ type: 'agent', username: target.user, agent: env.SSH_AUTH_SOCK });
    const skipped: string[] = [];
    for (const file of target.identityFiles) {
      let key: Buffer;
      try {
        key = fs.readFileSync(file);
      } catch {
        if (target.identitiesOnly) skipped.push(`${file} (not readable)`);
        continue;
      }
      if (/ENCRYPTED/.test(key.subarray(0, 200).toString()) || /bcrypt/.test(key.toString('latin1'))) {
        // An encrypted key needs its passphrase: the agent is the way to use it without prompting here.
        skipped.push(`${file} (encrypted: add it to ssh-agent with "ssh-add ${file}")`);
        continue;
      }
      methods.push({ type: 'publickey', username: target.user, key });
    }
    if (env.SSH_AUTH_SOCK && target.identitiesOnly) methods.push({ type: 'agent', username: target.user, agent: env.SSH_AUTH_SOCK });
    if (!methods.length) {
      throw meshError(
        'SSH_FAILED',
        `no SSH key to log in to ${target.label}${skipped.length ? `: skipped ${skipped.join(', ')}` : ''}: start ssh-agent and "ssh-add", or pass --identity <key>`,
      );
    }

    const known = knownKeyTypes(entries, target.host, target.port).flatMap(ofType);
    const host = new RemoteHost(target);
    try {
      await host.ssh.connect({
        host: target.host,
        port: target.port,
        username: target.user,
        readyTimeout: opts.timeoutMs ?? 15_000,
        authHandler: methods as never,
        // Ask for a key type we already know for this host first, as ssh does; otherwise a server with
        // several host keys would show one we never saw and look unknown.
        ...(known.length ? { algorithms: { serverHostKey: { prepend: known } } as never } : {}),
        hostVerifier: (key: Buffer) => {
          const verdict = checkHostKey(entries, target.host, target.port, key);
          if (verdict.status === 'match') return true;
          rejected = hostKeyError(target, verdict, key, files);
          return false;
        },
      });
    } catch (err) {
      host.ssh.dispose();
      if (rejected) throw rejected;
      throw connectError(target, err as Error & { code?: string; level?: string }, skipped);
    }
    return host;
  }

  /** Runs a POSIX script in the remote login shell. */
  async exec(script: string, opts: { onStdout?: (b: Buffer) => void; onStderr?: (b: Buffer) => void; stdin?: string } = {}): Promise<ExecResult> {
    try {
      const r = await this.ssh.execCommand(loginShell(script), { ...opts, noTrim: true });
      return { code: r.code ?? (r.signal ? 128 : 0), stdout: r.stdout, stderr: r.stderr };
    } catch (err) {
      throw meshError('SSH_FAILED', `${this.target.label}: running a command failed: ${(err as Error).message}`);
    }
  }

  /** Like exec, but a non-zero exit is an error naming the step. */
  async run(script: string, what: string): Promise<string> {
    const r = await this.exec(script);
    if (r.code !== 0) {
      const out = (r.stderr.trim() || r.stdout.trim()).split('\n').slice(-12).join('\n');
      throw meshError('SSH_FAILED', `${this.target.label}: ${what} failed (exit ${r.code}):\n${out}`);
    }
    return r.stdout;
  }

  async putFile(local: string, remote: string): Promise<void> {
    try {
      await this.ssh.putFile(local, remote);
    } catch (err) {
      throw meshError('SSH_FAILED', `${this.target.label}: copying ${local} to ${remote} failed: ${(err as Error).message}`);
    }
  }

  /** The remote home directory, for SFTP paths (SFTP does not expand `~`). */
  async home(): Promise<string> {
    return (await this.run('printf %s "$HOME"', 'reading $HOME')).trim();
  }

  close(): void {
    this.ssh.dispose();
  }
}

function connectError(t: SshTarget, err: Error & { code?: string; level?: string }, skipped: string[]): MeshError {
  const where = `${t.user}@${t.host}:${t.port}`;
  if (err.code === 'ECONNREFUSED') {
    return meshError('SSH_FAILED', `${where} refused the connection: is sshd running there? (macOS: System Settings → General → Sharing → Remote Login)`);
  }
  if (err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN') {
    return meshError('SSH_FAILED', `cannot resolve ${t.host}: check the name (or its HostName in ~/.ssh/config)`);
  }
  if (err.level === 'client-authentication' || /authentication methods failed/i.test(err.message)) {
    return meshError(
      'SSH_FAILED',
      `${where} did not accept our keys (${t.identityFiles.join(', ') || 'agent'}${skipped.length ? `; skipped ${skipped.join(', ')}` : ''}): ` +
        `install your public key there with "ssh-copy-id ${t.port === 22 ? '' : `-p ${t.port} `}${t.user}@${t.host}" or pass --identity <key>`,
    );
  }
  if (/timed out|ETIMEDOUT/i.test(err.message)) {
    return meshError('SSH_FAILED', `${where} did not answer in time: check that the machine is on and reachable (${sq(err.message)})`);
  }
  return meshError('SSH_FAILED', `ssh to ${where} failed: ${err.message}`);
}
