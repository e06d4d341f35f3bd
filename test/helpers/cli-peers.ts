// Peers as `mlx-mesh join` processes on the tiny model, for fault tests that kill processes: start one
// (or restart it on its old ports and data dir), wait for a healthy cluster, find a peer's engine
// processes, and stream a completion that calls back part-way (where a test strikes).
import { execFileSync } from 'node:child_process';
import { sseEvents } from '../../src/sse.ts';
import { getJson, STORIES, TEST_PYTHON, tempDir, waitFor } from './mesh.ts';
import { freePort, type PeerProcess, spawnCli } from './process.ts';

export const FAST_ENV = { MLX_MESH_HEARTBEAT_MS: '250', MLX_MESH_SETTLE_MS: '500', MLX_MESH_LOG: 'warn' };

export interface CliPeer {
  p: PeerProcess;
  id: string;
  port: number;
  api: number;
  dataDir: string;
  name: string;
}

/** Starts `join` on stories260K linked to `peers`; with `prev`, the same peer again (ports, data dir). */
export async function startPeer(name: string, peers: number[], extra: string[] = [], prev?: CliPeer): Promise<CliPeer> {
  const port = prev?.port ?? (await freePort());
  const api = prev?.api ?? (await freePort());
  const dataDir = prev?.dataDir ?? tempDir();
  const args = ['join', '--no-mdns', '--host', '127.0.0.1', '--port', String(port), '--api-port', String(api), '--data-dir', dataDir, '--name', name];
  args.push('--model', STORIES, '--python', TEST_PYTHON, ...extra);
  for (const q of peers) args.push('--peer', `127.0.0.1:${q}`);
  const p = spawnCli(args, FAST_ENV);
  await p.waitForOutput(/API http/, 60_000);
  const id = (await getJson(`http://127.0.0.1:${api}/health`)).peer_id;
  return { p, id, port, api, dataDir, name };
}

export const gpuInfo = (x: CliPeer) => getJson(`http://127.0.0.1:${x.api}/distributed/gpu-info`);

/** Waits until `procs[0]` sees a healthy cluster of `n` stages; resolves with its gpu-info. */
export async function healthy(procs: CliPeer[], n: number): Promise<any> {
  return waitFor(async () => {
    const v = await gpuInfo(procs[0]);
    return v.cluster_status === 'healthy' && v.devices.filter((d: { layers: unknown }) => d.layers).length === n ? v : null;
  }, 90_000, `${n} healthy stages`);
}

/** The engine processes a peer process runs (its children). */
export function children(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

export const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

export interface Streamed {
  text: string;
  /** The error event's `error`, if the stream ended with one. */
  error: { message: string; code: string } | null;
  finishReason: string | null;
  /** From the end of `midway` to the end of the stream. */
  ms: number;
  /** The longest wait for the next event after `midway` (from its end): what a client sees of a recovery. */
  stallMs: number;
}

/** Streams `body` from `origin`'s /v1/completions; after `after` chunks awaits `midway` once. */
export async function streamCompletion(origin: CliPeer, body: object, after: number, midway: () => Promise<void>): Promise<Streamed> {
  const res = await fetch(`http://127.0.0.1:${origin.api}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true }),
  });
  const out: Streamed = { text: '', error: null, finishReason: null, ms: 0, stallMs: 0 };
  let chunks = 0;
  let struckAt = 0;
  let last = 0;
  for await (const { data: raw } of sseEvents(res.body!)) {
    if (struckAt) out.stallMs = Math.max(out.stallMs, Date.now() - last);
    last = Date.now();
    if (raw === '[DONE]') continue;
    const data = JSON.parse(raw);
    if (data.error) out.error = data.error;
    else {
      const piece = data.choices[0]?.text ?? '';
      out.text += piece;
      out.finishReason = data.choices[0]?.finish_reason ?? out.finishReason;
    }
    if (++chunks === after) {
      await midway();
      last = struckAt = Date.now();
    }
  }
  out.ms = struckAt ? Date.now() - struckAt : 0;
  return out;
}
