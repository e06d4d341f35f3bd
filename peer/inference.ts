// Inference on one peer, wired from its parts: the engine supervisor, the record of every peer's
// engine state (device-states.ts), the coordinator's planning loop (coordinator-planner.ts), the
// plan follower that loads this peer's layers (plan-follower.ts) and the router for request
// traffic and the generations this peer drives for its own API clients (request-router.ts).
//
// Every peer runs the same code. The coordinator additionally turns the live membership into a plan
// and publishes it; each peer loads its layer range and reports `status`; the plan is live when every
// stage reports ready. Any peer can drive a request: the last stage sends tokens to the request's origin.
import { EventEmitter } from 'node:events';
import os from 'node:os';
import { defaults } from '../core/defaults.ts';
import { isMeshError, meshError, MeshError } from '../core/errors.ts';
import { createLogger, type Logger } from '../core/log.ts';
import type { Link } from '../transport/link.ts';
import type { Message, MessageOf } from '../transport/messages.ts';
import { CoordinatorPlanner } from './coordinator-planner.ts';
import { type DeviceState, DeviceStates } from './device-states.ts';
import { type ActivePlan, activePlanOf, type GenerateRequest, type GenerationResult } from './generation.ts';
import { resolveModel } from './model-source.ts';
import type { Peer } from './peer.ts';
import { LoadMeter } from './load-meter.ts';
import type { BatchOptions, Stage } from './stage.ts';
import { PlanFollower } from './plan-follower.ts';
import { resolvePython } from './python-env.ts';
import { RequestRouter, type RequestMeta, type RouterEvents } from './request-router.ts';
import type { TraceRing } from './request-trace.ts';
import { EngineSupervisor } from './supervisor.ts';
import { WeightsFetcher } from './weights-fetch.ts';
import { WeightsSource } from './weights-source.ts';

export type { DeviceState } from './device-states.ts';
export type { RequestMeta } from './request-router.ts';

type PlanMessage = MessageOf<'plan'>;

/** Engine states in which a device holds none of its requests' caches (they replay once it is ready). */
const ENGINE_DOWN = new Set(['restarting', 'starting', 'loading', 'failed']);

export interface InferenceOptions {
  peer: Peer;
  dataDir: string;
  python?: string;
  /** `--model`; only the coordinator's matters. Undefined means the bundled default model. */
  model?: string;
  /** Memory this peer offers for layers; default a share of RAM (unified memory is shared with the OS). */
  usableMemoryBytes?: number;
  /** Prompt tokens per prefill message (mlx_lm's prefill_step_size); default from the prompt length and
   *  the number of stages (peer/prefill-chunk.ts), so the stages overlap. */
  prefillChunk?: number;
  stepTimeoutMs?: number;
  /** Batched decode at this peer's stage (defaults in core/defaults.ts). */
  batch?: Partial<BatchOptions>;
  /** Quiet time after a membership change before the coordinator re-plans (joins come in bursts). */
  replanDelayMs?: number;
  /** How long a better split waits for running requests to end (then they replay on it). */
  replanDrainMs?: number;
  /** How long the origin of a request whose stage was lost waits for a plan without it. */
  replayPlanWaitMs?: number;
  /** How long the origin of a request whose stage's engine crashed waits for it to serve again. */
  replayEngineWaitMs?: number;
  /** Requests whose trace is kept for /debug/requests (default 100). */
  traceLimit?: number;
  /** How a GGUF model's quantized tensors are converted (`--gguf-weights`; default defaults.ggufWeights). */
  ggufWeights?: string;
}

/** What inference tells observers (metrics, dashboard); emitting never changes what inference does. */
export interface InferenceEvents extends RouterEvents {
  plan: [PlanMessage];
  status: [string, DeviceState];
}

export class Inference extends EventEmitter<InferenceEvents> {
  readonly engine: EngineSupervisor;
  private readonly peer: Peer;
  private readonly opts: InferenceOptions;
  private readonly log: Logger;
  private readonly states: DeviceStates;
  private readonly follower: PlanFollower;
  private readonly planner: CoordinatorPlanner;
  private readonly router: RequestRouter;
  /** Weights over the mesh: this peer's own copies it serves, and the transfers it makes. */
  private readonly source: WeightsSource;
  private readonly fetcher: WeightsFetcher;
  /** The models this peer found (or downloaded) itself, by spec: what it may serve to others. */
  private readonly localModels = new Map<string, { path: string; name: string }>();
  private readonly meter = new LoadMeter();
  private loadTimer: NodeJS.Timeout | null = null;
  private rttReportedAt = -Infinity;
  private running = false;
  /** Names of peers seen, for messages about peers that are gone. */
  private readonly names = new Map<string, string>();
  /** Peers whose engine failed for good, as last reported: a change re-plans. */
  private readonly failedEngines = new Set<string>();

  constructor(opts: InferenceOptions) {
    super();
    this.opts = opts;
    const peer = (this.peer = opts.peer);
    this.log = createLogger('inference', `[${peer.identity.name}] `);
    this.engine = new EngineSupervisor({ dataDir: opts.dataDir, python: opts.python, logger: createLogger('engine', `[${peer.identity.name}] `) });
    peer.extraCapabilities.usableMemory = opts.usableMemoryBytes ?? Math.floor(os.totalmem() * defaults.memoryFraction);

    this.states = new DeviceStates(peer.id);
    this.states.on('status', (id, state) => {
      if (id === peer.id && this.running) peer.membership.broadcast(this.states.statusMessage());
      this.onEngineLost(id, state);
      // An engine that failed for good takes its peer out of the plan (the coordinator re-plans over
      // the others); one that works again (its peer restarted) is planned back in.
      // (A failed engine tried again counts once it serves: idle, loading or ready.)
      const serving = state.engine === 'idle' || state.engine === 'loading' || state.engine === 'ready';
      if (state.engine === 'failed' && !this.failedEngines.has(id)) {
        this.failedEngines.add(id);
        this.planner.schedule();
      } else if (serving && this.failedEngines.delete(id)) this.planner.schedule();
      this.emit('status', id, state);
    });
    this.follower = new PlanFollower({
      selfId: peer.id,
      engine: this.engine,
      states: this.states,
      log: this.log,
      resolve: (plan, layers) => this.resolveForPlan(plan, layers),
      term: () => peer.leadership.term,
    });
    this.planner = new CoordinatorPlanner({
      peer,
      log: this.log,
      spec: opts.model ?? 'default',
      delayMs: opts.replanDelayMs ?? defaults.replanDelayMs,
      current: () => this.follower.plan,
      canPlan: () => this.states.self.engine !== 'failed',
      engineFailed: (id) => {
        if (!this.failedEngines.has(id)) return null;
        return this.states.get(id)?.error ?? 'its supervisor gave up';
      },
      resolve: (spec) => this.resolve(spec),
      inspect: (path) => this.engine.inspect(path),
      publish: (plan) => {
        peer.membership.broadcast(plan);
        this.acceptPlan(plan);
      },
      busy: () => this.router.inFlight > 0 || [...peer.liveIds()].some((id) => (this.states.get(id)?.load?.inFlight ?? 0) > 0),
      drainMs: opts.replanDrainMs ?? defaults.replanDrainMs,
    });
    this.router = new RequestRouter({
      peer,
      engine: this.engine,
      planFor: (version) => this.follower.planFor(version),
      recover: (plan, err) => this.recover(plan, err),
      prefillChunk: opts.prefillChunk,
      stepTimeoutMs: opts.stepTimeoutMs ?? defaults.stepTimeoutMs,
      traceLimit: opts.traceLimit ?? defaults.traceLimit,
      batch: opts.batch,
    });
    this.source = new WeightsSource({
      log: createLogger('weights', `[${peer.identity.name}] `),
      local: (spec) => this.localModels.get(spec) ?? null,
      maxChunkBytes: defaults.weightsMaxChunkBytes,
    });
    this.fetcher = new WeightsFetcher({ dataDir: opts.dataDir, log: createLogger('weights', `[${peer.identity.name}] `) });
    this.follower.on('plan', (plan) => this.emit('plan', plan));
    this.router.on('hop', (hop) => {
      this.meter.add(hop.tokens, performance.now());
      this.emit('hop', hop);
    });
    this.router.on('token', (t) => this.emit('token', t));
    this.router.on('request', (r) => this.emit('request', r));

    // Listen before the peer links to anyone, so a plan sent the moment we join is never missed.
    peer.on('message', (msg, link) => this.onMessage(msg, link));
    peer.on('leadership', () => this.planner.schedule());
    peer.on('up', (link) => {
      this.names.set(link.remote.id, link.remote.name);
      link.post(this.states.statusMessage());
      // A peer that restarted within the re-plan delay rejoins an unchanged membership, so no new
      // plan would reach it: hand every new link the current plan at once.
      if (peer.isCoordinator && this.plan) link.post(this.plan);
      this.planner.schedule();
    });
    peer.on('down', (link) => {
      this.fetcher.linkDown(link);
      this.states.forget(link.remote.id);
      this.failedEngines.delete(link.remote.id);
      this.router.interrupt(link.remote.id, `peer ${link.remote.name} (${link.remote.id}) left the cluster`);
      this.planner.schedule();
    });
  }

  /** The plan this peer follows now. */
  get plan(): PlanMessage | null {
    return this.follower.plan;
  }

  /** Why the coordinator could not make a plan; null when it could (or is not the coordinator). */
  get planError(): string | null {
    return this.planner.error;
  }

  get selfState(): DeviceState {
    return this.states.self;
  }

  /** Forwards run at this peer's stage, batched or not (tests, benchmarks). */
  get stageStats(): Stage['stats'] {
    return this.router.stage.stats;
  }

  /** The last requests this peer drove, by response id. */
  get traces(): TraceRing {
    return this.router.traces;
  }

  /** Requests this peer is driving right now. */
  get inFlight(): number {
    return this.router.inFlight;
  }

  /** Starts the engine. An engine that cannot start is reported (device status `failed`), not fatal. */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    const hello = await this.follower.startEngine();
    if (hello) {
      this.peer.extraCapabilities.backend = hello.backend;
      this.peer.extraCapabilities.mlxVersion = hello.mlx;
    }
    if (!this.running) return; // stopped while the engine was starting
    this.planner.start();
    this.loadTimer = setInterval(() => this.reportLoad(), 1000);
    this.loadTimer.unref();
  }

  async stop(): Promise<void> {
    const wasRunning = this.running;
    this.running = false;
    this.planner.stop();
    if (this.loadTimer) clearInterval(this.loadTimer);
    if (wasRunning) this.router.failAll('the peer is stopping');
    await this.follower.stop();
  }

  stateOf(id: string): DeviceState | undefined {
    return this.states.get(id);
  }

  /** True when every stage of the current plan has its layers loaded. */
  isReady(): boolean {
    const plan = this.plan;
    return !!plan && plan.stages.every((s) => this.states.isReadyFor(s.id, plan));
  }

  /** Why the cluster cannot serve right now, for a 503 message; null when it can. */
  notReadyReason(): string | null {
    const unreachable = this.peer.deferredTo;
    if (unreachable) {
      // Partial connectivity: the cluster serves through the peers linked to its coordinator, not here.
      const name = this.names.get(unreachable);
      return `this peer has no link to the coordinator ${name ? `${name} (${unreachable})` : unreachable}, which its linked peers follow: send the request to one of them`;
    }
    if (!this.peer.leadership.coordinator) return 'the cluster is still electing a coordinator';
    if (this.planError) return this.planError;
    const plan = this.plan;
    if (!plan) return 'the coordinator has not published a layer plan yet';
    const live = this.peer.liveIds();
    const gone = plan.stages.find((s) => !live.has(s.id));
    if (gone) return `peer ${gone.id} left; the coordinator is making a new layer plan`;
    const waiting = plan.stages.filter((s) => !this.states.isReadyFor(s.id, plan)).map((s) => s.id);
    if (waiting.length) {
      const failed = waiting.map((id) => [id, this.states.get(id)?.error]).filter(([, e]) => e);
      if (failed.length) return `peer ${failed[0][0]} could not load its layers: ${failed[0][1]}`;
      return `waiting for ${waiting.join(', ')} to load their layers`;
    }
    // The origin tokenizes with its own engine: a peer outside the plan serves once it has the tokenizer.
    if (!this.states.isReadyFor(this.peer.id, plan)) {
      const self = this.states.self;
      if (self.engine === 'failed') {
        return `this peer's engine failed (${self.error ?? 'its supervisor gave up'}), so it cannot tokenize: send the request to another peer, or restart this one`;
      }
      return "this peer is loading the model's tokenizer";
    }
    return null;
  }

  async tokenize(input: { text: string } | { messages: Array<{ role: string; content: string }> }): Promise<number[]> {
    // A text prompt gets the special tokens its tokenizer adds itself (a BOS for Llama-style tokenizers,
    // none for SmolLM2's), as mlx_lm's generate encodes it.
    const res = await this.engine.tokenize(input);
    return res.tokens;
  }

  /** Runs one request through the pipeline; `onText` receives text as it becomes final. */
  async generate(req: GenerateRequest, onText: (t: string) => void, meta: RequestMeta = {}): Promise<GenerationResult> {
    const reason = this.notReadyReason();
    if (reason) throw meshError('PLAN_FAILED', reason);
    return this.router.generate(this.plan!, req, onText, meta);
  }

  /** Tokens/s through our layers, requests we drive and link RTTs, told to every peer when they change. */
  private reportLoad(): void {
    // RTTs jitter on every beat: sent fresh every 5 s, so an idle cluster stays nearly silent.
    const now = performance.now();
    let rttMs = this.selfState.load?.rttMs ?? {};
    if (now - this.rttReportedAt >= 5000) {
      this.rttReportedAt = now;
      rttMs = {};
      for (const l of this.peer.membership.all()) if (l.rttMs !== null) rttMs[l.remote.id] = Math.round(l.rttMs * 10) / 10;
    }
    const load = { tokensPerSec: this.meter.rate(now), inFlight: this.inFlight, rttMs };
    if (JSON.stringify(load) === JSON.stringify(this.selfState.load)) return;
    this.states.updateSelf({ load });
  }

  /** Bytes of weights this peer has sent to others. */
  get weightsSentBytes(): number {
    return this.source.bytesSent;
  }

  /** The plan names a model as the user did ("default", a path, a repo id); each peer finds its own copy. */
  private async resolve(spec: string, layers?: [number, number]) {
    const resolved = await resolveModel(spec === 'default' ? undefined : spec, {
      dataDir: this.opts.dataDir,
      engine: this.engine,
      python: resolvePython({ python: this.opts.python, dataDir: this.opts.dataDir }).path,
      layers,
      ggufWeights: this.opts.ggufWeights,
      backend: this.engine.hello?.backend,
    });
    // A Hugging Face download for a layer range holds only that range's files: never served whole.
    if (resolved.kind !== 'hf' || !layers) this.localModels.set(spec, { path: resolved.path, name: resolved.name });
    return resolved;
  }

  /** This peer's copy of the plan's model; without one (no such path here, no network), its layers
   *  come from a linked peer that has it, the coordinator first (peer/weights-fetch.ts). */
  private async resolveForPlan(plan: PlanMessage, layers?: [number, number]): Promise<{ path: string; ggufWeights?: string }> {
    let local: string;
    try {
      return await this.resolve(plan.model, layers);
    } catch (err) {
      if (!isMeshError(err, 'MODEL_NOT_FOUND')) throw err;
      local = err.message;
      this.log.info('no local copy of the model; fetching its layers from a peer', { model: plan.model, reason: local });
    }
    const coordinator = this.peer.leadership.coordinator;
    const sources = this.peer.membership
      .all()
      .filter((l) => l.isOpen && l.remoteRole === 'peer')
      .sort((a, b) => Number(b.remote.id === coordinator) - Number(a.remote.id === coordinator));
    try {
      const path = await this.fetcher.fetch({
        spec: plan.model,
        range: layers ?? [0, 0],
        nLayers: plan.meta.nLayers,
        sources,
        onProgress: (fetch) => this.states.updateSelf({ fetch }),
        stillWanted: () => this.follower.plan === plan,
      });
      return { path };
    } catch (err) {
      // The code leads, so a device's error (and a client's 503) says which failure it is.
      throw isMeshError(err) ? meshError(err.code, `${err.code}: ${err.message} (no local copy either: ${local})`) : err;
    }
  }

  private acceptPlan(plan: PlanMessage): void {
    const taken = this.follower.accept(plan);
    if (taken === 'ignored') return;
    this.planner.saw(plan);
    if (taken === 'new-stages') this.router.interrupt(null, 'the cluster changed its layer plan mid-request');
  }

  /**
   * A stage's engine (or our own, which holds the requests' detokenizers) crashed or gave up: its
   * caches are gone, so the requests through it break now and replay once it serves again (recover).
   * The status saying so reaches us before that stage's `request-error`s: both come over the same link.
   */
  private onEngineLost(id: string, state: DeviceState): void {
    if (state.engine !== 'restarting' && state.engine !== 'failed') return;
    const self = id === this.peer.id;
    if (!self && !this.plan?.stages.some((s) => s.id === id)) return;
    const err = meshError('ENGINE_FAILED', `the engine of ${this.deviceName(id)} ${state.engine === 'failed' ? 'failed' : 'crashed'} mid-request`, { stage: id });
    this.router.interrupt(self ? null : id, err);
  }

  /** "peer <name> (<id>, layers a-b)", for messages about a device. */
  private deviceName(id: string): string {
    const name = id === this.peer.id ? this.peer.identity.name : (this.names.get(id) ?? id);
    const layers = this.plan?.stages.find((s) => s.id === id)?.layers;
    return `peer ${name} (${id}${layers ? `, layers ${layers[0]}-${layers[1]}` : ''})`;
  }

  /** The devices a request on `plan` needs (its stages and this peer, whose engine detokenizes). */
  private devicesOf(plan: ActivePlan): string[] {
    const ids = plan.stages.map((s) => s.id);
    return ids.includes(this.peer.id) ? ids : [...ids, this.peer.id];
  }

  /** A device of `plan` whose engine is down or coming back (crashed, restarting, re-loading). */
  private engineDown(plan: ActivePlan): string | null {
    return this.devicesOf(plan).find((id) => ENGINE_DOWN.has(this.states.get(id)?.engine ?? '')) ?? null;
  }

  /** A device of `plan` whose engine will not serve it again by itself: failed, or could not re-load. */
  private engineGivenUp(plan: ActivePlan): { id: string; reason: string } | null {
    for (const id of this.devicesOf(plan)) {
      const st = this.states.get(id);
      if (!st) continue;
      const refused = !st.ready && st.error && (st.engine === 'idle' || st.engine === 'ready');
      if (st.engine === 'failed' || refused) return { id, reason: st.error ?? `its engine is ${st.engine}` };
    }
    return null;
  }

  /**
   * A request's attempt on `plan` broke with `err`. If a stage of it is gone or the stages were
   * re-planned, resolves with the new plan once every stage of it has its layers (the request
   * replays there); otherwise — or when no plan without the lost stage comes in time — rejects.
   * If a stage's engine crashed, resolves with the same stages once it serves again, or rejects
   * naming it when it cannot come back.
   */
  private async recover(plan: ActivePlan, err: Error): Promise<ActivePlan> {
    if (!this.running) throw err;
    const moved = () => {
      const cur = this.plan;
      return cur !== null && cur.version > plan.version && this.follower.planFor(plan.version)?.version !== plan.version;
    };
    const lost = () => {
      const live = this.peer.liveIds();
      return plan.stages.find((s) => !live.has(s.id)) ?? null;
    };
    const crashed = () => (isMeshError(err, 'ENGINE_FAILED') || this.engineDown(plan) || this.engineGivenUp(plan) ? 'engine' : null);
    // A failure reaches us by several paths (the next stage's error, our own link); the evidence may lag a little.
    const why = await this.until(() => lost() ?? (moved() ? 'replanned' : null) ?? crashed(), defaults.replayEvidenceMs);
    if (!why) throw err;
    if (why === 'engine') {
      const wait = this.opts.replayEngineWaitMs ?? defaults.replayEngineWaitMs;
      const back = await this.until(() => {
        if (lost() || moved()) return 'moved';
        const given = this.engineGivenUp(plan);
        if (given) return given;
        return this.isReady() && this.states.self.engine === 'ready' ? 'ready' : null;
      }, wait);
      if (back === 'moved') return this.recover(plan, err);
      if (back === 'ready') {
        this.log.info('replaying a request after an engine restart', { version: this.plan!.version });
        return activePlanOf(this.plan!);
      }
      const down = back?.id ?? this.engineDown(plan) ?? (err instanceof MeshError && typeof err.details?.stage === 'string' ? err.details.stage : null);
      const who = down ? this.deviceName(down) : 'a stage';
      const cause = back ? back.reason : `it did not serve again within ${wait / 1000} s (${this.notReadyReason() ?? 'its engine is down'})`;
      throw meshError('ENGINE_FAILED', `the engine of ${who} crashed mid-request and cannot come back: ${cause}`, { stage: down });
    }
    const gone = why === 'replanned' ? null : why;
    const goneName = gone && `peer ${this.names.get(gone.id) ?? gone.id} (${gone.id}, layers ${gone.layers[0]}-${gone.layers[1]})`;
    const next = await this.until(
      () => {
        const live = this.peer.liveIds();
        return moved() && this.plan!.stages.every((s) => live.has(s.id)) ? this.plan : null;
      },
      this.opts.replayPlanWaitMs ?? defaults.replayPlanWaitMs,
    );
    if (!next) {
      const reason = this.planError ?? 'no layer plan without it came in time (the others may not hold the model)';
      throw meshError('REQUEST_FAILED', `${goneName ?? 'a stage'} left mid-request: ${reason}`, { lostPeer: gone?.id });
    }
    const ready = await this.until(() => (this.plan === next && this.isReady() ? next : null), this.opts.stepTimeoutMs ?? defaults.stepTimeoutMs);
    if (!ready) throw meshError('REQUEST_FAILED', `${goneName ?? 'a stage'} left mid-request and the new plan did not become ready: ${this.notReadyReason()}`);
    this.log.info('replaying a request on the new plan', { lost: gone?.id ?? null, version: next.version });
    return activePlanOf(next);
  }

  /** Resolves with check()'s value as soon as it has one (re-checked on every plan, status and link change), or null after ms. */
  private until<T>(check: () => T | null, ms: number): Promise<T | null> {
    return new Promise((resolve) => {
      const poke = () => {
        const v = check();
        if (v) finish(v);
      };
      const finish = (v: T | null) => {
        clearTimeout(timer);
        clearInterval(tick);
        this.off('plan', poke);
        this.off('status', poke);
        this.peer.off('down', poke);
        resolve(v);
      };
      const timer = setTimeout(() => finish(check()), ms);
      // Amended plans emit nothing: a slow tick covers them.
      const tick = setInterval(poke, 100);
      this.on('plan', poke);
      this.on('status', poke);
      this.peer.on('down', poke);
      poke();
    });
  }

  private onMessage(msg: Message, link: Link): void {
    switch (msg.type) {
      case 'plan':
        if (link.remote.id !== this.peer.leadership.coordinator) {
          this.log.debug('ignoring a plan from a non-coordinator', { from: link.remote.id });
          return;
        }
        return this.acceptPlan(msg);
      case 'status':
        return this.states.receive(link.remote.id, msg);
      case 'weights-query':
      case 'weights-get':
        this.source.handle(msg, link).catch((err) => this.log.warn('weights request failed', { error: (err as Error).message }));
        return;
      case 'weights-index':
      case 'weights-data':
      case 'weights-error':
        return this.fetcher.receive(msg, link);
      default:
        this.router.handle(msg);
    }
  }
}
