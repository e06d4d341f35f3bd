// The origin's streaming detokenizer for one request, in one of two places:
// - LocalTextStream: in this peer (detokenizer.ts, mlx-lm's rules with the model's token map), for the
//   byte-level BPE and SentencePiece tokenizers mlx-lm streams itself. No engine op per token.
// - EngineTextStream: in this peer's engine (mlx-lm's, one per request), for tokenizers only mlx-lm's
//   naive detokenizer handles. An engine restart loses it: the stream then opens a new one, feeds it
//   every token so far and drops the text it had already returned, and the request's text goes on as
//   if nothing happened. Text is counted in UTF-16 units on both sides: the new stream's output is a
//   prefix of the same text.
import type { StreamingDetokenizer } from './detokenizer.ts';
import type { TextStream } from './generation.ts';

export class LocalTextStream implements TextStream {
  constructor(private readonly detok: StreamingDetokenizer) {}

  async add(tokens: number[]): Promise<string> {
    let text = '';
    for (const t of tokens) text += this.detok.add(t);
    return text;
  }

  async close(): Promise<string> {
    return this.detok.finalize();
  }

  async drop(): Promise<void> {}
}

/** What the stream needs of the engine supervisor. */
export interface DetokEngine {
  /** Which engine process is running (changes with every restart). */
  readonly instance: number;
  detokOpen(stream: string): Promise<unknown>;
  detokAdd(stream: string, tokens: number[]): Promise<{ text: string }>;
  detokClose(stream: string): Promise<{ text: string }>;
}

export class EngineTextStream implements TextStream {
  /** Every token given so far: what a new engine stream is fed. */
  private readonly tokens: number[] = [];
  /** Text handed to the caller so far, and text the current engine stream produced so far. */
  private returned = 0;
  private produced = 0;
  /** The engine process the stream is open in; null when it must be opened (again). */
  private openedOn: number | null = null;

  constructor(
    private readonly engine: DetokEngine,
    private readonly id: string,
  ) {}

  /** Opens the stream in the running engine, unless it is open there already. */
  async open(): Promise<void> {
    const instance = this.engine.instance;
    if (this.openedOn === instance) return;
    await this.engine.detokOpen(this.id);
    this.openedOn = instance;
    this.produced = 0;
  }

  /** Adds tokens (kept even when this call fails: the next call's text includes theirs). */
  add(tokens: number[]): Promise<string> {
    this.tokens.push(...tokens);
    return this.run(async (fresh) => (await this.engine.detokAdd(this.id, fresh ? this.tokens : tokens)).text);
  }

  close(): Promise<string> {
    return this.run(async (fresh) => {
      const before = fresh && this.tokens.length ? (await this.engine.detokAdd(this.id, this.tokens)).text : '';
      const rest = (await this.engine.detokClose(this.id)).text;
      this.openedOn = null;
      return before + rest;
    });
  }

  /** Frees the engine's stream without the rest of the text (the request failed). */
  async drop(): Promise<void> {
    if (this.openedOn === this.engine.instance) await this.engine.detokClose(this.id);
    this.openedOn = null;
  }

  /** Runs one op on a stream open in the running engine (a new one is fed all tokens: `fresh`),
   *  and returns only the text the caller has not had yet. */
  private async run(op: (fresh: boolean) => Promise<string>): Promise<string> {
    try {
      const fresh = this.openedOn !== this.engine.instance;
      await this.open();
      const text = await op(fresh);
      this.produced += text.length;
      const unseen = Math.min(text.length, this.produced - this.returned);
      if (unseen <= 0) return '';
      this.returned = this.produced;
      return text.slice(text.length - unseen);
    } catch (err) {
      this.openedOn = null; // whatever state the engine's stream is in, it is not trusted any more
      throw err;
    }
  }
}
