// Checks of another peer: name resolution, TCP reach, the WebSocket hello (protocol and cluster), RTT,
// and its engine state as the local peer's /cluster reports it.
import dns from 'node:dns/promises';
import net from 'node:net';
import WebSocket from 'ws';
import { decodeMessage } from '../../transport/codec.ts';
import { peerUrl } from '../../transport/dialer.ts';
import type { ClusterPeer } from '../remote/local-view.ts';
import { type CheckResult, fail, pass, skip, warn } from './check.ts';

export interface PeerTarget {
  host: string;
  port: number;
  /** The peer id a static target had when it was last linked. */
  id?: string;
  /** From the local view, when the peer is known there. */
  known?: ClusterPeer;
}

export async function checkResolve(group: string, host: string): Promise<CheckResult> {
  if (net.isIP(host)) return pass(group, 'name resolves', `${host} is an address`);
  try {
    const { address } = await dns.lookup(host);
    return pass(group, 'name resolves', `${host} → ${address}`);
  } catch (err) {
    return fail(group, 'name resolves', `${host}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, `check the name, or use the peer's IP address (${host.endsWith('.local') ? '.local names need mDNS' : 'DNS'})`);
  }
}

/** Connects and reports the connect time, which is one round trip. */
export function tcpConnect(host: string, port: number, timeoutMs: number): Promise<{ ok: true; ms: number } | { ok: false; error: string }> {
  return new Promise((resolve) => {
    const started = process.hrtime.bigint();
    const s = net.connect({ host, port });
    const done = (r: { ok: true; ms: number } | { ok: false; error: string }) => {
      s.destroy();
      resolve(r);
    };
    s.setTimeout(timeoutMs, () => done({ ok: false, error: `no answer in ${timeoutMs} ms` }));
    s.once('connect', () => done({ ok: true, ms: Number(process.hrtime.bigint() - started) / 1e6 }));
    s.once('error', (err: NodeJS.ErrnoException) => done({ ok: false, error: err.code ?? err.message }));
  });
}

export async function checkTcp(group: string, host: string, port: number, timeoutMs: number): Promise<{ result: CheckResult; ms?: number }> {
  const r = await tcpConnect(host, port, timeoutMs);
  if (r.ok) return { result: pass(group, `TCP port ${port}`, `reachable`), ms: r.ms };
  return {
    result: fail(group, `TCP port ${port}`, `${host}:${port} ${r.error}`, `is "mlx-mesh join" running on ${host} with --port ${port}? Is the port open in its firewall?`),
  };
}

export interface HelloProbe {
  protocol: number;
  cluster: string;
  peerId: string;
  version?: string;
}

// The peer sends its hello as soon as the socket opens. We read it and close without answering, so the
// check never becomes a member of the cluster (no membership change, no new term).
export function probeHello(host: string, port: number, timeoutMs: number): Promise<HelloProbe> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(peerUrl(host, port), { perMessageDeflate: false, handshakeTimeout: timeoutMs, maxPayload: 1 << 20 });
    const timer = setTimeout(() => finish(new Error(`no hello within ${timeoutMs} ms`)), timeoutMs);
    const finish = (err: Error | null, v?: HelloProbe) => {
      clearTimeout(timer);
      ws.removeAllListeners();
      ws.on('error', () => {});
      // A polite close names us in the peer's log ("closed during handshake (1000 mlx-mesh doctor probe)").
      if (ws.readyState === WebSocket.OPEN) {
        ws.close(1000, 'mlx-mesh doctor probe');
        setTimeout(() => ws.terminate(), 500).unref();
      } else ws.terminate();
      if (err) reject(err);
      else resolve(v!);
    };
    ws.on('message', (data: Buffer) => {
      try {
        const msg = decodeMessage(data, 1 << 20);
        if (msg.type !== 'hello') return finish(new Error(`expected hello, got "${msg.type}"`));
        finish(null, { protocol: msg.protocol, cluster: msg.cluster, peerId: msg.peer.id, version: msg.peer.capabilities.mlxMeshVersion });
      } catch (err) {
        finish(err as Error);
      }
    });
    ws.on('unexpected-response', (_req, res) => finish(new Error(`HTTP ${res.statusCode} instead of a WebSocket upgrade: not an mlx-mesh peer port`)));
    ws.on('error', (err) => finish(err));
    ws.on('close', (code, reason) => finish(new Error(`closed before the hello (${code} ${reason.toString()})`)));
  });
}

export function helloVerdict(group: string, expect: { protocol: number; cluster: string }, probe: HelloProbe | Error): CheckResult {
  const title = 'WebSocket handshake';
  if (probe instanceof Error) return fail(group, title, probe.message, 'check that this address is an mlx-mesh peer port (default 50051) and that the peer is running');
  const who = `peer ${probe.peerId}${probe.version ? `, mlx-mesh ${probe.version}` : ''}`;
  if (probe.protocol !== expect.protocol) {
    return fail(group, title, `${who} speaks protocol ${probe.protocol}, this one ${expect.protocol}`, 'run the same mlx-mesh version on both machines ("mlx-mesh up" installs this one)');
  }
  if (probe.cluster !== expect.cluster) {
    return fail(group, title, `${who} is in cluster "${probe.cluster}", expected "${expect.cluster}"`, `start both with the same --cluster`);
  }
  return pass(group, title, `${who}, protocol ${probe.protocol}, cluster "${probe.cluster}"`);
}

export function rttVerdict(group: string, connectMs: number | undefined, linkRttMs: number | null | undefined): CheckResult {
  if (connectMs === undefined && typeof linkRttMs !== 'number') return skip(group, 'RTT', 'not measured (unreachable)');
  const parts = [];
  if (typeof linkRttMs === 'number') parts.push(`${linkRttMs.toFixed(1)} ms on the mesh link`);
  if (connectMs !== undefined) parts.push(`${connectMs.toFixed(1)} ms TCP connect`);
  const worst = Math.max(linkRttMs ?? 0, connectMs ?? 0);
  return worst > 50
    ? warn(group, 'RTT', `${parts.join(', ')}: slow for token-by-token pipelining`, 'use wired Ethernet or Thunderbolt between the machines')
    : pass(group, 'RTT', parts.join(', '));
}

export function engineVerdict(group: string, known: ClusterPeer | undefined, localMlx?: string): CheckResult {
  const title = 'engine';
  if (!known) return skip(group, title, 'not linked to the local peer, so its engine state is unknown');
  const caps = known.capabilities ?? {};
  const state = known.engine ?? caps.engine;
  const mlx = caps.mlxVersion ? `mlx ${caps.mlxVersion}` : 'mlx version not reported';
  // What it computes on: the device and, for the CPU's matmuls, the BLAS (and the engine's malloc and
  // scheduling policy).
  const backend =
    (caps.backend ? `, ${caps.backend}` : '') +
    (known.blas ? `, BLAS ${known.blas}` : '') +
    (known.malloc ? `, malloc ${known.malloc}` : '') +
    (known.sched ? `, sched ${known.sched}` : '');
  if (state && /fail|crash|error/i.test(state)) {
    return fail(group, title, `${state} (${mlx}${backend})`, `read its log ("mlx-mesh logs <host>" or the join output) and run "mlx-mesh setup" there`);
  }
  if (localMlx && caps.mlxVersion && caps.mlxVersion !== localMlx) {
    // Stages on different MLX versions may compute slightly different activations.
    return fail(group, title, `${state ?? 'idle'} with mlx ${caps.mlxVersion}, this machine has mlx ${localMlx}`, 'run the same mlx-mesh version and "mlx-mesh setup" on both');
  }
  return pass(group, title, `${state ?? 'idle (no model loaded)'} (${mlx}${backend})`);
}

/** Refusals a peer lists in /cluster that mean two live processes share one peer id (a cloned data dir). */
export function peerIdVerdict(refused: unknown[] | undefined): CheckResult {
  const dups = (refused ?? []).filter((r): r is { from: string; message?: string } => (r as { code?: string })?.code === 'DUPLICATE_ID');
  if (!dups.length) return pass('this machine', 'peer ids', 'no other live process claims a peer id of this cluster');
  return fail(
    'this machine',
    'peer ids',
    `DUPLICATE_ID: ${dups.map((d) => d.from).join(', ')} claim(s) the id of a live peer`,
    'give each machine its own data dir: delete <data-dir>/peer-id on the copy (or pass another --data-dir) and restart it',
  );
}
