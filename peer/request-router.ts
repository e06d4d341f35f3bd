// Where request traffic goes: `forward` runs our stage, `token` and `request-error` reach the
// generation this peer drives, `release` frees a finished request's caches in our engine. Messages
// for ourselves never touch the network. Also the registry of generations this peer drives, with
// their traces (hops, timings) for /debug/requests and the metrics.
import { EventEmitter } from 'node:events';
import { meshError, MeshError } from '../core/errors.ts';
import type { Message, MessageOf } from '../transport/messages.ts';
import { type ActivePlan, activePlanOf, type GenerateRequest, Generation, type GenerationResult } from './generation.ts';
import type { Peer } from './peer.ts';
import { prefillChunkSize } from './prefill-chunk.ts';
import { createDetokenizer } from './detokenizer.ts';
import { EngineTextStream, LocalTextStream } from './text-stream.ts';
import { type RequestRecord, RequestTrace, TraceRing, wallMs } from './request-trace.ts';
import { type BatchOptions, Stage, type StageHop } from './stage.ts';
import type { EngineSupervisor } from './supervisor.ts';

type PlanMessage = MessageOf<'plan'>;

export interface RequestRouterOptions {
  peer: Peer;
  engine: EngineSupervisor;
  /** The plan a `forward` of this plan version runs on (one of another pipeline is refused). */
  planFor(version: number): PlanMessage | null;
  /** Fixed prefill step size; by default it follows the prompt length and the number of stages. */
  prefillChunk?: number;
  stepTimeoutMs: number;
  /** Requests whose trace is kept for /debug/requests. */
  traceLimit: number;
  /** After an attempt broke: the plan to replay on, or a rejection with the error for the client. */
  recover(plan: ActivePlan, err: Error): Promise<ActivePlan>;
  /** Batched decode at this peer's stage (defaults in core/defaults.ts). */
  batch?: Partial<BatchOptions>;
}

/** Who asked for a generation: the API's response id and endpoint name it in traces and metrics. */
export interface RequestMeta {
  id?: string;
  endpoint?: string;
}

/** What the router tells observers (metrics, dashboard); emitting never changes what it does. */
export interface RouterEvents {
  /** One step through this peer's stage. */
  hop: [StageHop];
  /** A token of a request this peer drives arrived: the time since the previous one (or since the start). */
  token: [{ first: boolean; latencyMs: number }];
  /** A request this peer drove ended (done or failed). */
  request: [RequestRecord];
}

export class RequestRouter extends EventEmitter<RouterEvents> {
  /** The last requests this peer drove, by response id. */
  readonly traces: TraceRing;
  private readonly opts: RequestRouterOptions;
  private readonly generations = new Map<string, Generation>();
  /** Wire request id (one per attempt, the current one only) → its generation. */
  private readonly wired = new Map<string, Generation>();
  private readonly tracing = new Map<string, RequestTrace>();
  /** This peer's pipeline stage: runs (and batches) the forwards that reach it. */
  readonly stage: Stage;

  constructor(opts: RequestRouterOptions) {
    super();
    this.opts = opts;
    this.traces = new TraceRing(opts.traceLimit);
    this.stage = new Stage(
      {
        selfId: opts.peer.id,
        selfName: opts.peer.identity.name,
        planFor: opts.planFor,
        engine: opts.engine,
        deliver: (to, m) => this.deliver(to, m),
        onHop: (hop) => this.emit('hop', hop),
      },
      opts.batch,
    );
  }

  /** Requests this peer is driving right now. */
  get inFlight(): number {
    return this.generations.size;
  }

  /** Handles request traffic; false for messages that are not its business. */
  handle(msg: Message): boolean {
    switch (msg.type) {
      case 'forward':
        this.stage.forward(msg);
        return true;
      case 'release':
        this.stage.release(msg.request).catch(() => {});
        return true;
      case 'token': {
        const gen = this.wired.get(msg.request);
        if (msg.head) {
          // A split head's part: the token comes from the first stage once it finishes it.
          gen?.onHead(msg.step, msg.head, msg.trace);
          return true;
        }
        if (msg.token === undefined) {
          gen?.fail(meshError('REQUEST_FAILED', `a token message for step ${msg.step} had neither a token nor a head`));
          return true;
        }
        const timing = gen && this.tracing.get(gen.id)?.onToken(msg.step, msg.trace, msg.sentAt);
        if (timing) this.emit('token', timing);
        gen?.onToken(msg.step, msg.token);
        return true;
      }
      case 'request-error':
        this.wired.get(msg.request)?.fail(new MeshError(isErrorCode(msg.code) ? msg.code : 'REQUEST_FAILED', msg.message));
        return true;
      default:
        return false;
    }
  }

  /** Runs one request through the plan's stages; `onText` receives text as it becomes final. */
  async generate(plan: PlanMessage, req: GenerateRequest, onText: (t: string) => void, meta: RequestMeta = {}): Promise<GenerationResult> {
    const { engine } = this.opts;
    const active = activePlanOf(plan);
    const gen = new Generation(
      {
        selfId: this.opts.peer.id,
        prefillChunk: this.opts.prefillChunk ?? prefillChunkSize(req.tokens.length, plan.stages.length),
        stepTimeoutMs: this.opts.stepTimeoutMs,
        deliver: (to, msg) => this.deliver(to, msg),
        openText: async (stream) => {
          const local = createDetokenizer(await engine.detokSpec());
          if (local) return new LocalTextStream(local);
          const text = new EngineTextStream(engine, stream);
          await text.open();
          return text;
        },
        attach: (request, g) => {
          for (const a of g.attempts) if (a.request !== request) this.wired.delete(a.request);
          this.wired.set(request, g);
        },
        recover: (p, err) => this.opts.recover(p, err),
      },
      active,
    );
    this.generations.set(gen.id, gen);
    const trace = new RequestTrace({ id: meta.id ?? gen.id, endpoint: meta.endpoint ?? 'internal', generation: gen.id, origin: this.opts.peer.id, promptTokens: req.tokens.length });
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
      for (const a of gen.attempts) {
        this.wired.delete(a.request);
        for (const s of a.plan.stages) this.deliver(s.id, { type: 'release', request: a.request }).catch(() => {});
      }
    }
  }

  /** Fails every generation this peer drives. */
  failAll(why: string): void {
    for (const g of this.generations.values()) g.fail(meshError('REQUEST_FAILED', why));
  }

  /** Breaks the current attempt of every generation whose stages include `peerId` (any, when null): they replay or fail. */
  interrupt(peerId: string | null, why: string | MeshError): void {
    const err = typeof why === 'string' ? meshError('REQUEST_FAILED', why) : why;
    for (const g of this.generations.values()) {
      if (peerId === null || g.activePlan.stages.some((s) => s.id === peerId)) g.fail(err);
    }
  }

  /** Sends to a peer, or hands the message to ourselves without touching the network. */
  deliver(to: string, message: Message): Promise<void> {
    // Stamped as late as possible, so the receiver's transfer time is the time on the way.
    const msg = message.type === 'forward' || message.type === 'token' ? { ...message, sentAt: wallMs() } : message;
    if (to === this.opts.peer.id) {
      queueMicrotask(() => this.handle(msg));
      return Promise.resolve();
    }
    return this.opts.peer.send(to, msg).catch((err) => {
      throw meshError('REQUEST_FAILED', `could not reach peer ${to}: ${(err as Error).message}`);
    });
  }
}

function isErrorCode(code: string): code is MeshError['code'] {
  return /^[A-Z_]+$/.test(code);
}
