// Starting, watching and stopping the remote `join` so that it outlives the SSH session:
// Linux: `setsid nohup` with a pid file; macOS: a per-user LaunchAgent (see launchd.ts for why).
import path from 'node:path';
import { meshError } from '../../core/errors.ts';
import type { RemoteHost } from './connection.ts';
import type { RemoteFacts, RemoteLayout } from './install.ts';
import { agentLabel, agentPlist, explainBootstrapFailure } from './launchd.ts';
import { sq } from './shell.ts';

export interface PeerProcess {
  running: boolean;
  pid: number | null;
}

export interface ServiceContext {
  host: RemoteHost;
  layout: RemoteLayout;
  facts: RemoteFacts;
  /** True when the data dir is the remote's default (~/.mlx-mesh); picks the LaunchAgent label. */
  defaultDataDir: boolean;
}

const isMac = (c: ServiceContext) => c.facts.os === 'Darwin';
const label = (c: ServiceContext) => agentLabel(c.layout.dataDir, c.defaultDataDir);
const guiDomain = (c: ServiceContext) => `gui/$(id -u)/${label(c)}`;

// A pid file can outlive its process and the pid be reused: only a process running mlx-mesh counts.
const alive = (pidExpr: string) => `ps -p ${pidExpr} -o args= 2>/dev/null | grep -q mlx-mesh`;

export async function peerProcess(c: ServiceContext): Promise<PeerProcess> {
  const script = isMac(c)
    ? `P=$(launchctl print ${guiDomain(c)} 2>/dev/null | awk '/^\\tpid = /{print $3}'); [ -n "$P" ] && ${alive('$P')} && echo "$P"; true`
    : `P=$(cat ${sq(c.layout.pid)} 2>/dev/null); [ -n "$P" ] && ${alive('$P')} && echo "$P"; true`;
  const out = (await c.host.run(script, 'checking the peer process')).trim();
  const pid = Number(out);
  return out && Number.isInteger(pid) ? { running: true, pid } : { running: false, pid: null };
}

export async function startPeer(c: ServiceContext, joinArgs: string[]): Promise<number> {
  const { layout, facts } = c;
  const node = facts.nodePath ?? 'node';
  const program = [node, layout.bin, 'join', '--data-dir', layout.dataDir, ...joinArgs];
  await c.host.run(`mkdir -p ${sq(layout.logDir)} && printf '\\n==== mlx-mesh up %s ====\\n' "$(date)" >> ${sq(layout.log)}`, 'preparing the log');
  if (isMac(c)) {
    const plistPath = `"$HOME"/Library/LaunchAgents/${label(c)}.plist`;
    const plist = agentPlist({
      label: label(c),
      program,
      logFile: layout.log,
      workingDir: layout.dataDir,
      env: { PATH: facts.path, MLX_MESH_DATA_DIR: layout.dataDir },
    });
    await c.host.run(`mkdir -p "$HOME"/Library/LaunchAgents && cat > ${plistPath} <<'MLX_MESH_PLIST'\n${plist}MLX_MESH_PLIST`, 'writing the LaunchAgent');
    const r = await c.host.exec(`launchctl bootout ${guiDomain(c)} 2>/dev/null; launchctl bootstrap gui/$(id -u) ${plistPath} 2>&1`);
    if (r.code !== 0) throw meshError('REMOTE_FAILED', explainBootstrapFailure(c.host.target.label, r.stdout + r.stderr));
  } else {
    // setsid: its own session, so the SSH hang-up does not reach it; without job control $! is the peer itself.
    const cmd = program.map(sq).join(' ');
    await c.host.run(
      // Only the peer goes to the background (`a && b &` would background a subshell holding the SSH channel open).
      `cd ${sq(layout.dataDir)} || exit 1\nsetsid nohup ${cmd} >> ${sq(layout.log)} 2>&1 < /dev/null &\necho $! > ${sq(layout.pid)}`,
      'starting the peer',
    );
  }
  const started = Date.now();
  for (;;) {
    const p = await peerProcess(c);
    if (p.running) return p.pid!;
    if (Date.now() - started > 5000) {
      const log = await tailLog(c, 30);
      throw meshError('REMOTE_FAILED', `the peer on ${c.host.target.label} exited right after starting. Its log (${layout.log}):\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** SIGTERM (the peer leaves the cluster cleanly), then SIGKILL after the grace period. */
export async function stopPeer(c: ServiceContext, graceMs = 10_000): Promise<{ wasRunning: boolean; pid: number | null; killed: boolean }> {
  const p = await peerProcess(c);
  if (isMac(c)) await c.host.exec(`launchctl bootout ${guiDomain(c)} 2>/dev/null; true`);
  if (!p.running) {
    if (!isMac(c)) await c.host.exec(`rm -f ${sq(c.layout.pid)}`);
    return { wasRunning: false, pid: null, killed: false };
  }
  const tries = Math.ceil(graceMs / 200);
  const out = await c.host.run(
    `P=${p.pid}; kill -TERM $P 2>/dev/null; i=0; while ${alive('$P')}; do i=$((i+1)); ` +
      `if [ $i -gt ${tries} ]; then kill -KILL $P 2>/dev/null; echo killed; break; fi; sleep 0.2; done; ` +
      `${isMac(c) ? 'true' : `rm -f ${sq(c.layout.pid)}`}`,
    'stopping the peer',
  );
  return { wasRunning: true, pid: p.pid, killed: out.includes('killed') };
}

export async function tailLog(c: ServiceContext, lines: number): Promise<string> {
  const r = await c.host.exec(`tail -n ${lines} ${sq(c.layout.log)} 2>&1`);
  return r.stdout.trimEnd();
}

/** Reads the remote peer's id (written by join on its first start). */
export async function remotePeerId(c: ServiceContext): Promise<string | null> {
  const r = await c.host.exec(`cat ${sq(path.posix.join(c.layout.dataDir, 'peer-id'))} 2>/dev/null`);
  return r.stdout.trim() || null;
}
