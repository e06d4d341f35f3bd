// One peer's part of every request: run our layers on what arrived, then pass the hidden states to the
// next rank, or (on the last stage) send the sampled token id back to the request's origin.
// Any failure goes back to the origin as `request-error`, so the client gets an error, not a hang.
//
// Continuous batching: one engine op at a time. While the engine is busy, arriving forwards queue; when
// it frees, the queued one-token steps (decode steps of any requests) go as one `forward_batch`, so
// B requests cost about one memory-bound forward instead of B. A step arriving at an idle engine runs at
// once (no added latency for a lone request), except that it waits up to `batchWaitMs` for the requests
// it last stepped with, so a batch does not fall apart because its tokens came back a moment apart.
// A lone step also waits, at most about one step's time, for another lone request that ran here just
// after it last time, when there are more groups than stages (below): two requests left apart (they
// came out of their prefills at different moments) join, and stay together from then on.
//
// Pipeline groups: with S stages, a batch takes at most ceil(active requests ÷ S) steps. One batch of
// all requests would pass the stages in turn, each stage idle while the others compute (and its tokens
// all come back together, so it would never split again); S groups keep every stage busy, stage k
// running one group while stage k+1 runs the group before it.
import { defaults } from '../core/defaults.ts';
import { ErrorCodes, isMeshError, meshError, type ErrorCode } from '../core/errors.ts';
import type { Message, MessageOf } from '../transport/messages.ts';
import { wallMs } from './request-trace.ts';
import type { EngineSupervisor, ForwardArgs, ForwardBatchResult, ForwardResult } from './supervisor.ts';

type Forward = MessageOf<'forward'>;
type Plan = MessageOf<'plan'>;

/** One step through this stage, for metrics: where it came from and went, time and bytes. */
export interface StageHop {
  from: string;
  to: string;
  computeMs: number;
  transferMs: number;
  bytesIn: number;
  bytesOut: number;
  /** Sequence positions computed (prompt chunk length, or 1 while decoding). */
  tokens: number;
}

export interface StageContext {
  selfId: string;
  selfName: string;
  /** The plan of that version this peer still serves, if any (read when a forward arrives). */
  planFor(version: number): Plan | null;
  engine: Pick<EngineSupervisor, 'forward' | 'forwardBatch' | 'release'>;
  deliver(to: string, msg: Message): Promise<void>;
  onHop?(hop: StageHop): void;
}

export interface BatchOptions {
  /** Most one-token steps in one batched forward. */
  maxBatch: number;
  /** Longest wait, with the engine idle, for the rest of a step's last batch. */
  batchWaitMs: number;
  /** A request that has not stepped here for this long (its origin gone without a release) stops
   *  counting towards the pipeline groups' size. */
  activeTtlMs: number;
}

interface Queued {
  msg: Forward;
  next: string | undefined;
  /** Stages in the forward's plan. */
  depth: number;
  /** The plan's end-of-sequence tokens: a split head's token that is one of them runs no layers. */
  eos: number[];
  receivedAt: number;
}

/** One token through this stage: what a decode step (and the last prompt token) looks like. */
function isStep(msg: Forward): boolean {
  if (msg.head) return true;
  return msg.tokens ? msg.tokens.length === 1 : msg.hidden?.shape[1] === 1;
}

export class Stage {
  /** Forward ops sent to the engine, batched or not, and the largest batch: for tests and metrics. */
  readonly stats = { forwards: 0, batches: 0, batchedSteps: 0, largestBatch: 0 };
  private readonly opts: BatchOptions;
  private queue: Queued[] = [];
  private busy = false;
  private scheduled = false;
  private waitTimer: NodeJS.Timeout | null = null;
  private waitStarted = 0;
  /** Each request's companions in the last batch it stepped in (one Set shared by that batch). */
  private readonly mates = new Map<string, Set<string>>();
  /** Requests stepping through this stage, with when each last ran (Date.now()). */
  private readonly active = new Map<string, number>();
  /** Requests whose last wait for a lone partner ran out: they do not wait for one again until they
   *  step in a batch (two lone requests that cannot meet, say each at another stage, stop waiting). */
  private readonly gaveUp = new Set<string>();
  /** How long a lone step took here lately (ms, a moving average): the longest a lone step waits. */
  private loneMs = 0;

  constructor(
    private readonly ctx: StageContext,
    opts: Partial<BatchOptions> = {},
  ) {
    this.opts = {
      maxBatch: opts.maxBatch ?? defaults.batchMaxRequests,
      batchWaitMs: opts.batchWaitMs ?? defaults.batchWaitMs,
      activeTtlMs: opts.activeTtlMs ?? defaults.batchActiveTtlMs,
    };
  }

  forward(msg: Forward): void {
    const plan = this.ctx.planFor(msg.planVersion);
    const index = plan?.stages.findIndex((s) => s.id === this.ctx.selfId) ?? -1;
    if (!plan || plan.version !== msg.planVersion || index < 0) {
      this.replyError(msg, 'REQUEST_FAILED', `peer ${this.ctx.selfId} is not a stage of plan ${msg.planVersion}`);
      return;
    }
    this.queue.push({ msg, next: plan.stages[index + 1]?.id, depth: plan.stages.length, eos: plan.meta.eosTokenIds, receivedAt: wallMs() });
    this.schedule();
  }

  /** The request is over: drop its queued steps and its engine state. */
  release(request: string): Promise<unknown> {
    this.queue = this.queue.filter((q) => q.msg.request !== request);
    this.mates.get(request)?.delete(request);
    this.mates.delete(request);
    this.active.delete(request);
    this.gaveUp.delete(request);
    return this.ctx.engine.release(request);
  }

  private schedule(): void {
    if (this.busy || this.scheduled) return;
    this.scheduled = true;
    // After the current burst of socket messages, so steps that arrived together go together.
    setImmediate(() => {
      this.scheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    if (this.busy || !this.queue.length) return;
    const cap = this.cap(this.queue[0].depth);
    const picked = this.pick(cap);
    if (picked.length > 1 || isStep(this.queue[picked[0]].msg)) {
      const wait = this.waitFor(picked, cap);
      if (wait > 0) {
        this.waitTimer ??= setTimeout(() => {
          this.waitTimer = null;
          this.pump();
        }, wait);
        return;
      }
    }
    if (this.waitTimer) clearTimeout(this.waitTimer);
    this.waitTimer = null;
    this.waitStarted = 0;
    const chosen = new Set(picked);
    const batch = picked.map((i) => this.queue[i]);
    this.queue = this.queue.filter((_, i) => !chosen.has(i));
    const now = Date.now();
    for (const q of batch) this.active.set(q.msg.request, now);
    this.busy = true;
    void this.run(batch).then((results) => {
      this.busy = false;
      // The engine starts on what queued meanwhile before we spend time sending these outputs on.
      this.pump();
      batch.forEach((q, i) => void this.pass(q, results[i]));
    });
  }

  /** Queue positions to run next: the head alone, or, if it is a step, steps whose request has nothing
   *  queued before it (a request's own messages stay in order), the head's last batch-mates first, up
   *  to `cap`. */
  private pick(cap: number): number[] {
    const head = this.queue[0];
    if (!isStep(head.msg)) return [0];
    const seen = new Set<string>();
    const eligible: number[] = [];
    this.queue.forEach((q, i) => {
      if (isStep(q.msg) && !seen.has(q.msg.request)) eligible.push(i);
      seen.add(q.msg.request);
    });
    const mates = this.mates.get(head.msg.request);
    const isMate = (i: number) => (mates?.has(this.queue[i].msg.request) ? 0 : 1);
    // A stable sort: mates (the head among them) first, each part in queue order.
    return eligible.sort((a, b) => isMate(a) - isMate(b)).slice(0, cap);
  }

  /** The most steps one batch takes: ceil(requests stepping through this stage ÷ stages), within maxBatch. */
  private cap(depth: number): number {
    const now = Date.now();
    for (const [id, at] of this.active) if (now - at > this.opts.activeTtlMs) this.active.delete(id);
    const requests = new Set(this.active.keys());
    for (const q of this.queue) requests.add(q.msg.request);
    return Math.max(1, Math.min(this.opts.maxBatch, Math.ceil(requests.size / depth)));
  }

  /** How much longer to wait for the picked steps' last batch-mates (or a lone step's partner), or 0 to go now. */
  private waitFor(picked: number[], cap: number): number {
    if (picked.length >= cap || this.opts.batchWaitMs <= 0) return 0;
    const here = new Set(picked.map((i) => this.queue[i].msg.request));
    let missing = false;
    for (const id of here) for (const mate of this.mates.get(id) ?? []) if (!here.has(mate)) missing = true;
    const lone = picked.length === 1 ? this.lonePartnerWait(this.queue[picked[0]]) : 0;
    if (!missing && !lone) return 0;
    const now = Date.now();
    this.waitStarted ||= now;
    const left = this.waitStarted + Math.max(missing ? this.opts.batchWaitMs : 0, lone) - now;
    if (left <= 0 && lone) this.gaveUp.add(this.queue[picked[0]].msg.request);
    return Math.max(0, left);
  }

  /**
   * How long a lone step should wait for a partner, or 0. Only while more groups step here than there
   * are stages (then two of them are better as one), and only for a lone request that ran here after
   * this one last did: it is the one coming next, about that much later again. At most 1.5 lone steps.
   */
  private lonePartnerWait(head: Queued): number {
    const me = head.msg.request;
    const myLast = this.active.get(me);
    if (!this.loneMs || myLast === undefined || this.gaveUp.has(me) || (this.mates.get(me)?.size ?? 1) > 1) return 0;
    const queued = new Set(this.queue.map((q) => q.msg.request));
    const groups = new Set<unknown>();
    for (const id of new Set([...this.active.keys(), ...queued])) groups.add(this.mates.get(id) ?? id);
    if (groups.size <= head.depth) return 0;
    let gap = Infinity;
    for (const [id, at] of this.active) {
      if (id !== me && !queued.has(id) && at > myLast && (this.mates.get(id)?.size ?? 1) <= 1) gap = Math.min(gap, at - myLast);
    }
    return gap === Infinity ? 0 : Math.min(gap + this.opts.batchWaitMs, 1.5 * this.loneMs);
  }

  /** Runs the batch on the engine: one result (or error) per item, never a rejection. */
  private async run(batch: Queued[]): Promise<Array<ForwardResult | Error>> {
    const args = batch.map(({ msg, eos }): ForwardArgs => ({
      request: msg.request,
      offset: msg.offset,
      tokens: msg.tokens,
      hidden: msg.hidden,
      sample: msg.sample,
      sampling: { temperature: msg.sampling.temperature, top_p: msg.sampling.topP, seed: msg.sampling.seed },
      ...(msg.head && { head: msg.head, finish: msg.finish ?? false, eos }),
    }));
    let results: Array<ForwardResult | Error>;
    const started = wallMs();
    try {
      if (batch.length === 1) {
        this.stats.forwards++;
        results = [await this.ctx.engine.forward(args[0]).catch((err: Error) => err)];
      } else {
        this.stats.batches++;
        this.stats.batchedSteps += batch.length;
        this.stats.largestBatch = Math.max(this.stats.largestBatch, batch.length);
        const reply = await this.ctx.engine.forwardBatch(args);
        results = reply.results.map((r: ForwardBatchResult) => (r.error ? itemError(r.error) : r));
      }
    } catch (err) {
      results = batch.map(() => err as Error);
    }
    if (batch.length === 1 && isStep(batch[0].msg)) {
      const ms = wallMs() - started;
      this.loneMs = this.loneMs ? 0.8 * this.loneMs + 0.2 * ms : ms;
    }
    if (batch.length > 1) for (const q of batch) this.gaveUp.delete(q.msg.request);
    if (batch.length > 1 || isStep(batch[0].msg)) {
      const together = new Set(batch.map((q) => q.msg.request));
      for (const id of together) {
        this.mates.get(id)?.delete(id); // its old batch-mates stop waiting for it
        this.mates.set(id, together);
      }
    }
    return results;
  }

  /** Sends one forward's output on: hidden states to the next stage, or the token to the origin. */
  private async pass({ msg, next, receivedAt }: Queued, out: ForwardResult | Error): Promise<void> {
    try {
      if (out instanceof Error) throw out;
      // computeMs: from arrival to output here, so it includes the wait for the engine and the batch.
      const bytesIn = msg.hidden?.data.byteLength ?? 0;
      const hop = { peer: this.ctx.selfId, computeMs: wallMs() - receivedAt, transferMs: msg.sentAt === undefined ? 0 : Math.max(0, receivedAt - msg.sentAt), bytes: bytesIn };
      const trace = [...(msg.trace ?? []), hop];
      const from = msg.trace?.at(-1)?.peer ?? msg.origin;
      const tokens = msg.tokens?.length ?? msg.hidden?.shape[1] ?? 0;
      const observe = (to: string, bytesOut: number) =>
        this.ctx.onHop?.({ from, to, computeMs: hop.computeMs, transferMs: hop.transferMs, bytesIn, bytesOut, tokens });
      if (msg.head) {
        // The first stage finished the previous step's token (a split head): the step goes on with it
        // (unless it ended the request), and the token goes to the origin, a step behind.
        if (out.token === undefined) throw meshError('ENGINE_ERROR', 'the engine returned no token for the head');
        if (next && out.hidden) {
          observe(next, out.hidden.data.byteLength);
          const { head: _, finish: __, ...step } = msg;
          await this.ctx.deliver(next, { ...step, tokens: undefined, hidden: out.hidden, trace: [hop] });
        } else {
          observe(msg.origin, 0);
        }
        await this.ctx.deliver(msg.origin, { type: 'token', request: msg.request, step: msg.step - 1, token: out.token, trace });
      } else if (next) {
        if (!out.hidden) throw meshError('ENGINE_ERROR', 'the engine returned no hidden states');
        observe(next, out.hidden.data.byteLength);
        await this.ctx.deliver(next, { ...msg, tokens: undefined, hidden: out.hidden, trace });
      } else if (msg.sample && out.head) {
        observe(msg.origin, 0);
        await this.ctx.deliver(msg.origin, { type: 'token', request: msg.request, step: msg.step, head: out.head, trace });
      } else if (msg.sample) {
        if (out.token === undefined) throw meshError('ENGINE_ERROR', 'the engine returned no token');
        observe(msg.origin, 0);
        await this.ctx.deliver(msg.origin, { type: 'token', request: msg.request, step: msg.step, token: out.token, trace });
      } else {
        observe(msg.origin, 0);
      }
    } catch (err) {
      const code = isMeshError(err) ? err.code : 'ENGINE_ERROR';
      this.replyError(msg, code, `${this.ctx.selfName}: ${(err as Error).message}`);
    }
  }

  private replyError(msg: Forward, code: string, message: string): void {
    this.ctx.deliver(msg.origin, { type: 'request-error', request: msg.request, code, message }).catch(() => {});
  }
}

/** A failed item of a batch, with the engine's code when it is also a mesh code (as engine-client does). */
function itemError(error: { code: string; message: string }): Error {
  const code = (error.code in ErrorCodes ? error.code : 'ENGINE_ERROR') as ErrorCode;
  return meshError(code, `engine forward_batch: ${error.message}`, { engineCode: error.code });
}
