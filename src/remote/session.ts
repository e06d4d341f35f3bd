// What up, down and logs share: the SSH flags, and connecting to a target down to a ServiceContext.
import { meshError } from '../../core/errors.ts';
import { RemoteHost } from './connection.ts';
import { inspectRemote, remoteLayout } from './install.ts';
import type { ServiceContext } from './service.ts';
import { resolveTarget } from './target.ts';

export const DEFAULT_REMOTE_DATA_DIR = '~/.mlx-mesh';

export const sshOptions = {
  identity: { type: 'string' },
  'known-hosts': { type: 'string', multiple: true },
  'ssh-port': { type: 'string' },
  'remote-data-dir': { type: 'string' },
} as const;

export const sshUsage = `SSH options:
  --identity <key>          private key to log in with (default: ssh-agent, then IdentityFile from
                            ~/.ssh/config, then ~/.ssh/id_ed25519, id_ecdsa, id_rsa)
  --known-hosts <file>      known_hosts file to verify host keys against, repeatable
                            (default: UserKnownHostsFile from ~/.ssh/config, else ~/.ssh/known_hosts)
  --ssh-port <n>            SSH port (or write user@host:port; default: ~/.ssh/config's Port, else 22)
  --remote-data-dir <dir>   data dir on the remote machine (default ${DEFAULT_REMOTE_DATA_DIR})
`;

export interface SshFlags {
  identity?: string;
  'known-hosts'?: string[];
  'ssh-port'?: string;
  'remote-data-dir'?: string;
}

export type Say = (line: string) => void;

export async function openSession(spec: string, flags: SshFlags, say: Say): Promise<ServiceContext> {
  let port: number | undefined;
  if (flags['ssh-port'] !== undefined) {
    port = Number(flags['ssh-port']);
    if (!/^\d+$/.test(flags['ssh-port']) || port < 1 || port > 65535) throw meshError('BAD_ARGUMENT', `--ssh-port must be 1-65535`);
  }
  const target = resolveTarget(spec, { port, identity: flags.identity });
  const via = target.alias !== target.host ? ` (${target.alias} in ~/.ssh/config)` : '';
  say(`connecting to ${target.user}@${target.host}:${target.port}${via}`);
  const host = await RemoteHost.connect(target, { knownHosts: flags['known-hosts'] });
  try {
    const dataDirSpec = flags['remote-data-dir'] ?? DEFAULT_REMOTE_DATA_DIR;
    const facts = await inspectRemote(host, dataDirSpec);
    return { host, facts, layout: remoteLayout(facts.dataDir), defaultDataDir: dataDirSpec === DEFAULT_REMOTE_DATA_DIR };
  } catch (err) {
    host.close();
    throw err;
  }
}
