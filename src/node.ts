// A running node: the mesh peer plus its HTTP API. `join`, `demo` and the tests all start nodes here,
// so there is one wiring of the parts.
import { Inference } from '../peer/inference.ts';
import { Peer, type DiscoverySource, type PeerTimings } from '../peer/peer.ts';
import { deviceExtras } from './api/device-extras.ts';
import { registerDashboard } from './api/dashboard.ts';
import { registerDebugRoutes } from './api/debug.ts';
import { EventLog } from './api/event-log.ts';
import { MeshMetrics } from './api/metrics.ts';
import { registerOpenAiRoutes } from './api/openai.ts';
import { ApiServer } from './api/server.ts';
import { defaults, PROTOCOL_VERSION } from '../core/defaults.ts';
import { PACKAGE_VERSION } from '../core/paths.ts';

export const VERSION = PACKAGE_VERSION;

export interface NodeOptions {
  dataDir: string;
  name?: string;
  cluster?: string;
  host?: string;
  port?: number;
  apiHost?: string;
  apiPort?: number;
  /** Bearer key the API requires on every route but /health. */
  apiKey?: string;
  /** Let the API listen beyond loopback without a key. */
  insecureApi?: boolean;
  /** Browser origins allowed to call the API (CORS). */
  corsOrigins?: string[];
  discovery?: DiscoverySource[];
  /** Built once the peer exists (mDNS announces the peer id and bound port). */
  discoveryFor?: (peer: Peer) => Promise<DiscoverySource>;
  model?: string;
  python?: string;
  secret?: string;
  timings?: Partial<PeerTimings>;
  protocol?: number;
  /** Run an engine and take part in inference (default). Mesh-only tests turn it off. */
  inference?: boolean;
  /** Memory this peer offers for layers (`--memory`; else MLX_MESH_MEMORY_BYTES; else defaults.memoryFraction of RAM). */
  usableMemoryBytes?: number;
  prefillChunk?: number;
  /** `--gguf-weights`: auto, quantized or float32 (else MLX_MESH_GGUF_WEIGHTS, else auto). */
  ggufWeights?: string;
}

export interface MeshNode {
  peer: Peer;
  api: ApiServer;
  inference: Inference | null;
  dataDir: string;
  stop(): Promise<void>;
}

export async function startNode(opts: NodeOptions): Promise<MeshNode> {
  const discovery = opts.discovery ?? [];
  const peer = new Peer({
    dataDir: opts.dataDir,
    name: opts.name,
    cluster: opts.cluster ?? defaults.cluster,
    protocol: opts.protocol ?? PROTOCOL_VERSION,
    version: VERSION,
    host: opts.host,
    port: opts.port ?? defaults.port,
    apiPort: opts.apiPort ?? defaults.apiPort,
    discovery,
    discoveryFor: opts.discoveryFor,
    maxPayloadBytes: defaults.maxPayloadBytes,
    secret: opts.secret,
    sendWindow: defaults.sendWindow,
    heartbeatMs: defaults.heartbeatMs,
    heartbeatMisses: defaults.heartbeatMisses,
    handshakeTimeoutMs: defaults.handshakeTimeoutMs,
    dialBackoffMinMs: defaults.dialBackoffMinMs,
    dialBackoffMaxMs: defaults.dialBackoffMaxMs,
    settleMs: defaults.settleMs,
    ...opts.timings,
  });
  const inference =
    opts.inference === false
      ? null
      : new Inference({
          peer,
          dataDir: opts.dataDir,
          python: opts.python,
          model: opts.model,
          usableMemoryBytes: opts.usableMemoryBytes ?? (Number(process.env.MLX_MESH_MEMORY_BYTES) || undefined),
          prefillChunk: opts.prefillChunk,
          ggufWeights: opts.ggufWeights,
        });
  const source = {
    peer,
    extras: inference ? (id: string) => deviceExtras(inference, id) : undefined,
    model: () => inference?.plan?.meta.name ?? null,
    plan: () => inference?.plan ?? null,
    notReady: inference ? () => inference.notReadyReason() : undefined,
  };
  const metrics = new MeshMetrics(source, inference);
  const events = new EventLog(peer, inference);
  const api = new ApiServer({
    host: opts.apiHost ?? defaults.apiHost,
    port: opts.apiPort ?? defaults.apiPort,
    apiKey: opts.apiKey,
    insecure: opts.insecureApi,
    corsOrigins: opts.corsOrigins,
    source,
    onResponse: (endpoint, status) => metrics.observeHttp(endpoint, status),
  });
  api.route('GET', '/metrics', async (_q, res) => {
    const text = await metrics.text();
    res.writeHead(200, { 'content-type': metrics.contentType });
    res.end(text);
  });
  if (inference) {
    registerOpenAiRoutes(api, inference);
    registerDebugRoutes(api, peer, inference);
  }
  registerDashboard(api, source, inference, events);
  // The API binds first so that a busy API port fails before we announce ourselves to anyone.
  await api.start();
  peer.setApiPort(api.port);
  try {
    await peer.start();
  } catch (err) {
    await peer.stop();
    await api.stop();
    throw err;
  }
  // The engine starts in the background (importing MLX takes seconds on a busy machine): meanwhile
  // the node serves its API (503 until a plan is live) and can be stopped at once.
  void inference?.start();
  let stopping: Promise<void> | null = null;
  return {
    peer,
    api,
    inference,
    dataDir: opts.dataDir,
    // All at once: the goodbyes to other peers go out while the engine shuts down, and each step is
    // bounded (engine: shutdown, then SIGTERM, then SIGKILL; links: close, then terminate).
    stop: () => (stopping ??= Promise.all([inference?.stop(), peer.stop(), api.stop()]).then(() => {})),
  };
}
