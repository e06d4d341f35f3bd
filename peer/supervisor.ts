// Keeps one Python engine alive for this peer: start/stop, a state machine the rest of the peer can
// watch, periodic health checks, and restart after a crash within a budget (then `failed`), re-issuing
// the last load so the peer's layers come back by themselves.
import { EventEmitter } from 'node:events';
import { defaults } from '../core/defaults.ts';
import { meshError, isMeshError, type MeshError } from '../core/errors.ts';
import { createLogger, type Logger } from '../core/log.ts';
import type { Head } from '../transport/messages.ts';
import type { Tensor } from '../transport/tensor.ts';
import type { DetokSpec } from './detokenizer.ts';
import type { OpTotals } from './engine-op-stats.ts';
import { EngineClient, type EngineClientOptions, type EngineExit, type EngineHello } from './engine-client.ts';

export type EngineState = 'stopped' | 'starting' | 'idle' | 'loading' | 'ready' | 'restarting' | 'failed';

export interface RestartBudget {
  maxRestarts: number;
  windowMs: number;
}

export interface EngineSupervisorOptions extends EngineClientOptions {
  /** Default: 5 restarts in 3 minutes, then `failed`. */
  restartBudget?: RestartBudget;
  /** When a failed engine is tried again (default: 1 minute, doubling to 15). */
  retryAfter?: { firstMs: number; maxMs: number };
  restartDelayMs?: number;
  healthIntervalMs?: number;
  healthTimeoutMs?: number;
  now?: () => number;
}

export interface LoadArgs {
  model: string;
  start: number;
  end: number;
  /** Cut the head's vocabulary between the first and last stages (two stages or more). */
  split_head?: boolean;
}

export interface LoadResult {
  memory_bytes: number;
  /** Absent for a tokenizer-only load (no layers). */
  peak_rss_bytes?: number;
  rss_before_bytes?: number;
  n_layers: number;
  first: boolean;
  last: boolean;
  dtype: string;
  hidden_size: number;
  /** The part [lo, hi) of a split head's vocabulary this stage computes; null when not split. */
  vocab_part?: [number, number] | null;
}

export interface InspectResult {
  model_type: string;
  n_layers: number;
  hidden_size: number;
  vocab_size: number;
  context_length: number;
  eos_token_ids: number[];
  tie_word_embeddings: boolean;
  layer_bytes: number[];
  embed_bytes: number;
  head_bytes: number;
  dtype: string;
}

export interface EngineSampling {
  temperature: number;
  top_p: number;
  seed?: number | null;
}

export interface ForwardArgs {
  request: string;
  offset: number;
  /** First stage: token ids. Other stages: hidden states [1, T, H]. */
  tokens?: number[];
  hidden?: Tensor;
  sample: boolean;
  sampling?: EngineSampling;
  /** Also return the last position's logits (tests). */
  logits?: boolean;
  /** First stage, with a split head: the last stage's part of the step, in place of `tokens`. */
  head?: Head;
  /** With `head`: the token is the request's last (no layers run for it). */
  finish?: boolean;
  /** With `head`: tokens that end the request (no layers run for them). */
  eos?: number[];
}

export interface ForwardResult {
  hidden?: Tensor;
  token?: number;
  logits?: Tensor;
  /** The last stage of a split head: its part of the step, for the first stage to finish. */
  head?: Head;
}

export interface ForwardBatchResult extends ForwardResult {
  error?: { code: string; message: string };
}

export interface EngineStats {
  active_memory: number;
  peak_memory: number;
  /** The engine process's peak resident memory so far (loading and running). */
  peak_rss_bytes: number;
  /** Of its memory, how much is in transparent huge pages (Linux; null elsewhere; MALLOC_CONF=thp:always). */
  huge_pages_bytes: number | null;
  requests: number;
  /** Open detokenizer streams (one per request this peer drives). */
  detokenizers: number;
}

export interface RestartInfo {
  /** Restarts inside the current budget window, this one included. */
  attempt: number;
  reason: string;
  pid?: number;
}

const SERVING: readonly EngineState[] = ['idle', 'loading', 'ready'];

/** What a supervisor tells the rest of the peer. */
export interface SupervisorEvents {
  /** Every state change: (state, previous). */
  state: [EngineState, EngineState];
  /** A crashed engine is running again (its layers are being re-loaded). */
  restart: [RestartInfo];
  /** The restart budget is spent: the engine is `failed` until it is tried again (`retryAfter`). */
  failed: [MeshError];
  /** After a restart the engine refused the last load (the model moved or broke): it serves without layers. */
  'reload-failed': [Error];
}

export class EngineSupervisor extends EventEmitter<SupervisorEvents> {
  private readonly opts: EngineSupervisorOptions;
  private readonly log: Logger;
  private readonly budget: RestartBudget;
  private client?: EngineClient;
  private _state: EngineState = 'stopped';
  private _hello?: EngineHello;
  private _loaded?: LoadResult;
  private lastLoad?: LoadArgs;
  /** The detokenizer spec of `model`, asked once (see detokSpec). */
  private spec?: { model: string; value: Promise<DetokSpec> };
  private restarts: number[] = [];
  private recovering = false;
  private stopRequested = false;
  private starting?: Promise<EngineHello>;
  private stopping?: Promise<void>;
  private healthTimer?: NodeJS.Timeout;
  private retryTimer?: NodeJS.Timeout;
  /** Give-ups since start(): each doubles the wait before the next try. */
  private giveUps = 0;
  private checking = false;
  private launches = 0;

  constructor(opts: EngineSupervisorOptions) {
    super();
    this.opts = opts;
    this.log = opts.logger ?? createLogger('engine');
    this.budget = opts.restartBudget ?? defaults.engineRestartBudget;
  }

  get state(): EngineState {
    return this._state;
  }

  get hello(): EngineHello | undefined {
    return this._hello;
  }

  /** The current load's reply, while the state is `ready`. */
  get loaded(): LoadResult | undefined {
    return this._state === 'ready' ? this._loaded : undefined;
  }

  get pid(): number | undefined {
    return this.client?.pid;
  }

  /** Which engine process this is (1 for the first, +1 per restart): state kept in an engine, such as a
   *  detokenizer stream, lives only as long as its process. */
  get instance(): number {
    return this.launches;
  }

  /** Per-op totals of the running engine process (count, compute and round-trip ms, bytes each way). */
  opStats(): Record<string, OpTotals> {
    return this.client?.opStats.snapshot() ?? {};
  }

  /** The running engine's last stderr lines. */
  recentStderr(): string[] {
    return this.client?.recentStderr() ?? [];
  }

  private setState(next: EngineState): void {
    const prev = this._state;
    if (prev === next) return;
    this._state = next;
    this.log.debug('engine state', { from: prev, to: next });
    this.emit('state', next, prev);
  }

  /** Starts the engine; resolves with its hello. Idempotent while started. */
  start(): Promise<EngineHello> {
    if (this.starting && this._state !== 'stopped' && this._state !== 'failed') return this.starting;
    this.stopRequested = false;
    this.stopping = undefined;
    this.restarts = [];
    this.giveUps = 0;
    this.setState('starting');
    this.starting = this.launch().then(
      (hello) => {
        this.setState('idle');
        this.startHealth();
        return hello;
      },
      (err) => {
        this.setState('failed');
        throw err;
      },
    );
    return this.starting;
  }

  private async launch(): Promise<EngineHello> {
    const client = new EngineClient(this.opts);
    this.client = client;
    this.launches++;
    client.once('exit', (exit: EngineExit) => this.onExit(client, exit));
    // A call past its deadline means a hung engine (the health check skips a busy one): replace it.
    client.on('timeout', (op: string) => {
      if (client !== this.client || !client.running || this.stopRequested) return;
      this.log.warn('engine missed a deadline; restarting it', { op });
      client.kill('SIGKILL');
    });
    this._hello = await client.start();
    return this._hello;
  }

  private onExit(client: EngineClient, exit: EngineExit): void {
    if (client !== this.client || this.stopRequested || this.recovering) return;
    if (!SERVING.includes(this._state)) return;
    const reason = exit.signal ? `killed by ${exit.signal}` : `exited with code ${exit.code}`;
    this.log.warn('engine died', { reason, last: client.recentStderr().slice(-3).join(' | ') });
    void this.recover(reason);
  }

  private takeBudget(): boolean {
    const now = (this.opts.now ?? Date.now)();
    this.restarts = this.restarts.filter((t) => now - t < this.budget.windowMs);
    if (this.restarts.length >= this.budget.maxRestarts) return false;
    this.restarts.push(now);
    return true;
  }

  private async recover(reason: string): Promise<void> {
    this.recovering = true;
    try {
      while (!this.stopRequested) {
        if (!this.takeBudget()) {
          const err = meshError(
            'ENGINE_FAILED',
            `the engine crashed ${this.budget.maxRestarts} times in ${Math.round(this.budget.windowMs / 1000)} s; ` +
              `giving up (last: ${reason})`,
            { lastStderr: this.client?.recentStderr() },
          );
          this.stopHealth();
          // A later try starts without layers: the plan in force then says which to load.
          this.lastLoad = undefined;
          // The reason first: whoever sees the state `failed` can already tell why.
          this.emit('failed', err);
          this.setState('failed');
          this.scheduleRetry();
          return;
        }
        this.setState('restarting');
        await new Promise((r) => setTimeout(r, this.opts.restartDelayMs ?? defaults.engineRestartDelayMs));
        if (this.stopRequested) return;
        try {
          await this.launch();
        } catch (err) {
          reason = (err as Error).message;
          this.client?.kill();
          await this.client?.waitExit();
          continue;
        }
        this.emit('restart', { attempt: this.restarts.length, reason, pid: this.client?.pid } satisfies RestartInfo);
        if (await this.reload()) return;
        reason = 'the engine died while re-loading its layers';
      }
    } finally {
      this.recovering = false;
    }
  }

  /** Tries a failed engine again later, with a new restart budget. */
  private scheduleRetry(): void {
    const { firstMs, maxMs } = this.opts.retryAfter ?? defaults.engineRetryAfter;
    const delay = Math.min(maxMs, firstMs * 2 ** this.giveUps++);
    this.log.warn('engine failed; it will be tried again', { in_s: Math.round(delay / 1000) });
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.stopRequested || this._state !== 'failed' || this.recovering) return;
      this.restarts = [];
      void this.recover(`tried again ${Math.round(delay / 1000)} s after it failed`).then(() => {
        if (this.serving()) this.startHealth();
      });
    }, delay);
    this.retryTimer.unref();
  }

  /** Re-issues the last load; false when the engine died doing it (the caller restarts again). */
  private async reload(): Promise<boolean> {
    const args = this.lastLoad;
    if (!args) {
      this.setState('idle');
      return true;
    }
    this.setState('loading');
    try {
      this._loaded = await this.client!.request<LoadResult>('load', { ...args });
      this.setState('ready');
      return true;
    } catch (err) {
      if (!this.client?.running) return false;
      // The engine refused (the model moved or broke): keep serving, without layers.
      this.lastLoad = undefined;
      this.setState('idle');
      this.emit('reload-failed', err as Error);
      return true;
    }
  }

  private startHealth(): void {
    const every = this.opts.healthIntervalMs ?? defaults.engineHealthIntervalMs;
    this.stopHealth();
    this.healthTimer = setInterval(() => void this.checkHealth(), every);
    this.healthTimer.unref();
  }

  private stopHealth(): void {
    if (this.healthTimer) clearInterval(this.healthTimer);
    this.healthTimer = undefined;
  }

  // Only an idle engine is probed: a long load or forward answers nothing else meanwhile, and a
  // crash during one is seen by the exit handler anyway.
  private async checkHealth(): Promise<void> {
    const client = this.client;
    if (this.checking || !client || !client.running || client.pendingCount > 0) return;
    if (this._state !== 'idle' && this._state !== 'ready') return;
    this.checking = true;
    try {
      await client.request('stats', {}, { timeoutMs: this.opts.healthTimeoutMs ?? defaults.engineHealthTimeoutMs });
    } catch (err) {
      if (client.running && client === this.client) {
        this.log.warn('engine failed its health check; killing it', { error: (err as Error).message });
        client.kill('SIGKILL');
      }
    } finally {
      this.checking = false;
    }
  }

  /** Stops the engine politely (shutdown, SIGTERM, SIGKILL). Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.stopRequested = true;
      this.stopHealth();
      if (this.retryTimer) clearTimeout(this.retryTimer);
      // An engine still starting is stopped as it is, not waited for (its hello can take seconds).
      await this.client?.stop();
      await this.starting?.catch(() => {});
      this.setState('stopped');
    })();
    return this.stopping;
  }

  /** Whether the engine takes ops now (not starting, restarting, failed or stopped). */
  private serving(): boolean {
    return !!this.client?.running && SERVING.includes(this._state);
  }

  private call<T>(op: string, args: Record<string, unknown> = {}): Promise<T> {
    if (!this.serving()) return Promise.reject(meshError('ENGINE_FAILED', `the engine is ${this._state}`, { state: this._state }));
    return this.client!.request<T>(op, args);
  }

  // --- typed ops ------------------------------------------------------------------------------

  convert(gguf: string, outDir: string, quantized = false): Promise<{ path: string; converted: boolean }> {
    return this.call('convert', { gguf, out_dir: outDir, quantized });
  }

  download(repo: string, outDir: string, layers?: [number, number], revision?: string): Promise<{ path: string; files: string[] }> {
    return this.call('download', { repo, out_dir: outDir, start: layers?.[0], end: layers?.[1], revision });
  }

  inspect(model: string): Promise<InspectResult> {
    return this.call('inspect', { model });
  }

  /** Loads layers [start, end); remembered and re-issued after a restart. */
  async load(args: LoadArgs): Promise<LoadResult> {
    const call = this.call<LoadResult>('load', { ...args });
    this.lastLoad = { ...args }; // a restart under way loads these
    // Refused as it is, without 'loading': a failed engine must stay failed for whoever watches it.
    if (!this.serving()) return call;
    this.setState('loading');
    try {
      this._loaded = await call;
      this.setState('ready');
      return this._loaded;
    } catch (err) {
      // The engine refused (bad model or range): it has nothing loaded now. A crash keeps lastLoad
      // so the restart re-issues it.
      if (!isMeshError(err, 'ENGINE_FAILED')) {
        this.lastLoad = undefined;
        if (this._state === 'loading') this.setState('idle');
      }
      throw err;
    }
  }

  forward(args: ForwardArgs): Promise<ForwardResult> {
    return this.call('forward', { ...args });
  }

  /** One-token steps of several requests as one batched forward; each result is its own forward's
   *  reply or an error (a bad item fails alone). */
  forwardBatch(items: ForwardArgs[]): Promise<{ results: ForwardBatchResult[] }> {
    return this.call('forward_batch', { items });
  }

  release(request: string): Promise<{ released: boolean }> {
    return this.call('release', { request });
  }

  tokenize(input: { text: string; addBos?: boolean } | { messages: { role: string; content: string }[] }): Promise<{ tokens: number[] }> {
    if ('messages' in input) return this.call('tokenize', { messages: input.messages });
    return this.call('tokenize', { text: input.text, add_bos: input.addBos });
  }

  decode(tokens: number[], skipSpecial = false): Promise<{ text: string }> {
    return this.call('decode', { tokens, skip_special: skipSpecial });
  }

  /** The loaded tokenizer's streaming-detokenizer rules and token map (detokenizer.ts), asked of
   *  the engine once per model. */
  detokSpec(): Promise<DetokSpec> {
    const model = this.lastLoad?.model;
    if (!model) return Promise.reject(meshError('ENGINE_ERROR', 'no model is loaded'));
    if (this.spec?.model !== model) {
      const value = this.call<DetokSpec>('detok_spec');
      this.spec = { model, value };
      value.catch(() => {
        if (this.spec?.value === value) this.spec = undefined;
      });
    }
    return this.spec.value;
  }

  /** Opens a streaming detokenizer (freed by detokClose, or by the next load). */
  detokOpen(stream: string): Promise<Record<string, never>> {
    return this.call('detok_open', { stream });
  }

  /** Adds tokens to a detokenizer stream; the reply holds the text that became final. */
  detokAdd(stream: string, tokens: number[]): Promise<{ text: string }> {
    return this.call('detok_add', { stream, tokens });
  }

  /** Flushes and frees a detokenizer stream. */
  detokClose(stream: string): Promise<{ text: string }> {
    return this.call('detok_close', { stream });
  }

  stats(): Promise<EngineStats> {
    return this.call('stats');
  }
}
