// The local peer's view of the cluster (GET /cluster), which up and down watch for the remote peer.
import { apiKeyFrom, authHeaders } from '../api-client.ts';

export interface ClusterPeer {
  id: string;
  name?: string;
  hostname?: string;
  host?: string;
  port?: number;
  state?: string;
  role?: string;
  rttMs?: number | null;
  capabilities?: { mlxVersion?: string; engine?: string; backend?: string; [k: string]: unknown };
  engine?: string;
  /** The CBLAS its engine uses, from its status (gpu-info's `blas`). */
  blas?: string;
  /** The malloc its engine runs with, from its status (gpu-info's `malloc`). */
  malloc?: string;
  /** Its engine's scheduling policy ("batch" on Linux), from its status (gpu-info's `sched`). */
  sched?: string;
}

export interface ClusterView {
  self: { id: string; name?: string; hostname?: string; port?: number; apiPort?: number; role?: string; capabilities?: ClusterPeer['capabilities'] };
  cluster: string;
  term?: number;
  coordinator?: string | null;
  peers: ClusterPeer[];
  ignored?: unknown[];
  refused?: unknown[];
}

/** null when no peer answers there (or it refuses the key, MLX_MESH_API_KEY unless given). */
export async function fetchCluster(api: string, timeoutMs = 3000, key = apiKeyFrom(undefined)): Promise<ClusterView | null> {
  try {
    const res = await fetch(`${api.replace(/\/$/, '')}/cluster`, { headers: authHeaders(key), signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) return null;
    return (await res.json()) as ClusterView;
  } catch {
    return null;
  }
}

export async function waitForPeer(api: string, id: string, present: boolean, timeoutMs: number): Promise<ClusterPeer | null | 'timeout'> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const view = await fetchCluster(api);
    const peer = view?.peers.find((p) => p.id === id && p.state !== 'closed') ?? null;
    if (present ? peer : view && !peer) return peer;
    if (Date.now() > deadline) return 'timeout';
    await new Promise((r) => setTimeout(r, 300));
  }
}
