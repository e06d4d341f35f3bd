// The wire vocabulary: every WebSocket frame is one CBOR map with a `type`, validated here before use.
// Unknown fields are stripped (ignored); unknown types are rejected.
import { z } from 'zod';
import { DTYPES, checkTensor, type Tensor } from './tensor.ts';

const bytes = z.custom<Uint8Array>((v) => v instanceof Uint8Array, { message: 'expected a byte string' });

export const TensorSchema = z
  .object({
    dtype: z.enum(DTYPES as [string, ...string[]]),
    shape: z.array(z.number().int().nonnegative()).max(8),
    data: bytes,
  })
  .transform((t, ctx) => {
    try {
      return checkTensor(t as Tensor);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
      return z.NEVER;
    }
  });

/** What a peer says about itself in the handshake and in gossip. */
export const PeerInfoSchema = z.object({
  id: z.string().min(1).max(128),
  name: z.string().max(256),
  hostname: z.string().max(256),
  startedAt: z.number(),
  port: z.number().int().min(0).max(65535),
  apiPort: z.number().int().min(0).max(65535),
  /** Addresses the peer can be dialled on (host:port is built from these and `port`). */
  addresses: z.array(z.string().max(256)).max(32),
  capabilities: z
    .object({
      platform: z.string(),
      arch: z.string(),
      totalMemory: z.number(),
      freeMemory: z.number(),
      cpus: z.number().optional(),
      chip: z.string().optional(),
      backend: z.string().optional(),
      mlxVersion: z.string().optional(),
      engine: z.string().optional(),
      mlxMeshVersion: z.string().optional(),
    })
    .passthrough(),
});
export type PeerInfo = z.infer<typeof PeerInfoSchema>;

export const HelloSchema = z.object({
  type: z.literal('hello'),
  protocol: z.number().int(),
  cluster: z.string(),
  /** Random per process start: tells a connection to ourselves from another peer with our id. */
  instance: z.string().max(64),
  /** Whether the sender requires the cluster secret; then `nonce` is its challenge. */
  secured: z.boolean().optional(),
  nonce: bytes.optional(),
  /** 'bench': `mlx-mesh bench transport` measuring this link; never a member of the cluster. */
  role: z.enum(['peer', 'bench']).optional(),
  peer: PeerInfoSchema,
});

/** With a cluster secret: the sender's proof over the other side's nonce (see transport/auth.ts). */
export const AuthSchema = z.object({
  type: z.literal('auth'),
  mac: bytes,
});

/** Sent by the side that refuses a handshake, right before closing, so the dialler can log why. */
export const RejectSchema = z.object({
  type: z.literal('reject'),
  code: z.string(),
  message: z.string(),
});

/** Known peers and the sender's idea of the coordinator: how a partial --peer list becomes a full mesh. */
export const GossipSchema = z.object({
  type: z.literal('gossip'),
  peers: z.array(PeerInfoSchema).max(1024),
  coordinator: z.string().nullable(),
  term: z.number().int().nonnegative(),
  /** The sender coordinates on a solo claim: it took its term with no link up, and nobody follows it yet. */
  solo: z.boolean().optional(),
});

/** The coordinator's announcement (peer/election.ts weighs it). */
export const CoordinatorSchema = z.object({
  type: z.literal('coordinator'),
  term: z.number().int().nonnegative(),
  id: z.string(),
  solo: z.boolean().optional(),
});

export const LayerRangeSchema = z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]);

export const PlanSchema = z.object({
  type: z.literal('plan'),
  term: z.number().int().nonnegative(),
  version: z.number().int().nonnegative(),
  /** The model as the coordinator was asked for it (`--model`, or "default"); each peer resolves it locally. */
  model: z.string(),
  stages: z.array(z.object({ id: z.string(), rank: z.number().int().nonnegative(), layers: LayerRangeSchema })).min(1),
  excluded: z.array(z.object({ id: z.string(), reason: z.string() })),
  meta: z.object({
    name: z.string(),
    nLayers: z.number().int().positive(),
    contextLength: z.number().int().positive(),
    eosTokenIds: z.array(z.number().int().nonnegative()),
    /** The head's vocabulary is cut between the first and last stages (peer/engine shard.py). */
    splitHead: z.boolean().optional(),
  }),
});

/** A peer's report about its engine and its share of the plan. */
export const StatusSchema = z.object({
  type: z.literal('status'),
  engine: z.string(),
  /** The (term, version) of the plan this status is about. */
  planTerm: z.number().int().nullable(),
  planVersion: z.number().int().nullable(),
  ready: z.boolean(),
  memoryBytes: z.number().nonnegative().optional(),
  peakRssBytes: z.number().nonnegative().optional(),
  rssBeforeLoadBytes: z.number().nonnegative().optional(),
  ggufWeights: z.string().max(32).optional(),
  backend: z.string().optional(),
  /** The CBLAS the engine's CPU matmuls use ("bundled" or a library name): its hello's `blas`. */
  blas: z.string().max(256).optional(),
  /** The malloc the engine runs with ("libjemalloc.so.2" or "system"): its hello's `malloc`. */
  malloc: z.string().max(256).optional(),
  /** The engine's CPU scheduling policy ("batch" or "normal"): its hello's `sched`. */
  sched: z.string().max(32).optional(),
  mlxVersion: z.string().optional(),
  error: z.string().optional(),
  /** Its layers' weights coming from another peer (peer/weights-fetch.ts): the last transfer's progress. */
  fetch: z
    .object({
      state: z.enum(['fetching', 'done', 'failed']),
      from: z.string().max(256),
      bytesDone: z.number().nonnegative(),
      bytesTotal: z.number().nonnegative(),
      bytesReceived: z.number().nonnegative(),
      modelBytes: z.number().nonnegative(),
      mbPerSec: z.number().nonnegative().optional(),
    })
    .optional(),
  /** What the peer's stage is doing right now (sent about once a second while it changes). */
  load: z
    .object({
      tokensPerSec: z.number().nonnegative(),
      inFlight: z.number().int().nonnegative(),
      /** Heartbeat RTT (ms) of the sender's links, by peer id: the edges of the dashboard's topology. */
      rttMs: z.record(z.string(), z.number().nonnegative()).optional(),
    })
    .optional(),
});

/** One stage's part of one step, carried down the pipeline and back to the origin for its request trace. */
export const HopSchema = z.object({
  peer: z.string(),
  /** Time the stage's engine took for this step (queueing for the engine included). */
  computeMs: z.number().nonnegative(),
  /** From the sender's `sentAt` to this stage receiving it, by the two peers' wall clocks. */
  transferMs: z.number().nonnegative(),
  /** Activation bytes that arrived at this stage (0 for token ids). */
  bytes: z.number().int().nonnegative(),
});
export type Hop = z.infer<typeof HopSchema>;

const SamplingSchema = z.object({
  temperature: z.number().min(0),
  topP: z.number().gt(0).max(1),
  seed: z.number().int().nullable(),
});

/**
 * A step's head split between the last stage and the first (peer/engine shard.py): the last stage's
 * normed hidden state and its part of the vocabulary's top logit ([[token id, logit]]), and its whole
 * part's logits when the request samples with a temperature. The origin
 * passes it on to the first stage, which finishes the token with its own part.
 */
export const HeadSchema = z.object({
  hidden: TensorSchema,
  top: z
    .array(z.tuple([z.number().int().nonnegative(), z.union([z.number(), z.nan()])]))
    .min(1)
    .max(64),
  logits: TensorSchema.optional(),
});
export type Head = z.infer<typeof HeadSchema>;

/** Activations (or, for stage 0, token ids) flowing down the pipeline. */
export const ForwardSchema = z.object({
  type: z.literal('forward'),
  request: z.string(),
  /** The peer that drives this request: the last stage sends its tokens there. */
  origin: z.string(),
  planVersion: z.number().int(),
  step: z.number().int().nonnegative(),
  /** Position of the first token of this chunk in the sequence (the KV-cache offset). */
  offset: z.number().int().nonnegative(),
  hidden: TensorSchema.optional(),
  tokens: z.array(z.number().int().nonnegative()).optional(),
  /** Whether the last stage should sample (false for all but the final prefill chunk). */
  sample: z.boolean(),
  sampling: SamplingSchema,
  /** To the first stage, with a split head: the last stage's part of the previous step, in place of
   *  `tokens`. The first stage finishes that token, sends it to the origin and embeds it. */
  head: HeadSchema.optional(),
  /** With `head`: the token it gives is the request's last, so no layers run for it. */
  finish: z.boolean().optional(),
  /** Sender's wall clock (ms) when it sent this, and the hops so far: the request's trace. */
  sentAt: z.number().optional(),
  trace: z.array(HopSchema).max(64).optional(),
});


/** The last stage sends back only the sampled token id, never the logits (or, with a split head, its
 *  part of the step for the first stage to finish; the first stage then sends the token). */
export const TokenSchema = z.object({
  type: z.literal('token'),
  request: z.string(),
  step: z.number().int().nonnegative(),
  token: z.number().int().nonnegative().optional(),
  head: HeadSchema.optional(),
  sentAt: z.number().optional(),
  trace: z.array(HopSchema).max(64).optional(),
});

export const ReleaseSchema = z.object({ type: z.literal('release'), request: z.string() });

export const RequestErrorSchema = z.object({
  type: z.literal('request-error'),
  request: z.string(),
  code: z.string(),
  message: z.string(),
});

/**
 * `mlx-mesh bench transport` over a real link: the peer sends the tensor back ('echo'), answers with an
 * empty one ('ack'), or only receives it ('none'). Only links whose hello says role 'bench' get answers.
 */
export const BenchEchoSchema = z.object({
  type: z.literal('bench-echo'),
  seq: z.number().int().nonnegative(),
  answer: z.enum(['echo', 'ack', 'none']),
  tensor: TensorSchema,
});

/**
 * Weights over the mesh (peer/weights-source.ts, peer/weights-fetch.ts): a peer lacking its layers asks
 * another for the index of the plan's model, then pulls bytes of the items it names, one bounded chunk
 * per `weights-get`. The source reads only files of its own index: names are looked up, never opened.
 */
const WeightsItemSchema = z.object({
  kind: z.enum(['file', 'tensor']),
  name: z.string().min(1).max(512),
  size: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  dtype: z.string().max(16).optional(),
  shape: z.array(z.number().int().nonnegative()).max(8).optional(),
});

export const WeightsQuerySchema = z.object({
  type: z.literal('weights-query'),
  id: z.string().max(64),
  /** The plan's model, as the plan names it. */
  model: z.string().max(4096),
});

export const WeightsIndexSchema = z.object({
  type: z.literal('weights-index'),
  id: z.string().max(64),
  name: z.string().max(512),
  digest: z.string().regex(/^[0-9a-f]{64}$/),
  items: z.array(WeightsItemSchema).max(200_000),
});

export const WeightsGetSchema = z.object({
  type: z.literal('weights-get'),
  id: z.string().max(64),
  digest: z.string().regex(/^[0-9a-f]{64}$/),
  kind: z.enum(['file', 'tensor']),
  name: z.string().min(1).max(512),
  offset: z.number().int().nonnegative(),
  length: z.number().int().positive(),
});

export const WeightsDataSchema = z.object({
  type: z.literal('weights-data'),
  id: z.string().max(64),
  data: bytes,
});

export const WeightsErrorSchema = z.object({
  type: z.literal('weights-error'),
  id: z.string().max(64),
  code: z.string().max(64),
  message: z.string().max(4096),
});

/** Control messages between peers (forwarded API calls use HTTP, not these). */
const MessageUnion = z.discriminatedUnion('type', [
  HelloSchema,
  AuthSchema,
  RejectSchema,
  GossipSchema,
  CoordinatorSchema,
  PlanSchema,
  StatusSchema,
  ForwardSchema,
  TokenSchema,
  ReleaseSchema,
  RequestErrorSchema,
  BenchEchoSchema,
  WeightsQuerySchema,
  WeightsIndexSchema,
  WeightsGetSchema,
  WeightsDataSchema,
  WeightsErrorSchema,
]);

/** Every message, and the rules across fields: a token message carries a token or a head, one of them. */
export const MessageSchema = MessageUnion.superRefine((m, ctx) => {
  if (m.type === 'token' && (m.token === undefined) === (m.head === undefined)) {
    ctx.addIssue({ code: 'custom', path: ['token'], message: 'a token message carries either a token or a head' });
  }
});

export type Message = z.infer<typeof MessageSchema>;
export type MessageOf<T extends Message['type']> = Extract<Message, { type: T }>;
export const MESSAGE_TYPES = MessageUnion.options.map((o) => o.shape.type.value);
