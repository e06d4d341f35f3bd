// `mlx-mesh down <ssh-target...>`: stop peers started by `up` and wait until they are gone.
import { parseArgs } from 'node:util';
import { meshError } from '../../core/errors.ts';
import type { Command } from '../command.ts';
import { defaults } from '../../core/defaults.ts';
import { fetchCluster, waitForPeer } from '../remote/local-view.ts';
import { remotePeerId, stopPeer } from '../remote/service.ts';
import { openSession, type Say, sshOptions, sshUsage } from '../remote/session.ts';

const usage = `
Usage: mlx-mesh down <ssh-target...> [options]

Stops the peer that "mlx-mesh up" started on each target (SIGTERM so it leaves the cluster cleanly,
SIGKILL after the grace period; on macOS the LaunchAgent is unloaded) and waits until it is gone,
from the process table and from the local peer's view.

Options:
  --api <url>           the local peer's API to watch (default http://${defaults.apiHost}:${defaults.apiPort})
  --timeout <seconds>   grace period before SIGKILL, and how long to wait for the peer to leave (default 15)
${sshUsage}`;

const options = { ...sshOptions, api: { type: 'string' }, timeout: { type: 'string' } } as const;

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  if (!positionals.length) throw meshError('BAD_ARGUMENT', 'name at least one SSH target: mlx-mesh down user@host');
  const timeoutMs = Number(values.timeout ?? 15) * 1000;
  if (!(timeoutMs > 0)) throw meshError('BAD_ARGUMENT', '--timeout must be a number of seconds');
  const api = (values.api ?? `http://${defaults.apiHost}:${defaults.apiPort}`).replace(/\/$/, '');
  for (const spec of positionals) {
    const say: Say = (line) => process.stdout.write(`[${spec}] ${line}\n`);
    const c = await openSession(spec, values, say);
    try {
      const id = await remotePeerId(c);
      say(`stopping the peer${id ? ` ${id}` : ''}`);
      const r = await stopPeer(c, timeoutMs);
      if (!r.wasRunning) say('no peer was running there');
      else say(r.killed ? `pid ${r.pid} did not leave in time: killed` : `pid ${r.pid} stopped`);
      if (id && (await fetchCluster(api))) {
        const gone = await waitForPeer(api, id, false, timeoutMs);
        say(gone === 'timeout' ? `⚠️  ${api} still lists ${id}; it drops out after missed heartbeats` : `✅ ${id} left the cluster`);
      }
    } finally {
      c.host.close();
    }
  }
  return 0;
}

const command: Command = { usage, run };
export default command;
