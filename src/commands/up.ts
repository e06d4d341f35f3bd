// `mlx-mesh up <ssh-target...>`: start a peer on other machines over SSH and wait until each has joined.
import { parseArgs } from 'node:util';
import { meshError } from '../../core/errors.ts';
import type { Command } from '../command.ts';
import { defaults } from '../../core/defaults.ts';
import { checkRemoteNode, discardPack, installRemote, packLocal, type LocalPackage } from '../remote/install.ts';
import { fetchCluster, waitForPeer } from '../remote/local-view.ts';
import { peerProcess, remotePeerId, type ServiceContext, startPeer, stopPeer, tailLog } from '../remote/service.ts';
import { openSession, type Say, sshOptions, sshUsage } from '../remote/session.ts';
import { sq } from '../remote/shell.ts';

const usage = `
Usage: mlx-mesh up <ssh-target...> [options]

For each target ([user@]host[:port] or a ~/.ssh/config alias): connects over SSH (host key checked
against known_hosts), checks Node ≥ 20, installs this exact mlx-mesh (npm pack, copied over, installed
under the remote data dir when it differs), runs "mlx-mesh setup" there, starts "mlx-mesh join" so that
it outlives the SSH session (Linux: setsid with a pid file; macOS: a LaunchAgent), and waits until the new
peer appears in the local peer's view of the cluster.

Options passed to the remote join:
  --port <n>            peer port (default ${defaults.port})
  --api-port <n>        HTTP API port (default ${defaults.apiPort})
  --cluster <name>      cluster name
  --peer <host:port>    a peer to link to, repeatable
  --no-mdns             do not use mDNS on the remote peer
  --name <name>         display name
  --model <id|dir|gguf> model
Other options:
  --python <path>       base interpreter for the remote "setup" (default: the best Python ≥ 3.10 there)
  --skip-setup          do not run "setup" on the remote
  --restart             restart the remote peer if it is already running
  --api <url>           the local peer's API to watch (default http://${defaults.apiHost}:${defaults.apiPort})
  --timeout <seconds>   how long to wait for each peer to join (default 60)
${sshUsage}`;

const options = {
  ...sshOptions,
  port: { type: 'string' },
  'api-port': { type: 'string' },
  cluster: { type: 'string' },
  peer: { type: 'string', multiple: true },
  'no-mdns': { type: 'boolean' },
  name: { type: 'string' },
  model: { type: 'string' },
  python: { type: 'string' },
  'skip-setup': { type: 'boolean' },
  restart: { type: 'boolean' },
  api: { type: 'string' },
  timeout: { type: 'string' },
} as const;

type Values = ReturnType<typeof parseArgs<{ args: string[]; options: typeof options; allowPositionals: true }>>['values'];

export function joinArgs(v: Values): string[] {
  const out: string[] = [];
  if (v.port) out.push('--port', v.port);
  if (v['api-port']) out.push('--api-port', v['api-port']);
  if (v.cluster) out.push('--cluster', v.cluster);
  for (const p of v.peer ?? []) out.push('--peer', p);
  if (v['no-mdns']) out.push('--no-mdns');
  if (v.name) out.push('--name', v.name);
  if (v.model) out.push('--model', v.model);
  return out;
}

async function runSetup(c: ServiceContext, python: string | undefined, say: Say): Promise<void> {
  say('running "mlx-mesh setup" there (the first time installs MLX, which takes a minute or two)');
  const cmd = [c.facts.nodePath ?? 'node', c.layout.bin, 'setup', '--data-dir', c.layout.dataDir, ...(python ? ['--python', python] : [])];
  let buffered = '';
  const r = await c.host.exec(cmd.map(sq).join(' '), {
    onStdout: (b) => {
      buffered += b.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const l of lines) if (l.trim()) say(`  ${l}`);
    },
  });
  if (buffered.trim()) say(`  ${buffered}`);
  if (r.code !== 0) {
    throw meshError('REMOTE_FAILED', `"mlx-mesh setup" failed on ${c.host.target.label}:\n${r.stderr.trim()}\nfix it there (or pass --python <path>), then run "mlx-mesh up" again`);
  }
}

async function upOne(spec: string, v: Values, pkg: LocalPackage, api: string, timeoutMs: number): Promise<void> {
  const say: Say = (line) => process.stdout.write(`[${spec}] ${line}\n`);
  const c = await openSession(spec, v, say);
  try {
    const { facts } = c;
    say(`${facts.os} ${facts.osVersion} ${facts.arch}, Node ${facts.node ?? 'missing'}, data dir ${facts.dataDir}`);
    checkRemoteNode(spec, facts);
    say(`installing mlx-mesh ${pkg.version} (${pkg.sha256.slice(0, 12)})`);
    const changed = await installRemote(c.host, c.layout, pkg);
    say(changed ? `installed in ${c.layout.app}` : 'already installed (same package hash)');
    if (!v['skip-setup']) await runSetup(c, v.python, say);

    const running = await peerProcess(c);
    if (running.running && (changed || v.restart)) {
      say(`restarting the running peer (pid ${running.pid})${changed ? ' on the new version' : ''}`);
      await stopPeer(c);
    } else if (running.running) {
      say(`a peer is already running there (pid ${running.pid}); pass --restart to restart it`);
    }
    let pid = running.pid;
    if (!running.running || changed || v.restart) {
      if (facts.os === 'Darwin') {
        say('starting the peer as a LaunchAgent (macOS grants Local Network access to it, not to a process left behind by SSH)');
        say(`if ${c.host.target.host} shows "Allow node to find devices on your local network?", click Allow`);
      } else {
        say('starting the peer (setsid nohup, pid file)');
      }
      pid = await startPeer(c, joinArgs(v));
    }
    say(`peer running, pid ${pid}, log ${c.layout.log}`);

    const deadline = Date.now() + timeoutMs;
    let id: string | null = null;
    while (!(id = await remotePeerId(c))) {
      if (Date.now() > deadline || !(await peerProcess(c)).running) break;
      await new Promise((r) => setTimeout(r, 300));
    }
    if (!id || !(await peerProcess(c)).running) {
      throw meshError('REMOTE_FAILED', `the peer on ${spec} did not start. Its log (${c.layout.log}):\n${await tailLog(c, 30)}`);
    }
    if (!(await fetchCluster(api))) {
      say(`⚠️  no local peer answers at ${api}: cannot confirm that ${id} joined. Start one with "mlx-mesh join", or pass --api`);
      return;
    }
    say(`waiting for peer ${id} to appear at ${api}/cluster`);
    const seen = await waitForPeer(api, id, true, Math.max(1000, deadline - Date.now()));
    if (seen === 'timeout' || !seen) {
      throw meshError(
        'REMOTE_FAILED',
        `peer ${id} on ${spec} runs but did not join the local peer within ${timeoutMs / 1000} s. ` +
          `Check that both use the same --cluster, that the peer port is open in the firewall, or pass --peer <this-host>:<port>. ` +
          `Its log:\n${await tailLog(c, 20)}`,
      );
    }
    const rtt = typeof seen.rttMs === 'number' ? `, RTT ${seen.rttMs.toFixed(1)} ms` : '';
    say(`✅ joined: ${seen.id} (${seen.name ?? seen.hostname}) as ${seen.role ?? 'worker'}${rtt}`);
  } finally {
    c.host.close();
  }
}

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  if (!positionals.length) throw meshError('BAD_ARGUMENT', 'name at least one SSH target: mlx-mesh up user@host');
  const timeout = Number(values.timeout ?? 60);
  if (!(timeout > 0)) throw meshError('BAD_ARGUMENT', '--timeout must be a number of seconds');
  const api = (values.api ?? `http://${defaults.apiHost}:${defaults.apiPort}`).replace(/\/$/, '');
  process.stdout.write('packing the local mlx-mesh (npm pack)\n');
  const pkg = await packLocal();
  process.stdout.write(`mlx-mesh ${pkg.version}, sha256 ${pkg.sha256.slice(0, 12)}\n`);
  try {
    for (const spec of positionals) await upOne(spec, values, pkg, api, timeout * 1000);
  } finally {
    await discardPack();
  }
  return 0;
}

const command: Command = { usage, run };
export default command;
