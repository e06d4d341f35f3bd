// One generation, driven by the peer whose API received it: send the prompt into stage 0 in chunks,
// then feed each sampled token back in until EOS, a stop string, max_tokens or the context end.
// Tokens come back from the last stage as ids only; this peer's engine turns them into text one by one.
import { randomBytes } from 'node:crypto';
import { meshError, MeshError } from '../core/errors.ts';
import type { Message } from '../transport/messages.ts';
import { CompletionText } from './completion-text.ts';

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

/** The origin engine's streaming detokenizer for one request: each token costs the same, however long the text. */
export interface TextStream {
  /** Adds tokens; resolves with the text that became final (a partial character or word waits). */
  add(tokens: number[]): Promise<string>;
  /** Flushes what was held back and frees the stream. */
  close(): Promise<string>;
}

/** What a generation needs from the rest of the peer. */
export interface PipelinePort {
  selfId: string;
  prefillChunk: number;
  stepTimeoutMs: number;
  deliver(to: string, msg: Message): Promise<void>;
  openText(stream: string): Promise<TextStream>;
}

export class Generation {
  readonly id = `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  private readonly tokens = new Map<number, number>();
  private waiter: { step: number; resolve: (t: number) => void; reject: (e: Error) => void } | null = null;
  private failure: Error | null = null;

  constructor(
    private readonly port: PipelinePort,
    private readonly plan: ActivePlan,
  ) {}

  /** A token id from the last stage. */
  onToken(step: number, token: number): void {
    if (this.waiter?.step === step) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve(token);
    } else {
      this.tokens.set(step, token);
    }
  }

  /** The request failed somewhere in the pipeline (engine error, peer gone, plan changed). */
  fail(err: Error): void {
    this.failure ??= err;
    const w = this.waiter;
    this.waiter = null;
    w?.reject(err);
  }

  /** Runs the request; `onText` gets each new piece of text as soon as it is final. */
  async run(req: GenerateRequest, onText: (text: string) => void): Promise<GenerationResult> {
    const { plan, port } = this;
    const first = plan.stages[0].id;
    const base = { type: 'forward' as const, request: this.id, origin: port.selfId, planVersion: plan.version };
    const sampling = req.sampling;
    const onAbort = () => this.fail(meshError('REQUEST_FAILED', 'the client went away'));
    req.signal?.addEventListener('abort', onAbort);
    try {
      // Prefill like mlx_lm: all but the last prompt token in chunks, then the last one alone, sampled.
      const prompt = req.tokens;
      let offset = 0;
      for (let i = 0; i < prompt.length - 1; i += port.prefillChunk) {
        const chunk = prompt.slice(i, Math.min(i + port.prefillChunk, prompt.length - 1));
        await port.deliver(first, { ...base, step: 0, offset, tokens: chunk, sample: false, sampling });
        offset += chunk.length;
      }
      await port.deliver(first, { ...base, step: 0, offset, tokens: prompt.slice(-1), sample: true, sampling });
      offset += 1;

      const generated: number[] = [];
      let finishReason: FinishReason = 'length';
      const out = new CompletionText(req.stop, onText);
      const detok = await port.openText(this.id);
      let open = true;
      try {
        for (let step = 0; ; step++) {
          const token = await this.next(step);
          if (plan.eosTokenIds.includes(token)) {
            finishReason = 'stop';
            break;
          }
          generated.push(token);
          const more = generated.length < req.maxTokens && offset < plan.contextLength;
          // Send the next step before detokenizing, so the pipeline works while we do.
          if (more) {
            await port.deliver(first, { ...base, step: step + 1, offset, tokens: [token], sample: true, sampling });
            offset += 1;
          }
          if (out.push(await detok.add([token]))) break;
          if (!more) break;
        }
        open = false;
        const rest = await detok.close();
        if (!out.stopped) out.push(rest);
      } finally {
        if (open) detok.close().catch(() => {});
      }
      if (out.stopped) finishReason = 'stop';
      out.flush();
      return { finishReason, promptTokens: prompt.length, completionTokens: generated.length, text: out.text };
    } finally {
      req.signal?.removeEventListener('abort', onAbort);
    }
  }

  private next(step: number): Promise<number> {
    if (this.failure) return Promise.reject(this.failure);
    const ready = this.tokens.get(step);
    if (ready !== undefined) {
      this.tokens.delete(step);
      return Promise.resolve(ready);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => this.fail(meshError('REQUEST_FAILED', `no token from the pipeline within ${this.port.stepTimeoutMs / 1000} s`)),
        this.port.stepTimeoutMs,
      );
      this.waiter = {
        step,
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
}

export { MeshError };
