// One generation, driven by the peer whose API received it: send the prompt into stage 0 in chunks,
// then feed each sampled token back in until EOS, a stop string, max_tokens or the context end.
// Tokens come back from the last stage as ids only; this peer turns them into text one by one
// (detokenizer.ts, or its engine for a tokenizer only mlx-lm's naive detokenizer handles).
//
// When the pipeline breaks under it (a stage lost, the stages re-planned, a stage's engine restarted),
// the generation asks its port for the plan to go on with and replays everything so far — prompt and
// generated tokens — as a prefill on those stages, which rebuilds their caches; the client's stream just
// goes on. Each such attempt has its own request id on the wire, so nothing of the broken one can mix in.
import { randomBytes } from 'node:crypto';
import { defaults } from '../core/defaults.ts';
import { meshError, MeshError } from '../core/errors.ts';
import type { Head, Hop, Message, MessageOf } from '../transport/messages.ts';
import { CompletionText } from './completion-text.ts';

/** What reaches a generation for one step: the token, or a split head's part of it (and its trace). */
interface Arrival {
  token?: number;
  head?: Head;
  trace?: Hop[];
}

export interface Sampling {
  temperature: number;
  topP: number;
  seed: number | null;
}

export interface GenerateRequest {
  tokens: number[];
  maxTokens: number;
  sampling: Sampling;
  stop: string[];
  signal?: AbortSignal;
}

export type FinishReason = 'stop' | 'length';

export interface GenerationResult {
  finishReason: FinishReason;
  promptTokens: number;
  completionTokens: number;
  text: string;
}

export interface ActivePlan {
  version: number;
  stages: Array<{ id: string; layers: [number, number] }>;
  eosTokenIds: number[];
  contextLength: number;
}

/** What a generation needs of a plan. */
export function activePlanOf(plan: MessageOf<'plan'>): ActivePlan {
  return { version: plan.version, stages: plan.stages, eosTokenIds: plan.meta.eosTokenIds, contextLength: plan.meta.contextLength };
}

/** The origin's streaming detokenizer for one request: each token costs the same, however long the text. */
export interface TextStream {
  /** Adds tokens; resolves with the text that became final (a partial character or word waits). */
  add(tokens: number[]): Promise<string>;
  /** Flushes what was held back and frees the stream. */
  close(): Promise<string>;
  /** Frees the stream without its text (the request failed). */
  drop(): Promise<void>;
}

/** What a generation needs from the rest of the peer. */
export interface PipelinePort {
  selfId: string;
  prefillChunk: number;
  stepTimeoutMs: number;
  deliver(to: string, msg: Message): Promise<void>;
  openText(stream: string): Promise<TextStream>;
  /** Routes `token` and `request-error` of this wire request id here (one per attempt). */
  attach(request: string, gen: Generation): void;
  /** After `err` broke an attempt on `plan`: the plan to replay on, or a rejection with the error to report. */
  recover(plan: ActivePlan, err: Error): Promise<ActivePlan>;
}

/** One run of the pipeline for this generation: its wire request id and the stages it used. */
export interface Attempt {
  request: string;
  plan: ActivePlan;
}

export class Generation {
  readonly id = `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  /** Every attempt so far, the current one last (their caches are released when the request ends). */
  readonly attempts: Attempt[] = [];
  private readonly tokens = new Map<number, number>();
  /** Split-head parts of steps whose token the first stage has yet to finish, with their traces. */
  private readonly heads = new Map<number, Arrival>();
  private waiter: { step: number; heads: boolean; resolve: (a: Arrival) => void; reject: (e: Error) => void } | null = null;
  private failure: Error | null = null;
  private aborted = false;

  constructor(
    private readonly port: PipelinePort,
    private plan: ActivePlan,
  ) {}

  /** A token id from the last stage (or, with a split head, from the first). */
  onToken(step: number, token: number): void {
    if (this.waiter?.step === step) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve({ token });
    } else {
      this.tokens.set(step, token);
    }
  }

  /** The last stage's part of a step's split head, for the first stage to finish. */
  onHead(step: number, head: Head, trace?: Hop[]): void {
    if (this.waiter?.step === step && this.waiter.heads) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve({ head, trace });
    } else {
      this.heads.set(step, { head, trace });
    }
  }

  /** The current attempt broke somewhere in the pipeline (engine error, peer gone, plan changed). */
  fail(err: Error): void {
    this.failure ??= err;
    const w = this.waiter;
    this.waiter = null;
    w?.reject(err);
  }

  /** Runs the request; `onText` gets each new piece of text as soon as it is final. */
  async run(req: GenerateRequest, onText: (text: string) => void): Promise<GenerationResult> {
    const onAbort = () => {
      this.aborted = true;
      this.fail(meshError('REQUEST_FAILED', 'the client went away'));
    };
    req.signal?.addEventListener('abort', onAbort);
    const out = new CompletionText(req.stop, onText);
    const generated: number[] = [];
    const detok = await this.port.openText(this.id);
    let open = true;
    try {
      let finishReason: FinishReason | null = null;
      let rest = '';
      for (;;) {
        try {
          finishReason ??= await this.attempt(req, generated, out, detok);
          // Inside the loop: the origin's engine may restart before the last text is out.
          rest = await detok.close();
          open = false;
          break;
        } catch (err) {
          if (this.aborted || this.attempts.length > defaults.replayMaxAttempts) throw err;
          this.plan = await this.port.recover(this.plan, err as Error);
        }
      }
      if (!out.stopped) out.push(rest);
      if (out.stopped) finishReason = 'stop';
      out.flush();
      return { finishReason, promptTokens: req.tokens.length, completionTokens: generated.length, text: out.text };
    } finally {
      if (open) detok.drop().catch(() => {});
      req.signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Feeds prompt + generated into the current plan's stages, then decodes until the request ends. */
  private async attempt(req: GenerateRequest, generated: number[], out: CompletionText, detok: TextStream): Promise<FinishReason> {
    const { plan, port } = this;
    const request = this.attempts.length ? `${this.id}.${this.attempts.length}` : this.id;
    this.attempts.push({ request, plan });
    this.tokens.clear();
    this.heads.clear();
    this.failure = null;
    port.attach(request, this);
    const first = plan.stages[0].id;
    const base = { type: 'forward' as const, request, origin: port.selfId, planVersion: plan.version };
    const sampling = req.sampling;
    // Prefill like mlx_lm: all but the last token in chunks, then the last one alone, sampled.
    const sequence = [...req.tokens, ...generated];
    let offset = 0;
    for (let i = 0; i < sequence.length - 1; i += port.prefillChunk) {
      const chunk = sequence.slice(i, Math.min(i + port.prefillChunk, sequence.length - 1));
      await port.deliver(first, { ...base, step: 0, offset, tokens: chunk, sample: false, sampling });
      offset += chunk.length;
    }
    await port.deliver(first, { ...base, step: 0, offset, tokens: sequence.slice(-1), sample: true, sampling });
    offset += 1;

    for (let step = 0; ; step++) {
      const arrived = await this.next(step, true);
      let token: number;
      let more: boolean;
      if (arrived.head) {
        // A split head: the first stage finishes this step's token from the last stage's part, and
        // unless the token ends the request, embeds it and starts the next step there and then.
        more = generated.length + 1 < req.maxTokens && offset < plan.contextLength;
        await port.deliver(first, { ...base, step: step + 1, offset, head: arrived.head, finish: !more, sample: true, sampling, trace: arrived.trace });
        token = (await this.next(step, false)).token!;
        if (plan.eosTokenIds.includes(token)) return 'stop';
        generated.push(token);
        if (more) offset += 1;
      } else {
        token = arrived.token!;
        if (plan.eosTokenIds.includes(token)) return 'stop';
        generated.push(token);
        more = generated.length < req.maxTokens && offset < plan.contextLength;
        // Send the next step before detokenizing, so the pipeline works while we do. A stage hands steps
        // to its engine a turn later (to batch those arriving together); when this peer is stage 0 and its
        // engine detokenizes (a naive tokenizer), wait the turn, so the step does not queue behind that.
        if (more) {
          await port.deliver(first, { ...base, step: step + 1, offset, tokens: [token], sample: true, sampling });
          offset += 1;
          await new Promise(setImmediate);
        }
      }
      if (out.push(await detok.add([token]))) return 'stop';
      if (!more) return 'length';
    }
  }

  /** What arrives for `step`: its token, or (when `heads`) a split head's part of it, whichever comes. */
  private next(step: number, heads: boolean): Promise<Arrival> {
    if (this.failure) return Promise.reject(this.failure);
    const ready = this.tokens.get(step);
    if (ready !== undefined) {
      this.tokens.delete(step);
      return Promise.resolve({ token: ready });
    }
    const head = heads ? this.heads.get(step) : undefined;
    if (head) {
      this.heads.delete(step);
      return Promise.resolve(head);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => this.fail(meshError('REQUEST_FAILED', `no token from the pipeline within ${this.port.stepTimeoutMs / 1000} s`)),
        this.port.stepTimeoutMs,
      );
      this.waiter = {
        step,
        heads,
        resolve: (t) => {
          clearTimeout(timer);
          resolve(t);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
  }

  /** The plan the current attempt runs on. */
  get activePlan(): ActivePlan {
    return this.plan;
  }
}

export { MeshError };
