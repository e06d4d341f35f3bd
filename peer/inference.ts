// Inference on one peer: its engine, the plan (made by the coordinator, followed by everyone), its
// pipeline stage, and the generations it drives for its own API clients.
//
// Every peer runs the same code. The coordinator additionally turns the live membership into a plan
// and publishes it; each peer loads its layer range and reports `status`; the plan is live when every
// stage reports ready. Any peer can drive a request: the last stage sends tokens to the request's origin.
import { EventEmitter } from 'node:events';
import os from 'node:os';
import { defaults } from '../core/defaults.ts';
import { isMeshError, meshError, MeshError } from '../core/errors.ts';
import type { Link } from '../transport/link.ts';
import { createLogger, type Logger } from '../core/log.ts';
import type { Message, MessageOf } from '../transport/messages.ts';
import { type ActivePlan, type GenerateRequest, Generation, type GenerationResult } from './generation.ts';
import { resolveModel } from './model-source.ts';
import type { Peer } from './peer.ts';
import { LoadMeter } from './load-meter.ts';
import { makePlan, planIsCurrent } from './planner.ts';
import { prefillChunkSize } from './prefill-chunk.ts';
import { type RequestRecord, RequestTrace, TraceRing, wallMs } from './request-trace.ts';
import { runStage, type StageHop } from './stage.ts';
import { resolvePython } from './python-env.ts';
import { EngineSupervisor, type InspectResult } from './supervisor.ts';

type PlanMessage = MessageOf<'plan'>;
type StatusMessage = MessageOf<'status'>;

export interface InferenceOptions {
  peer: Peer;
  dataDir: string;
  python?: string;
  /** `--model`; only the coordinator's matters. Undefined means the bundled default model. */
  model?: string;
  /** Memory this peer offers for layers; default 75% of RAM (unified memory is shared with the OS). */
  usableMemoryBytes?: number;
  /** Prompt tokens per prefill message (mlx_lm's prefill_step_size); default from the prompt length and
   *  the number of stages (peer/prefill-chunk.ts), so the stages overlap. */
  prefillChunk?: number;
  stepTimeoutMs?: number;
  /** Quiet time after a membership change before the coordinator re-plans (joins come in bursts). */
  replanDelayMs?: number;
  /** Requests whose trace is kept for /debug/requests (default 100). */
  traceLimit?: number;
}

/** Who asked for a generation: the API's response id and endpoint name it in traces and metrics. */
export interface RequestMeta {
  id?: string;
  endpoint?: string;
}

/** What inference tells observers (metrics, dashboard); emitting never changes what inference does. */
export interface InferenceEvents {
  plan: [PlanMessage];
  status: [string, DeviceState];
  /** One step through this peer's stage. */
  hop: [StageHop];
  /** A token of a request this peer drives arrived: the time since the previous one (or since the start). */
  token: [{ first: boolean; latencyMs: number }];
  /** A request this peer drove ended (done or failed). */
  request: [RequestRecord];
}

export interface DeviceState {
  engine: string;
  ready: boolean;
  planTerm: number | null;
  planVersion: number | null;
  memoryBytes?: number;
  /** The engine's peak resident memory after loading its layers, and its resident memory just before. */
  peakRssBytes?: number;
  rssBeforeLoadBytes?: number;
  backend?: string;
  mlxVersion?: string;
  error?: string;
  load?: { tokensPerSec: number; inFlight: number; rttMs?: Record<string, number> };
}

export class Inference extends EventEmitter<InferenceEvents> {
  readonly engine: EngineSupervisor;
  plan: PlanMessage | null = null;
  planError: string | null = null;
  private readonly peer: Peer;
  private readonly opts: InferenceOptions;
  private readonly log: Logger;
  private readonly states = new Map<string, DeviceState>();
  private readonly generations = new Map<string, Generation>();
  private readonly inspected = new Map<string, { path: string; name: string; info: InspectResult }>();
  private planCounter = 0;
  private replanTimer: NodeJS.Timeout | null = null;
  private applying: Promise<void> = Promise.resolve();
  private running = false;
  /** Settles when the engine has started (or failed to): plans that arrive earlier wait for it. */
  private readonly engineStarted: Promise<void>;
  private markEngineStarted!: () => void;
  /** The plan whose layers the engine holds (survives an engine restart, which re-loads them). */
  private loadedPlan: PlanMessage | null = null;
  /** The last requests this peer drove, by response id. */
  readonly traces: TraceRing;
  private readonly tracing = new Map<string, RequestTrace>();
  private readonly meter = new LoadMeter();
  private loadTimer: NodeJS.Timeout | null = null;

  constructor(opts: InferenceOptions) {
    super();
    this.opts = opts;
    this.peer = opts.peer;
    this.log = createLogger('inference', `[${opts.peer.identity.name}] `);
    this.traces = new TraceRing(opts.traceLimit ?? 100);
    this.engine = new EngineSupervisor({ dataDir: opts.dataDir, python: opts.python, logger: createLogger('engine', `[${opts.peer.identity.name}] `) });
    const usable = opts.usableMemoryBytes ?? Math.floor(os.totalmem() * defaults.memoryFraction);
    this.peer.extraCapabilities.usableMemory = usable;
    this.states.set(this.peer.id, { engine: 'stopped', ready: false, planTerm: null, planVersion: null });
    this.engineStarted = new Promise((resolve) => (this.markEngineStarted = resolve));
    // Listen before the peer links to anyone, so a plan sent the moment we join is never missed.
    const peer = this.peer;
    peer.on('message', (msg, link) => this.onMessage(msg, link));
    peer.on('leadership', () => this.scheduleReplan());
    peer.on('up', (link) => {
      link.send(this.statusMessage()).catch(() => {});
      // A peer that restarted within the re-plan delay rejoins an unchanged membership, so no new
      // plan would reach it: hand every new link the current plan at once.
      if (peer.isCoordinator && this.plan) link.send(this.plan).catch(() => {});
      this.scheduleReplan();
    });
    peer.on('down', (link) => {
      this.states.delete(link.remote.id);
      this.failGenerationsUsing(link.remote.id, `peer ${link.remote.name} (${link.remote.id}) left the cluster`);
      this.scheduleReplan();
    });
    // After a crash the supervisor re-loads the same layers by itself; ready again means ready for the plan.
    this.engine.on('state', (state: string) =>
      this.setSelf({ engine: state, ready: state === 'ready' && this.loadedPlan !== null && this.loadedPlan === this.plan }),
    );
    this.engine.on('restart', () => this.log.warn('engine restarted; layers re-loaded'));
  }

  get selfState(): DeviceState {
    return this.states.get(this.peer.id)!;
  }

  /** Starts the engine. An engine that cannot start is reported (device status `failed`), not fatal. */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      const hello = await this.engine.start();
      this.peer.extraCapabilities.backend = hello.backend;
      this.peer.extraCapabilities.mlxVersion = hello.mlx;
      this.setSelf({ backend: hello.backend, mlxVersion: hello.mlx });
    } catch (err) {
      this.log.error('engine did not start', { error: (err as Error).message });
      this.setSelf({ engine: 'failed', error: (err as Error).message });
    }
    this.markEngineStarted();
    this.scheduleReplan();
    this.loadTimer = setInterval(() => this.reportLoad(), 1000);
    this.loadTimer.unref();
  }

  async stop(): Promise<void> {
    this.markEngineStarted(); // loads waiting for the engine give up below
    if (!this.running) return;
    this.running = false;
    if (this.replanTimer) clearTimeout(this.replanTimer);
    if (this.loadTimer) clearInterval(this.loadTimer);
    for (const g of this.generations.values()) g.fail(meshError('REQUEST_FAILED', 'the peer is stopping'));
    await this.engine.stop();
  }

  stateOf(id: string): DeviceState | undefined {
    return this.states.get(id);
  }

  /** True when every stage of the current plan has its layers loaded. */
  isReady(): boolean {
    const plan = this.plan;
    if (!plan) return false;
    return plan.stages.every((s) => {
      const st = this.states.get(s.id);
      return st?.ready && st.planVersion === plan.version && st.planTerm === plan.term;
    });
  }

  /** Why the cluster cannot serve right now, for a 503 message; null when it can. */
  notReadyReason(): string | null {
    if (!this.peer.leadership.coordinator) return 'the cluster is still electing a coordinator';
    if (this.planError) return this.planError;
    if (!this.plan) return 'the coordinator has not published a layer plan yet';
    const live = new Set(this.peer.live().map((p) => p.id));
    const gone = this.plan.stages.find((s) => !live.has(s.id));
    if (gone) return `peer ${gone.id} left; the coordinator is making a new layer plan`;
    const waiting = this.plan.stages.filter((s) => !this.isStageReady(s.id)).map((s) => s.id);
    if (waiting.length) {
      const failed = waiting.map((id) => [id, this.states.get(id)?.error]).filter(([, e]) => e);
      if (failed.length) return `peer ${failed[0][0]} could not load its layers: ${failed[0][1]}`;
      return `waiting for ${waiting.join(', ')} to load their layers`;
    }
    return null;
  }

  async tokenize(input: { text: string } | { messages: Array<{ role: string; content: string }> }): Promise<number[]> {
    const res = 'text' in input ? await this.engine.tokenize({ text: input.text, addBos: true }) : await this.engine.tokenize(input);
    return res.tokens;
  }

  /** Requests this peer is driving right now. */
  get inFlight(): number {
    return this.generations.size;
  }

  /** Runs one request through the pipeline; `onText` receives text as it becomes final. */
  async generate(req: GenerateRequest, onText: (t: string) => void, meta: RequestMeta = {}): Promise<GenerationResult> {
    const reason = this.notReadyReason();
    if (reason) throw meshError('PLAN_FAILED', reason);
    const plan = this.plan!;
    const active: ActivePlan = {
      version: plan.version,
      stages: plan.stages,
      eosTokenIds: plan.meta.eosTokenIds,
      contextLength: plan.meta.contextLength,
    };
    const gen = new Generation(
      {
        selfId: this.peer.id,
        prefillChunk: this.opts.prefillChunk ?? prefillChunkSize(req.tokens.length, plan.stages.length),
        stepTimeoutMs: this.opts.stepTimeoutMs ?? 120_000,
        deliver: (to, msg) => this.deliver(to, msg),
        decode: async (tokens) => (await this.engine.decode(tokens)).text,
      },
      active,
    );
    this.generations.set(gen.id, gen);
    const trace = new RequestTrace({ id: meta.id ?? gen.id, endpoint: meta.endpoint ?? 'internal', generation: gen.id, origin: this.peer.id, promptTokens: req.tokens.length });
    this.traces.add(trace.record);
    this.tracing.set(gen.id, trace);
    try {
      const result = await gen.run(req, onText);
      this.emit('request', trace.finish(result));
      return result;
    } catch (err) {
      this.emit('request', trace.finish({ error: (err as Error).message, aborted: req.signal?.aborted ?? false }));
      throw err;
    } finally {
      this.tracing.delete(gen.id);
      this.generations.delete(gen.id);
      for (const s of plan.stages) this.deliver(s.id, { type: 'release', request: gen.id }).catch(() => {});
    }
  }

  // --- coordinator: planning ---------------------------------------------------------------------

  private scheduleReplan(): void {
    if (!this.running || !this.peer.isCoordinator) return;
    if (this.replanTimer) clearTimeout(this.replanTimer);
    this.replanTimer = setTimeout(() => {
      this.replanTimer = null;
      this.replan().catch((err) => {
        // The code leads, so a client's 503 says which failure it is (UNSUPPORTED_MODEL, MODEL_TOO_LARGE).
        this.planError = isMeshError(err) ? `${err.code}: ${err.message}` : (err as Error).message;
        this.log.error('could not make a plan', { error: this.planError });
      });
    }, this.opts.replanDelayMs ?? 300);
  }

  private async modelInfo(spec: string): Promise<{ path: string; name: string; info: InspectResult }> {
    const known = this.inspected.get(spec);
    if (known) return known;
    const { path, name } = await this.resolve(spec);
    const info = await this.engine.inspect(path);
    const entry = { path, name, info };
    this.inspected.set(spec, entry);
    return entry;
  }

  /** The plan names a model as the user did ("default", a path, a repo id); each peer finds its own copy. */
  private resolve(spec: string, layers?: [number, number]) {
    return resolveModel(spec === 'default' ? undefined : spec, {
      dataDir: this.opts.dataDir,
      engine: this.engine,
      python: resolvePython({ python: this.opts.python, dataDir: this.opts.dataDir }).path,
      layers,
    });
  }

  private async replan(): Promise<void> {
    const peer = this.peer;
    if (!peer.isCoordinator || this.selfState.engine === 'failed') return;
    const spec = this.opts.model ?? 'default';
    const { info, name } = await this.modelInfo(spec);
    const live = peer.live();
    if (planIsCurrent(this.plan, live, peer.leadership.term, spec)) return;
    const msg = makePlan({
      selfId: peer.id,
      term: peer.leadership.term,
      version: Math.max(this.planCounter, this.plan?.version ?? 0) + 1,
      spec,
      name,
      model: info,
      live,
    });
    this.planError = null;
    this.planCounter = msg.version;
    this.log.info('publishing plan', {
      version: msg.version,
      stages: msg.stages.map((s) => `${s.id}:${s.layers[0]}-${s.layers[1]}`).join(' '),
    });
    peer.membership.broadcast(msg);
    this.acceptPlan(msg);
  }

  // --- every peer: following the plan ------------------------------------------------------------

  private acceptPlan(plan: PlanMessage): void {
    const cur = this.plan;
    if (cur && (plan.term < cur.term || (plan.term === cur.term && plan.version <= cur.version))) return;
    if (plan.term < this.peer.leadership.term) return; // from a coordinator that has been replaced
    this.plan = plan;
    this.planCounter = Math.max(this.planCounter, plan.version);
    this.emit('plan', plan);
    for (const g of this.generations.values()) g.fail(meshError('REQUEST_FAILED', 'the cluster changed its layer plan mid-request'));
    this.applying = this.applying.then(() => this.load(plan));
  }

  private async load(plan: PlanMessage): Promise<void> {
    if (this.plan !== plan) return; // superseded while queued
    const stage = plan.stages.find((s) => s.id === this.peer.id);
    this.loadedPlan = null;
    this.setSelf({ ready: false, planTerm: plan.term, planVersion: plan.version, error: undefined });
    try {
      await this.engineStarted;
      if (this.plan !== plan || !this.running) return;
      const { path } = await this.resolve(plan.model, stage?.layers);
      // A peer outside the plan still loads the tokenizer, so it can serve its own API clients.
      const [start, end] = stage?.layers ?? [0, 0];
      const loaded = await this.engine.load({ model: path, start, end });
      if (this.plan !== plan) return;
      this.loadedPlan = plan;
      this.setSelf({ ready: true, memoryBytes: loaded.memory_bytes, peakRssBytes: loaded.peak_rss_bytes, rssBeforeLoadBytes: loaded.rss_before_bytes });
      const mb = (n?: number) => (n === undefined ? undefined : Math.round(n / 2 ** 20));
      this.log.info('layers loaded', {
        layers: `${start}-${end}`,
        memory_mb: mb(loaded.memory_bytes),
        peak_rss_mb: mb(loaded.peak_rss_bytes),
        rss_before_mb: mb(loaded.rss_before_bytes),
      });
    } catch (err) {
      if (this.plan !== plan) return;
      this.log.error('could not load layers', { error: (err as Error).message });
      this.setSelf({ ready: false, error: (err as Error).message });
    }
  }

  private isStageReady(id: string): boolean {
    const st = this.states.get(id);
    return !!(st?.ready && st.planVersion === this.plan?.version && st.planTerm === this.plan?.term);
  }

  private statusMessage(): StatusMessage {
    const s = this.selfState;
    return {
      type: 'status',
      engine: s.engine,
      planTerm: s.planTerm,
      planVersion: s.planVersion,
      ready: s.ready,
      memoryBytes: s.memoryBytes,
      peakRssBytes: s.peakRssBytes,
      rssBeforeLoadBytes: s.rssBeforeLoadBytes,
      backend: s.backend,
      mlxVersion: s.mlxVersion,
      error: s.error,
      load: s.load,
    };
  }

  private setSelf(patch: Partial<DeviceState>): void {
    const next = { ...this.selfState, ...patch };
    if (next.engine !== 'ready' && next.engine !== 'loading') next.ready = next.ready && next.engine === 'ready';
    this.states.set(this.peer.id, next);
    this.emit('status', this.peer.id, next);
    if (this.running) this.peer.membership.broadcast(this.statusMessage());
  }

  // --- every peer: messages ------------------------------------------------------------------------

  private onMessage(msg: Message, link: Link | null): void {
    switch (msg.type) {
      case 'plan':
        if (link && link.remote.id !== this.peer.leadership.coordinator) {
          this.log.debug('ignoring a plan from a non-coordinator', { from: link.remote.id });
          return;
        }
        return this.acceptPlan(msg);
      case 'status': {
        if (!link) return;
        const { type: _t, ...state } = msg;
        this.states.set(link.remote.id, state);
        this.emit('status', link.remote.id, state);
        return;
      }
      case 'forward':
        return void runStage(msg, {
          selfId: this.peer.id,
          selfName: this.peer.identity.name,
          plan: this.plan,
          engine: this.engine,
          deliver: (to, m) => this.deliver(to, m),
          onHop: (hop) => {
            this.meter.add(hop.tokens, performance.now());
            this.emit('hop', hop);
          },
        });
      case 'release':
        this.engine.release(msg.request).catch(() => {});
        return;
      case 'token': {
        const timing = this.tracing.get(msg.request)?.onToken(msg.step, msg.trace, msg.sentAt);
        if (timing) this.emit('token', timing);
        this.generations.get(msg.request)?.onToken(msg.step, msg.token);
        return;
      }
      case 'request-error':
        this.generations.get(msg.request)?.fail(new MeshError(isErrorCode(msg.code) ? msg.code : 'REQUEST_FAILED', msg.message));
        return;
      default:
    }
  }

  /** Tokens/s through our layers, requests we drive and link RTTs, told to every peer when they change. */
  private reportLoad(): void {
    const rttMs: Record<string, number> = {};
    for (const l of this.peer.membership.all()) if (l.rttMs !== null) rttMs[l.remote.id] = Math.round(l.rttMs * 10) / 10;
    const load = { tokensPerSec: this.meter.rate(performance.now()), inFlight: this.inFlight, rttMs };
    if (JSON.stringify(load) === JSON.stringify(this.selfState.load)) return;
    this.setSelf({ load });
  }

  /** Sends to a peer, or hands the message to ourselves without touching the network. */
  private deliver(to: string, message: Message): Promise<void> {
    // Stamped as late as possible, so the receiver's transfer time is the time on the way.
    const msg = message.type === 'forward' || message.type === 'token' ? { ...message, sentAt: wallMs() } : message;
    if (to === this.peer.id) {
      queueMicrotask(() => this.onMessage(msg, null));
      return Promise.resolve();
    }
    return this.peer.send(to, msg).catch((err) => {
      throw meshError('REQUEST_FAILED', `could not reach peer ${to}: ${(err as Error).message}`);
    });
  }

  private failGenerationsUsing(id: string, why: string): void {
    if (!this.plan?.stages.some((s) => s.id === id)) return;
    for (const g of this.generations.values()) g.fail(meshError('REQUEST_FAILED', why));
  }
}

function isErrorCode(code: string): code is MeshError['code'] {
  return /^[A-Z_]+$/.test(code);
}
