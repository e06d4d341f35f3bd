// The JSON the API shows about the cluster, built from a peer's state (no I/O here).
import { byAge } from '../../peer/election.ts';
import type { Peer } from '../../peer/peer.ts';
import type { PeerInfo } from '../../transport/messages.ts';

export type Role = 'coordinator' | 'worker';

/** Extra per-device facts from the inference layer (layer ranges, engine state); absent until a plan exists. */
export interface DeviceExtras {
  layers?: [number, number] | null;
  status?: string;
  engine?: string;
  memoryBytes?: number;
  peakRssBytes?: number;
  rssBeforeLoadBytes?: number;
  ggufWeights?: string;
  backend?: string;
  blas?: string;
  malloc?: string;
  sched?: string;
  mlxVersion?: string;
  rank?: number;
  load?: { tokensPerSec: number; inFlight: number; rttMs?: Record<string, number> };
  fetch?: { state: string; from: string; bytesDone: number; bytesTotal: number; bytesReceived: number; modelBytes: number; mbPerSec?: number };
}

export interface ViewSource {
  peer: Peer;
  extras?: (id: string) => DeviceExtras | undefined;
  model?: () => string | null;
  plan?: () => unknown;
  /** Why requests cannot be served right now (null when they can): the cluster is still forming. */
  notReady?: () => string | null;
}

function roleOf(peer: Peer, id: string): Role {
  return peer.leadership.coordinator === id ? 'coordinator' : 'worker';
}

/** Coordinator first (rank 0), then by plan rank where known, then by age. */
function ordered(src: ViewSource): PeerInfo[] {
  const { peer } = src;
  return peer.live().sort((a, b) => {
    const ca = peer.leadership.coordinator === a.id ? 0 : 1;
    const cb = peer.leadership.coordinator === b.id ? 0 : 1;
    const ra = src.extras?.(a.id)?.rank ?? Infinity;
    const rb = src.extras?.(b.id)?.rank ?? Infinity;
    return ca - cb || (ra === rb ? byAge(a, b) : ra < rb ? -1 : 1);
  });
}

export function clusterStatus(src: ViewSource): 'healthy' | 'degraded' | 'forming' {
  const { peer } = src;
  // Partial connectivity: linked peers follow a coordinator this peer cannot reach.
  if (peer.deferredTo) return 'degraded';
  if (!peer.leadership.coordinator) return 'forming';
  const statuses = peer.live().map((p) => src.extras?.(p.id)?.status ?? 'healthy');
  const lostPeers = peer.targets().some((t) => t.id && !t.self && !peer.membership.has(t.id) && t.source === 'static');
  if (lostPeers || statuses.some((s) => s === 'failed' || s === 'restarting')) return 'degraded';
  if (statuses.some((s) => s !== 'healthy' && s !== 'excluded') || src.notReady?.()) return 'forming';
  return 'healthy';
}

export function healthView(src: ViewSource) {
  return { status: 'ok', peer_id: src.peer.id, role: roleOf(src.peer, src.peer.id) };
}

export function gpuInfoView(src: ViewSource) {
  const { peer } = src;
  const devices = ordered(src).map((p, i) => {
    const x = src.extras?.(p.id);
    return {
      device_id: p.id,
      name: p.name,
      hostname: p.hostname,
      status: x?.status ?? 'healthy',
      role: roleOf(peer, p.id),
      rank: x?.rank ?? i,
      layers: x?.layers ?? null,
      memory_bytes: x?.memoryBytes ?? p.capabilities.totalMemory,
      memory_budget_bytes: typeof p.capabilities.usableMemory === 'number' ? p.capabilities.usableMemory : null,
      peak_rss_bytes: x?.peakRssBytes ?? null,
      rss_before_load_bytes: x?.rssBeforeLoadBytes ?? null,
      gguf_weights: x?.ggufWeights ?? null,
      backend: x?.backend ?? p.capabilities.backend ?? null,
      blas: x?.blas ?? null,
      malloc: x?.malloc ?? null,
      sched: x?.sched ?? null,
      engine: x?.engine ?? p.capabilities.engine ?? null,
      tokens_per_sec: x?.load?.tokensPerSec ?? 0,
      requests_in_flight: x?.load?.inFlight ?? 0,
      fetch: x?.fetch
        ? {
            state: x.fetch.state,
            from: x.fetch.from,
            bytes_done: x.fetch.bytesDone,
            bytes_total: x.fetch.bytesTotal,
            bytes_received: x.fetch.bytesReceived,
            model_bytes: x.fetch.modelBytes,
            mb_per_s: x.fetch.mbPerSec ?? null,
          }
        : null,
    };
  });
  return {
    devices,
    cluster_status: clusterStatus(src),
    world_size: devices.length,
    coordinator: peer.leadership.coordinator,
    term: peer.leadership.term,
    model: src.model?.() ?? null,
  };
}

export function clusterView(src: ViewSource) {
  const { peer } = src;
  const self = peer.info();
  return {
    self: { ...self, role: roleOf(peer, self.id) },
    cluster: peer.cluster,
    cluster_status: clusterStatus(src),
    term: peer.leadership.term,
    coordinator: peer.leadership.coordinator,
    peers: peer.membership.all().map((l) => ({
      ...l.remote,
      // What the peer reported after its handshake (engine backend and versions) joins what it said in it.
      capabilities: { ...l.remote.capabilities, ...definedOnly({ backend: src.extras?.(l.remote.id)?.backend, mlxVersion: src.extras?.(l.remote.id)?.mlxVersion }) },
      role: roleOf(peer, l.remote.id),
      state: l.isOpen ? 'connected' : 'closed',
      host: l.remoteHost,
      direction: l.direction,
      rttMs: l.rttMs,
      connectedFor: Math.round((Date.now() - l.openedAt) / 1000),
      ...src.extras?.(l.remote.id),
    })),
    targets: peer.targets().map((t) => ({
      address: `${t.host}:${t.port}`,
      id: t.id ?? null,
      source: t.source,
      linked: t.id ? peer.membership.has(t.id) : false,
      self: t.self ?? false,
      lastError: t.lastError ?? null,
    })),
    refused: peer.refusals,
    unreachable_coordinator: peer.deferredTo,
    ignored: peer.ignored,
    plan: src.plan?.() ?? null,
  };
}

function definedOnly<T extends Record<string, unknown>>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
