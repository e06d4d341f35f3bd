// /metrics through prom-client: one registry per node (tests run several nodes in one process), fed by
// the events peer/ emits (links, elections, refusals, plans, engine, hops, tokens, requests) and by
// gauges read from the peer's state when Prometheus scrapes.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { OpTotals } from '../../peer/engine-op-stats.ts';
import type { Inference } from '../../peer/inference.ts';
import type { EngineState } from '../../peer/supervisor.ts';
import { CloseCode } from '../../transport/close-codes.ts';
import { clusterStatus, type ViewSource } from './views.ts';

const ENGINE_STATES: readonly EngineState[] = ['stopped', 'starting', 'idle', 'loading', 'ready', 'restarting', 'failed'];
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const HOP_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];
// prom-client samples the event loop's delay with a timer of this period. Its default (10 ms) wakes an
// idle peer 100 times a second, and each wake-up takes the core from the engine computing beside it
// (peer and engine share one core when pinned): measured, it cost a 2-peer mesh ~2% of its decode speed.
const EVENT_LOOP_SAMPLE_MS = 500;
const TTFT_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class MeshMetrics {
  readonly registry = new Registry();
  private readonly httpRequests: Counter<'endpoint' | 'status'>;

  constructor(src: ViewSource, inference: Inference | null) {
    const { peer } = src;
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });

    const gauge = (name: string, help: string, read: (g: Gauge) => void, labelNames: string[] = []) =>
      new Gauge({ name, help, labelNames, registers, collect() { this.reset(); read(this); } });
    const counter = <L extends string>(name: string, help: string, labelNames: L[] = []) => new Counter<L>({ name, help, labelNames, registers });
    const histogram = <L extends string>(name: string, help: string, buckets: number[], labelNames: L[] = []) =>
      new Histogram<L>({ name, help, buckets, labelNames, registers });

    // Cluster shape, read at scrape time.
    gauge('mlx_mesh_world_size', 'Live peers in the cluster, this one included.', (g) => g.set(peer.live().length));
    gauge('mlx_mesh_peer_info', 'Every live peer (value 1), with its name and hostname.', (g) => {
      for (const p of peer.live()) g.set({ peer: p.id, name: p.name, hostname: p.hostname }, 1);
    }, ['peer', 'name', 'hostname']);
    gauge('mlx_mesh_term', 'Current coordinator term.', (g) => g.set(peer.leadership.term));
    gauge('mlx_mesh_is_coordinator', '1 when this peer is the coordinator.', (g) => g.set(peer.isCoordinator ? 1 : 0));
    gauge('mlx_mesh_cluster_status', 'Cluster status (1 for the current one).', (g) => {
      const status = clusterStatus(src);
      for (const s of ['healthy', 'degraded', 'forming']) g.set({ status: s }, s === status ? 1 : 0);
    }, ['status']);
    gauge('mlx_mesh_link_rtt_seconds', 'Heartbeat round-trip time per link.', (g) => {
      for (const l of peer.membership.all()) if (l.rttMs !== null) g.set({ peer: l.remote.id }, l.rttMs / 1000);
    }, ['peer']);

    const joins = counter('mlx_mesh_peer_joins_total', 'Links to peers that came up.');
    const leaves = counter('mlx_mesh_peer_leaves_total', 'Links to peers that went down, by close code.', ['code']);
    const framesRefused = counter('mlx_mesh_frames_refused_total', 'Links closed because a frame was refused (1008 invalid, 1009 too large), by either side.', ['code']);
    const elections = counter('mlx_mesh_elections_total', 'Coordinator terms this peer has seen begin.');
    const refusals = counter('mlx_mesh_handshake_refusals_total', 'Handshakes refused, by reason (error code).', ['reason']);
    peer.on('up', () => joins.inc());
    peer.on('down', (_link, info) => {
      leaves.inc({ code: String(info.code) });
      if (info.code === CloseCode.POLICY || info.code === CloseCode.TOO_BIG) framesRefused.inc({ code: String(info.code) });
    });
    let lastTerm = peer.leadership.term;
    peer.on('leadership', (l) => {
      if (l.term > lastTerm) elections.inc();
      lastTerm = Math.max(lastTerm, l.term);
    });
    peer.on('refused', (r) => refusals.inc({ reason: r.code }));

    this.httpRequests = counter('mlx_mesh_http_requests_total', 'HTTP requests by endpoint and status code.', ['endpoint', 'status']);
    if (!inference) return;

    gauge('mlx_mesh_plan_version', 'Version of the layer plan this peer follows (0: none yet).', (g) => g.set(inference.plan?.version ?? 0));
    const plans = counter('mlx_mesh_plans_total', 'Layer plans this peer adopted.');
    inference.on('plan', () => plans.inc());
    gauge('mlx_mesh_engine_state', "The engine's state (1 for the current one).", (g) => {
      const state = inference.selfState.engine;
      for (const s of ENGINE_STATES) g.set({ state: s }, s === state ? 1 : 0);
    }, ['state']);
    const restarts = counter('mlx_mesh_engine_restarts_total', 'Engine restarts after a crash.');
    inference.engine.on('restart', () => restarts.inc());
    gauge('mlx_mesh_engine_memory_bytes', "Memory the engine's loaded layers take.", (g) => g.set(inference.selfState.memoryBytes ?? 0));
    gauge('mlx_mesh_weights_served_bytes', "Bytes of model weights this peer has sent to peers fetching their layers.", (g) => g.set(inference.weightsSentBytes));
    gauge('mlx_mesh_weights_fetch_bytes', "This peer's last transfer of its layers' weights from a peer: bytes done, total, received over the link.", (g) => {
      const f = inference.selfState.fetch;
      g.set({ kind: 'done' }, f?.bytesDone ?? 0);
      g.set({ kind: 'total' }, f?.bytesTotal ?? 0);
      g.set({ kind: 'received' }, f?.bytesReceived ?? 0);
    }, ['kind']);
    gauge('mlx_mesh_engine_peak_rss_bytes', "The engine process's peak resident memory, as it reported after its last load.", (g) => g.set(inference.selfState.peakRssBytes ?? 0));
    // Per engine op since the engine process started (a restarted engine starts again from zero): the time
    // inside the engine (each reply says), the round trip seen from here (adds framing, pipes, queueing), bytes.
    const perOp = (read: (t: OpTotals) => number) => (g: Gauge) => {
      for (const [op, t] of Object.entries(inference.engine.opStats())) g.set({ op }, read(t));
    };
    gauge('mlx_mesh_engine_ops', 'Engine ops answered, by op.', perOp((t) => t.count), ['op']);
    gauge('mlx_mesh_engine_op_compute_seconds', 'Time inside the engine, by op.', perOp((t) => t.computeMs / 1000), ['op']);
    gauge('mlx_mesh_engine_op_roundtrip_seconds', 'From sending an op to the engine to its reply, by op.', perOp((t) => t.roundTripMs / 1000), ['op']);
    gauge('mlx_mesh_engine_op_bytes', "Bytes over the engine's stdio, by op and direction (to_engine, from_engine).", (g) => {
      for (const [op, t] of Object.entries(inference.engine.opStats())) {
        g.set({ op, direction: 'to_engine' }, t.bytesToEngine);
        g.set({ op, direction: 'from_engine' }, t.bytesFromEngine);
      }
    }, ['op', 'direction']);

    gauge('mlx_mesh_requests_in_flight', 'Generations this peer is driving now.', (g) => g.set(inference.inFlight));
    const requests = counter('mlx_mesh_requests_total', 'Generations this peer drove, by endpoint and outcome (stop, length, error, aborted).', ['endpoint', 'outcome']);
    const promptTokens = counter('mlx_mesh_prompt_tokens_total', 'Prompt tokens of the generations this peer drove.');
    const generated = counter('mlx_mesh_generated_tokens_total', 'Tokens generated for the requests this peer drove.');
    inference.on('request', (r) => {
      requests.inc({ endpoint: r.endpoint, outcome: r.outcome ?? 'error' });
      promptTokens.inc(r.promptTokens);
      generated.inc(r.completionTokens);
    });
    const ttft = histogram('mlx_mesh_time_to_first_token_seconds', 'From the start of a generation to its first token.', TTFT_BUCKETS);
    const perToken = histogram('mlx_mesh_token_latency_seconds', 'Time between consecutive tokens of a generation.', LATENCY_BUCKETS);
    inference.on('token', (t) => (t.first ? ttft : perToken).observe(t.latencyMs / 1000));

    const compute = histogram('mlx_mesh_hop_compute_seconds', "This peer's stage: engine time per step (queueing included).", HOP_BUCKETS);
    const transfer = histogram('mlx_mesh_hop_transfer_seconds', 'Transfer time of a step into this stage, by sender (wall clocks).', HOP_BUCKETS, ['from']);
    const bytesIn = counter('mlx_mesh_hop_received_bytes_total', 'Activation bytes received by this stage, by sender.', ['from']);
    const bytesOut = counter('mlx_mesh_forward_bytes_total', 'Activation bytes this stage sent on, by receiver.', ['to']);
    const stageTokens = counter('mlx_mesh_stage_tokens_total', "Sequence positions computed by this peer's layers.");
    inference.on('hop', (h) => {
      compute.observe(h.computeMs / 1000);
      transfer.observe({ from: h.from }, h.transferMs / 1000);
      if (h.bytesIn) bytesIn.inc({ from: h.from }, h.bytesIn);
      if (h.bytesOut) bytesOut.inc({ to: h.to }, h.bytesOut);
      stageTokens.inc(h.tokens);
    });
  }

  /** One HTTP request answered; `endpoint` is the route's path, so ids in paths do not explode labels. */
  observeHttp(endpoint: string, status: number): void {
    this.httpRequests.inc({ endpoint, status: String(status) });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
