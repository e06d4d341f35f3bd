// One running Python engine (`python -m mlx_mesh_engine`): spawn, length-prefixed CBOR frames on its
// stdio, request ids and one promise per request. Every call ends: with its reply, with ENGINE_FAILED
// when the process exits, with ENGINE_TIMEOUT past its deadline, or with the engine's error when it
// answers a frame it could not decode (`id: null`).
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import path from 'node:path';
import { defaults, ENGINE_PROTOCOL } from '../core/defaults.ts';
import { decodeCbor, encodeFrameParts } from '../transport/codec.ts';
import type { Socket } from 'node:net';
import { FrameReader } from './frame-reader.ts';
import { openOutputSocket } from './output-socket.ts';
import { ENGINE_DIR } from '../core/paths.ts';
import { meshError, MeshError, ErrorCodes, type ErrorCode } from '../core/errors.ts';
import { createLogger, type Logger } from '../core/log.ts';
import { EngineOpStats } from './engine-op-stats.ts';
import { resolvePython, type ResolvedPython } from './python-env.ts';

/** Same limit as the engine's framing.py: refuse garbage lengths instead of buffering them. */
export const MAX_ENGINE_FRAME_BYTES = 1 << 30;
const STDERR_LINES_KEPT = 50;

export interface EngineClientOptions {
  dataDir: string;
  /** --python; otherwise resolved as peer/python-env.ts says. */
  python?: string;
  env?: NodeJS.ProcessEnv;
  logger?: Logger;
  /** How long start() waits for the engine's hello. */
  startTimeoutMs?: number;
  /** Per-op deadlines overriding defaults.engineTimeoutsMs (tests, slow machines). */
  timeouts?: Partial<Record<string, number>>;
  /** How long stop() waits after `shutdown` before SIGTERM, and again before SIGKILL. */
  stopGraceMs?: number;
}

export interface EngineHello {
  protocol: number;
  python: string;
  mlx: string;
  mlx_lm: string;
  backend: 'cpu' | 'gpu';
  /** The CBLAS MLX's CPU matmuls use: "bundled" or the library MLX_MESH_BLAS loaded. */
  blas?: string;
  /** The malloc the engine runs with: "libjemalloc.so.2" when it preloaded it (Linux), else "system". */
  malloc?: string;
  /** Its CPU scheduling policy: "batch" (SCHED_BATCH, Linux's default here) or "normal" (sched.py). */
  sched?: string;
  pid: number;
}

export interface EngineExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

interface Pending {
  op: string;
  sentAt: number;
  bytesOut: number;
  resolve: (value: any) => void;
  reject: (err: Error) => void;
  timeoutMs: number;
  timer?: NodeJS.Timeout;
}

/** The exact command that builds the environment this engine looks for. */
function setupHint(dataDir: string): string {
  return `Run \`mlx-mesh setup --data-dir ${dataDir}\` to create the managed Python environment (or pass --python).`;
}

/** Events: 'exit' (EngineExit) exactly once per started process; 'timeout' (op) when a call expires. */
export class EngineClient extends EventEmitter {
  readonly python: ResolvedPython;
  private readonly log: Logger;
  private readonly opts: EngineClientOptions;
  private child?: ChildProcess;
  /** Where the engine's frames arrive when they come over the output socket (else child.stdout). */
  private output?: Socket;
  private pending = new Map<number, Pending>();
  /** Ids sent and not answered yet, in send order, abandoned (timed-out) calls included. */
  private unanswered: number[] = [];
  /** Per-op totals of this engine process (a restarted engine starts from zero). */
  readonly opStats = new EngineOpStats();
  private nextId = 1;
  private readonly frames = new FrameReader(MAX_ENGINE_FRAME_BYTES, (frame) => this.onFrame(frame));
  private stderrTail: string[] = [];
  private stderrPartial = '';
  private exitInfo?: EngineExit;
  private exited?: Promise<EngineExit>;
  private starting?: Promise<EngineHello>;
  private stopping?: Promise<void>;

  constructor(opts: EngineClientOptions) {
    super();
    this.opts = opts;
    this.python = resolvePython({ python: opts.python, dataDir: opts.dataDir, env: opts.env });
    this.log = opts.logger ?? createLogger('engine');
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.exitInfo === undefined;
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  /** The engine's last stderr lines, for error messages. */
  recentStderr(): string[] {
    return [...this.stderrTail];
  }

  /** Spawns the engine and waits for its hello. Idempotent while the same process lives. */
  start(): Promise<EngineHello> {
    this.starting ??= this.spawnAndGreet();
    return this.starting;
  }

  private async spawnAndGreet(): Promise<EngineHello> {
    const env = { ...(this.opts.env ?? process.env) };
    env.PYTHONPATH = env.PYTHONPATH ? `${ENGINE_DIR}${path.delimiter}${env.PYTHONPATH}` : ENGINE_DIR;
    env.PYTHONUNBUFFERED = '1';
    // Frames come back over a socket read in place; a plain pipe if that socket cannot be made.
    const output = await openOutputSocket(this.frames, (err) => this.onBrokenOutput(err)).catch((err: Error) => {
      this.log.debug('engine output socket unavailable, using a pipe', { error: err.message });
      return null;
    });
    if (this.stopping) {
      output?.reader.destroy();
      output?.childEnd.destroy();
      throw meshError('ENGINE_FAILED', 'the engine was stopped before it started');
    }
    const child = spawn(this.python.path, ['-m', 'mlx_mesh_engine'], {
      cwd: ENGINE_DIR,
      env,
      stdio: ['pipe', output?.childEnd ?? 'pipe', 'pipe'],
    });
    // The child holds its own copy now; ours would keep the reader from ever seeing the end.
    output?.childEnd.destroy();
    this.child = child;

    const spawnError = new Promise<never>((_, reject) => {
      child.once('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT' || err.code === 'EACCES') {
          reject(
            meshError(
              'PYTHON_NOT_FOUND',
              `Python interpreter "${this.python.path}" (from ${this.python.source}) could not be run: ${err.code}. ${setupHint(this.opts.dataDir)}`,
              { python: this.python.path, source: this.python.source },
            ),
          );
        } else {
          reject(meshError('ENGINE_FAILED', `could not start the engine: ${err.message}`));
        }
      });
    });
    spawnError.catch(() => {});

    // Replies still in the output socket are read before the exit is reported, as with a pipe.
    const outputClosed = output ? new Promise((resolve) => output.reader.once('close', resolve)) : Promise.resolve();
    this.exited = new Promise<EngineExit>((resolve) => {
      child.once('close', async (code, signal) => {
        await outputClosed;
        this.exitInfo = { code, signal };
        this.failAll(this.exitError());
        this.log.debug('engine exited', { code, signal });
        this.emit('exit', this.exitInfo);
        resolve(this.exitInfo);
      });
    });

    if (!output) child.stdout!.on('data', (chunk: Buffer) => this.onStdout(chunk));
    this.output = output?.reader;
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (text: string) => this.onStderr(text));
    // A write to a dead engine's stdin fails with EPIPE; the exit handler reports it.
    child.stdin!.on('error', () => {});

    const hello = this.request<EngineHello>('hello', {}, { timeoutMs: this.opts.startTimeoutMs });
    const result = await Promise.race([hello, spawnError]).catch((err: Error) => {
      if (this.running) child.kill('SIGKILL');
      throw err;
    });
    if (result.protocol !== ENGINE_PROTOCOL) {
      child.kill('SIGKILL');
      throw meshError('PROTOCOL_MISMATCH', `engine speaks protocol ${result.protocol}, expected ${ENGINE_PROTOCOL}: the engine files and mlx-mesh are from different versions`);
    }
    return result;
  }

  private exitError(): MeshError {
    const { code, signal } = this.exitInfo ?? { code: null, signal: null };
    const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
    const tail = this.stderrTail.slice(-10).join('\n');
    // Exit code 3 is the engine's "cannot import mlx/cbor2" start-up failure.
    const hint = code === 3 || /No module named|cannot import/.test(tail) ? ` ${setupHint(this.opts.dataDir)}` : '';
    return meshError('ENGINE_FAILED', `the engine ${how}.${hint}${tail ? `\nlast engine output:\n${tail}` : ''}`, {
      code,
      signal,
    });
  }

  /** Sends one op and resolves with the reply's fields (without id/ok). */
  request<T = Record<string, unknown>>(
    op: string,
    args: Record<string, unknown> = {},
    opts: { timeoutMs?: number } = {},
  ): Promise<T> {
    if (!this.child || this.exitInfo) {
      return Promise.reject(this.exitInfo ? this.exitError() : meshError('ENGINE_FAILED', 'the engine is not running'));
    }
    const id = this.nextId++;
    // Absent optional arguments are left out: CBOR `undefined` is not Python's None.
    const fields = Object.fromEntries(Object.entries(args).filter(([, v]) => v !== undefined));
    // A tensor argument goes to the pipe from its own memory: header, small fields, then its bytes.
    const parts = encodeFrameParts({ ...fields, id, op });
    const header = Buffer.alloc(4);
    header.writeUInt32BE(parts.reduce((n, p) => n + p.byteLength, 0), 0);
    const timeoutMs =
      opts.timeoutMs ?? this.opts.timeouts?.[op] ?? defaults.engineTimeoutsMs[op] ?? defaults.engineTimeoutsMs.other;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { op, resolve, reject, timeoutMs, sentAt: performance.now(), bytesOut: 4 + header.readUInt32BE(0) });
      this.unanswered.push(id);
      this.armDeadline();
      const stdin = this.child!.stdin!;
      stdin.cork();
      stdin.write(header);
      for (const part of parts) stdin.write(part);
      stdin.uncork();
    });
  }

  // The engine serves one frame at a time in arrival order, so a call's clock starts when it is the
  // oldest one still waiting: a quick op queued behind a long load is not charged for the load.
  private armDeadline(): void {
    for (const id of this.unanswered) {
      const entry = this.pending.get(id);
      if (!entry) continue; // abandoned: the engine may still be busy with it, the next call's clock runs
      entry.timer ??= setTimeout(() => this.expire(id), entry.timeoutMs);
      return;
    }
  }

  private expire(id: number): void {
    const entry = this.pending.get(id);
    if (!entry) return;
    // The id stays in `unanswered`: a late reply must not be taken for the next call's.
    this.pending.delete(id);
    entry.reject(meshError('ENGINE_TIMEOUT', `the engine did not answer ${entry.op} within ${entry.timeoutMs} ms`, { op: entry.op }));
    this.emit('timeout', entry.op);
    this.armDeadline();
  }

  /** Removes one answered id (the oldest when the reply names none) and returns its call, if still waiting. */
  private settle(id: number | undefined): Pending | undefined {
    const at = id === undefined ? 0 : this.unanswered.indexOf(id);
    if (at < 0 || at >= this.unanswered.length) return undefined;
    const [answered] = this.unanswered.splice(at, 1);
    const entry = this.pending.get(answered);
    this.pending.delete(answered);
    if (entry?.timer) clearTimeout(entry.timer);
    this.armDeadline();
    return entry;
  }

  private onStdout(chunk: Buffer): void {
    try {
      this.frames.push(chunk);
    } catch (err) {
      this.child?.stdout?.removeAllListeners('data');
      this.onBrokenOutput(err as Error);
    }
  }

  /** The stream is out of sync (an oversize frame): nothing after this can be trusted. */
  private onBrokenOutput(err: Error): void {
    this.log.error('engine sent an oversize frame; killing it', { error: err.message });
    this.child?.kill('SIGKILL');
    this.output?.destroy();
  }

  private onFrame(frame: Uint8Array): void {
    let msg: any;
    try {
      msg = decodeCbor(frame);
    } catch (err) {
      this.log.error('engine sent an undecodable frame', { error: (err as Error).message });
      msg = { id: null, ok: false, error: { code: 'BAD_FRAME', message: `its reply could not be decoded: ${(err as Error).message}` } };
    }
    // A reply without an id answers a frame the engine could not decode. Replies come in the order
    // the frames were sent, so it belongs to the oldest unanswered call.
    const id = typeof msg?.id === 'number' ? msg.id : undefined;
    const entry = this.settle(id);
    if (!entry) {
      this.log.warn('engine reply matches no waiting call', { id: msg?.id, error: msg?.error?.message });
      return;
    }
    this.opStats.record(entry.op, {
      count: 1,
      computeMs: typeof msg.compute_ms === 'number' ? msg.compute_ms : 0,
      roundTripMs: performance.now() - entry.sentAt,
      bytesToEngine: entry.bytesOut,
      bytesFromEngine: 4 + frame.byteLength,
    });
    if (msg.ok) {
      const { id: _id, ok: _ok, compute_ms: _c, ...result } = msg;
      entry.resolve(result);
    } else {
      entry.reject(engineReplyError(entry.op, msg.error));
    }
  }

  private onStderr(text: string): void {
    const lines = (this.stderrPartial + text).split('\n');
    this.stderrPartial = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.trim()) continue;
      this.stderrTail.push(line);
      if (this.stderrTail.length > STDERR_LINES_KEPT) this.stderrTail.shift();
      this.log.debug(line);
    }
  }

  private failAll(err: MeshError): void {
    const pending = [...this.pending.values()];
    this.pending.clear();
    this.unanswered = [];
    for (const entry of pending) {
      if (entry.timer) clearTimeout(entry.timer);
      entry.reject(err);
    }
  }

  /** Polite stop: `shutdown`, then SIGTERM after the grace period, then SIGKILL. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.stopNow();
    return this.stopping;
  }

  private async stopNow(): Promise<void> {
    const child = this.child;
    if (!child || !this.exited) return;
    if (this.exitInfo) return;
    const grace = this.opts.stopGraceMs ?? defaults.engineStopGraceMs;
    this.request('shutdown').catch(() => {});
    child.stdin?.end();
    const gone = (ms: number) =>
      Promise.race([this.exited!.then(() => true), new Promise<boolean>((r) => setTimeout(r, ms, false).unref())]);
    if (await gone(grace)) return;
    child.kill('SIGTERM');
    if (await gone(grace)) return;
    child.kill('SIGKILL');
    await this.exited;
  }

  /** Immediate kill (tests, health-check failures). The 'exit' event still fires once. */
  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.running) this.child!.kill(signal);
  }

  /** Resolves when the process has exited (immediately if it never started). */
  async waitExit(): Promise<EngineExit | undefined> {
    return this.exited;
  }
}

/** Engine error codes that are also mesh codes keep theirs; the rest become ENGINE_ERROR. */
function engineReplyError(op: string, error: { code?: string; message?: string } | undefined): MeshError {
  const code = error?.code ?? 'INTERNAL';
  const message = `engine ${op}: ${error?.message ?? 'unknown error'}`;
  if (code in ErrorCodes) return meshError(code as ErrorCode, message, { engineCode: code });
  return meshError('ENGINE_ERROR', message, { engineCode: code });
}
