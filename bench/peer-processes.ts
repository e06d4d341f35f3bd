// N peers as separate OS processes on loopback (`mlx-mesh join --no-mdns --peer …`), optionally each
// pinned to its own core with `taskset` (the engine child inherits the affinity): the honest stand-in
// for N machines on one box. Used by `mlx-mesh bench inference`.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PACKAGE_ROOT } from '../core/paths.ts';

export interface PeerProcess {
  index: number;
  child: ChildProcess;
  apiUrl: string;
  /** CPU the peer and its engine are pinned to, or null. */
  core: number | null;
  output(): string;
}

export interface PeerProcessesOptions {
  peers: number;
  model: string;
  python: string;
  /** Pin peer i to core i mod the CPU count. */
  pin: boolean;
  env: NodeJS.ProcessEnv;
  /** Each peer's data dir is <root>/peer-<i>. */
  root: string;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** `taskset -c <core>` as a command prefix when pinning (Linux), else nothing. */
export function pinPrefix(core: number | null): string[] {
  return core === null ? [] : ['taskset', '-c', String(core)];
}

/** Starts every peer at once, each told about all the others, so one plan covers them all. */
export async function startPeerProcesses(opts: PeerProcessesOptions): Promise<PeerProcess[]> {
  const ports = await Promise.all(Array.from({ length: opts.peers }, () => freePort()));
  const apiPorts = await Promise.all(Array.from({ length: opts.peers }, () => freePort()));
  const cluster = `bench-${process.pid}-${opts.peers}`;
  const bin = path.join(PACKAGE_ROOT, 'bin', 'mlx-mesh.js');
  return ports.map((port, i) => {
    const dataDir = path.join(opts.root, `peer-${i}`);
    fs.mkdirSync(dataDir, { recursive: true });
    const core = opts.pin ? i % os.cpus().length : null;
    const args = [
      bin, 'join', '--no-mdns', '--host', '127.0.0.1', '--port', String(port),
      '--api-host', '127.0.0.1', '--api-port', String(apiPorts[i]), '--cluster', cluster, '--name', `bench-${i}`,
      '--data-dir', dataDir, '--python', opts.python, '--model', opts.model,
      ...ports.filter((_, j) => j !== i).flatMap((p) => ['--peer', `127.0.0.1:${p}`]),
    ];
    const cmd = [...pinPrefix(core), process.execPath, ...args];
    const child = spawn(cmd[0], cmd.slice(1), { env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const keep = (d: Buffer) => (out = (out + d.toString()).slice(-20_000));
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    return { index: i, child, apiUrl: `http://127.0.0.1:${apiPorts[i]}`, core, output: () => out };
  });
}

interface GpuInfo {
  cluster_status: string;
  world_size: number;
  devices: Array<{ device_id: string; rank: number; layers: [number, number] | null; status: string }>;
}

async function getJson<T>(url: string): Promise<T | null> {
  try {
    const res = await fetch(url);
    return res.ok ? ((await res.json()) as T) : null;
  } catch {
    return null;
  }
}

/** Waits until every peer sees a healthy cluster of all of them with layers placed; returns the stages by rank. */
export async function waitForCluster(peers: PeerProcess[], timeoutMs: number): Promise<GpuInfo['devices']> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const dead = peers.find((p) => p.child.exitCode !== null || p.child.signalCode !== null);
    if (dead) throw new Error(`peer ${dead.index} exited before the cluster was ready:\n${dead.output()}`);
    const infos = await Promise.all(peers.map((p) => getJson<GpuInfo>(`${p.apiUrl}/distributed/gpu-info`)));
    const ok = infos.every(
      (g) => g && g.cluster_status === 'healthy' && g.world_size === peers.length && g.devices.every((d) => d.layers && d.status === 'healthy'),
    );
    if (ok) return [...infos[0]!.devices].sort((a, b) => a.rank - b.rank);
    if (Date.now() > deadline) {
      throw new Error(`the ${peers.length}-peer cluster was not ready within ${timeoutMs / 1000} s:\n${peers.map((p) => p.output()).join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** The peer's id, from its own /health. */
export async function peerId(peer: PeerProcess): Promise<string> {
  return (await getJson<{ peer_id: string }>(`${peer.apiUrl}/health`))!.peer_id;
}

/** Pids of the engine processes (children running mlx_mesh_engine) of a peer process. */
export function enginePids(peerPid: number): number[] {
  const out: number[] = [];
  if (!fs.existsSync('/proc')) return out; // macOS: no per-process peak to read
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === peerPid && fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').includes('mlx_mesh_engine')) out.push(Number(name));
    } catch {
      // the process ended while we looked
    }
  }
  return out;
}

/** Peak resident memory (VmHWM) of a process in bytes (Linux), or null. */
export function peakRssBytes(pid: number): number | null {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** SIGTERM (peers leave cleanly and stop their engines), SIGKILL after a grace period. */
export async function stopPeerProcesses(peers: PeerProcess[], graceMs = 15_000): Promise<void> {
  await Promise.all(
    peers.map(async (p) => {
      if (p.child.exitCode !== null || p.child.signalCode !== null) return;
      const exited = new Promise((r) => p.child.once('exit', r));
      p.child.kill('SIGTERM');
      const timer = setTimeout(() => p.child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    }),
  );
}
