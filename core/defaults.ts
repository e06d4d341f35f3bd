// Every default of the product in one place. Lower layers take these as options, so tests can pass
// faster timings without touching globals.
import os from 'node:os';
import path from 'node:path';

/** The peer-to-peer wire protocol (sent in every `hello` and the mDNS TXT record): 2 since the weights-* messages. */
export const PROTOCOL_VERSION = 2;
/** The Node ↔ Python engine protocol: must equal `PROTOCOL` in peer/engine/mlx_mesh_engine/__init__.py (tested). */
export const ENGINE_PROTOCOL = 2;

/** Timings can be tightened through the environment (tests, impatient LANs); see the README. */
function envMs(name: string, fallback: number): number {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? v : fallback;
}

/** A fraction in [0, 1] from the environment, or the fallback when unset or out of range. */
function envFraction(name: string, fallback: number): number {
  const raw = process.env[name];
  const v = raw === undefined || raw.trim() === '' ? NaN : Number(raw);
  return v >= 0 && v <= 1 ? v : fallback;
}

/**
 * How long the engine may take over one call, counted from when the call reaches the head of the
 * engine's queue (it serves one frame at a time). Quick ops get seconds, model work gets minutes;
 * an op not listed gets `other`.
 */
const engineTimeoutsMs: Readonly<Record<string, number>> = {
  hello: 60_000, // importing MLX on a busy machine
  tokenize: 30_000,
  decode: 30_000,
  stats: 30_000,
  release: 30_000,
  shutdown: 30_000,
  inspect: 60_000,
  forward: 120_000, // one prefill chunk of a large model on a slow CPU
  load: 10 * 60_000,
  convert: 30 * 60_000,
  download: 2 * 60 * 60_000,
  other: 60_000,
};

export const defaults = {
  port: 50051,
  apiPort: 8100,
  apiHost: '127.0.0.1',
  cluster: 'default',
  dataDir: process.env.MLX_MESH_DATA_DIR ?? path.join(os.homedir(), '.mlx-mesh'),
  mdnsServiceType: 'mlx-mesh',
  /** Largest WebSocket frame accepted: big enough for a long prefill chunk of a large model's activations. */
  maxPayloadBytes: 256 * 1024 * 1024,
  /** What a socket may send before its handshake completes (a hello is about a kilobyte): a stranger
   *  cannot make a peer buffer a large frame. The large limit above is for linked peers only. */
  preHandshakeMaxBytes: 64 * 1024,
  /** Sockets one remote address may hold open while they have not completed the handshake. */
  maxUnauthenticatedPerAddress: 16,
  /** Sends in flight on one link before send() waits for the socket to drain. */
  sendWindow: 8,
  heartbeatMs: envMs('MLX_MESH_HEARTBEAT_MS', 1000),
  /** A link that misses this many heartbeats in a row is dead. */
  heartbeatMisses: 3,
  handshakeTimeoutMs: 5000,
  /** A port found in use is tried again for this long before PORT_IN_USE (core/bind.ts). */
  bindRetryMs: 1500,
  dialBackoffMinMs: 200,
  dialBackoffMaxMs: 5000,
  /** How long a new peer listens for an existing coordinator before electing one itself. */
  settleMs: envMs('MLX_MESH_SETTLE_MS', 1500),
  /**
   * How a GGUF model's quantized tensors are converted: `auto` keeps them quantized where MLX multiplies
   * quantized weights fast (the GPU, Metal) and dequantizes to float32 elsewhere (the CPU build on Linux).
   */
  ggufWeights: (process.env.MLX_MESH_GGUF_WEIGHTS || 'auto') as string,
  /** Share of RAM a peer offers for layers unless `--memory` says (unified memory is shared with the OS). */
  memoryFraction: 0.75,
  /** Overlapped prefill: about this many prompt chunks per stage, so stage k+1 works on chunk i−1 while
   *  stage k works on chunk i; chunks stay within [min, max] tokens (max = mlx_lm's prefill_step_size). */
  prefillChunksPerStage: 2,
  prefillChunkMin: 32,
  prefillChunkMax: 2048,
  /** How much of the output head's bytes the planner counts as the last stage's work per token, against
   *  1 for a layer's (peer/planner.ts): decode reads the whole head per token, prefill runs it once.
   *  Read on the coordinator, which plans. */
  planHeadWorkShare: envFraction('MLX_MESH_HEAD_WORK_SHARE', 0),
  /** MLX_MESH_SPLIT_HEAD=1: with two stages or more, cut the output head's vocabulary between the first
   *  and the last stage (peer/engine shard.py), so the last stage does not read the whole head every
   *  step alone. Off by default: on the 2-core test machine, whose cores share one memory, it balanced
   *  the stages but gave no more tokens per second (bench/README.md). Read by the coordinator when it
   *  plans; the plan tells every peer. */
  get splitHead(): boolean {
    return process.env.MLX_MESH_SPLIT_HEAD === '1';
  },
  engineTimeoutsMs,

  // --- inference -------------------------------------------------------------------------------
  /** How long the origin waits for the next token before failing the request. */
  stepTimeoutMs: 120_000,
  /** Quiet time after a membership change before the coordinator re-plans (joins come in bursts). */
  replanDelayMs: 300,
  /** A better split (a new peer) waits for running requests to end, at most this long, then replays them. */
  replanDrainMs: 30_000,
  /** After a request fails, how long its origin looks for a lost stage or a new plan before giving up. */
  replayEvidenceMs: 1000,
  /** After a stage is lost, how long its origin waits for a plan without it before ending the request. */
  replayPlanWaitMs: 2000,
  /** After a stage's engine crashed (its caches are gone), how long the origin of a request through it
   *  waits for it to be restarted with its layers re-loaded before ending the request. */
  replayEngineWaitMs: 120_000,
  /** Replays one request may take (each after a lost stage, a new plan or an engine restart). */
  replayMaxAttempts: 16,
  /** Requests whose trace a peer keeps for /debug/requests. */
  traceLimit: 100,

  // --- weights over the mesh (peer/weights-fetch.ts) -----------------------------------------
  /** Bytes per `weights-get`, and requests in flight per transfer: at most window × chunk bytes held. */
  weightsChunkBytes: 1024 * 1024,
  weightsWindow: 4,
  /** The largest chunk a source sends for one request. */
  weightsMaxChunkBytes: 16 * 1024 * 1024,
  /** How long a source may take to index a model (it hashes every tensor once) and to send one chunk. */
  weightsIndexTimeoutMs: 10 * 60_000,
  weightsChunkTimeoutMs: 60_000,
  /** Test-only pacing: a pause (ms) before each chunk request, so a test can interrupt a transfer mid-way. */
  weightsPaceMs: Number(process.env.MLX_MESH_FETCH_PACE_MS) || 0,
  /** How often a transfer's progress is told to the cluster (status) and the log. */
  weightsProgressMs: 500,
  /** How often a long transfer logs its progress. */
  weightsLogMs: 10_000,

  // --- engine (the Python child) -------------------------------------------------------------
  /** How long a stopping engine gets to answer `shutdown` and exit before SIGTERM, then before SIGKILL:
   *  a peer leaving must exit within about 2 s even when its engine is busy. */
  engineStopGraceMs: 500,
  /** Restarts allowed within the window before the engine is declared failed. */
  engineRestartBudget: { maxRestarts: 5, windowMs: 3 * 60_000 },
  /** After the budget is spent, the engine is tried again (with a new budget) after this long, twice
   *  as long after each further give-up, at most maxMs: a passing cause (memory pressure) heals itself. */
  engineRetryAfter: { firstMs: 60_000, maxMs: 15 * 60_000 },
  engineRestartDelayMs: 500,
  engineHealthIntervalMs: 5000,
  engineHealthTimeoutMs: 10_000,

  // --- HTTP API --------------------------------------------------------------------------------
  apiBodyLimitBytes: 4 * 1024 * 1024,
  /** max_tokens when a request gives none: chat answers run longer than raw completions (OpenAI's own defaults). */
  chatMaxTokens: 256,
  completionMaxTokens: 16,
  /** Batched decode: most requests' one-token steps in one engine forward, and the longest a step
   *  waits at an idle engine for the requests it last stepped with (peer/stage.ts). */
  batchMaxRequests: 8,
  batchWaitMs: 2,
  /** A request silent this long at a stage (no step, no release) stops counting towards the size of its
   *  pipeline groups (peer/stage.ts). */
  batchActiveTtlMs: 30_000,
} as const;

