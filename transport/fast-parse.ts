// The messages every token step sends (forward, token, bench-echo), checked by hand: the zod schemas
// in messages.ts cost more per small frame than CBOR does. The rules are the schemas' own; anything
// not plainly valid gives null and goes to zod, which then accepts it or says exactly why not, so
// this path can only be stricter, never looser (test/transport/fast-parse.test.ts fuzzes both).
import type { Hop, Message } from './messages.ts';
import { DTYPE_BYTES, expectedBytes, type DType, type Tensor } from './tensor.ts';

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isInt = (v: unknown): v is number => Number.isSafeInteger(v);
const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const isStr = (v: unknown): v is string => typeof v === 'string';

/** Every index of the list, holes included (Array.prototype.every skips holes; zod does not). */
function allCounts(xs: unknown[]): xs is number[] {
  for (let i = 0; i < xs.length; i++) if (!isCount(xs[i])) return false;
  return true;
}

/** An optional key: absent, or valid. A key present with `undefined` is left to zod. */
function optional(v: Obj, key: string, ok: (x: unknown) => boolean): boolean {
  return !(key in v) || (v[key] !== undefined && ok(v[key]));
}

function tensor(v: unknown): Tensor | null {
  if (!isObj(v)) return null;
  const { dtype, shape, data } = v;
  if (!isStr(dtype) || !Object.hasOwn(DTYPE_BYTES, dtype)) return null;
  if (!Array.isArray(shape) || shape.length > 8 || !allCounts(shape)) return null;
  if (!(data instanceof Uint8Array) || data.byteLength !== expectedBytes(dtype as DType, shape)) return null;
  return { dtype: dtype as DType, shape: [...shape], data };
}

function trace(v: unknown): Hop[] | null {
  if (!Array.isArray(v) || v.length > 64) return null;
  const out: Hop[] = [];
  for (const h of v) {
    if (!isObj(h) || !isStr(h.peer) || !isNum(h.computeMs) || h.computeMs < 0) return null;
    if (!isNum(h.transferMs) || h.transferMs < 0 || !isCount(h.bytes)) return null;
    out.push({ peer: h.peer, computeMs: h.computeMs, transferMs: h.transferMs, bytes: h.bytes });
  }
  return out;
}

/** sentAt and trace, shared by forward and token, copied onto `out` when present. */
function timing(v: Obj, out: { sentAt?: number; trace?: Hop[] }): boolean {
  if (!optional(v, 'sentAt', isNum) || !optional(v, 'trace', Array.isArray)) return false;
  if ('sentAt' in v) out.sentAt = v.sentAt as number;
  if ('trace' in v) {
    const t = trace(v.trace);
    if (!t) return false;
    out.trace = t;
  }
  return true;
}

function forward(v: Obj): Message | null {
  const { request, origin, planVersion, step, offset, sample, sampling } = v;
  if (!isStr(request) || !isStr(origin) || !isInt(planVersion) || !isCount(step) || !isCount(offset)) return null;
  if (typeof sample !== 'boolean' || !isObj(sampling)) return null;
  const { temperature, topP, seed } = sampling;
  if (!isNum(temperature) || temperature < 0 || !isNum(topP) || !(topP > 0) || topP > 1) return null;
  if (seed !== null && !isInt(seed)) return null;
  if (!optional(v, 'hidden', isObj) || !optional(v, 'tokens', Array.isArray)) return null;
  const hidden = 'hidden' in v ? tensor(v.hidden) : undefined;
  if (hidden === null) return null;
  const tokens = v.tokens as unknown[] | undefined;
  if (tokens && !allCounts(tokens)) return null;
  // Keys in the schema's order, as zod writes them.
  const out = {
    type: 'forward',
    request,
    origin,
    planVersion,
    step,
    offset,
    ...(hidden && { hidden }),
    ...(tokens && { tokens: [...tokens] }),
    sample,
    sampling: { temperature, topP, seed },
  } as Extract<Message, { type: 'forward' }>;
  return timing(v, out) ? out : null;
}

function token(v: Obj): Message | null {
  const { request, step, token } = v;
  if (!isStr(request) || !isCount(step) || !isCount(token)) return null;
  const out: Extract<Message, { type: 'token' }> = { type: 'token', request, step, token };
  return timing(v, out) ? out : null;
}

function benchEcho(v: Obj): Message | null {
  const { seq, answer } = v;
  if (!isCount(seq) || (answer !== 'echo' && answer !== 'ack' && answer !== 'none')) return null;
  const t = tensor(v.tensor);
  return t && { type: 'bench-echo', seq, answer, tensor: t };
}

const FAST: Record<string, (v: Obj) => Message | null> = { forward, token, 'bench-echo': benchEcho };

/** The message zod would make of `value` when it is a plainly valid hot message; otherwise null. */
export function fastParse(value: Obj): Message | null {
  const parse = typeof value.type === 'string' && Object.hasOwn(FAST, value.type) ? FAST[value.type] : undefined;
  return parse ? parse(value) : null;
}
