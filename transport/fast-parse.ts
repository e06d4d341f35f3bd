// The messages every token step sends (forward, token, bench-echo), checked by hand: the zod schemas
// in messages.ts cost more per small frame than CBOR does. The rules are the schemas' own; anything
// not plainly valid gives null and goes to zod, which then accepts it or says exactly why not, so
// this path can only be stricter, never looser (test/transport/fast-parse.test.ts fuzzes both).
import { closeFrame, isMismatch, openFrame, readAny, readArrayHead, readBool, readBytes, readKey, readMapHead, readNull, readNumber, readText } from './cbor-reader.ts';
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
  if ('head' in v || 'finish' in v) return null; // a split head's step: zod checks it
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
  if ('head' in v) return null;
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

// ---- The same messages straight from their bytes ------------------------------------------------
// fastDecode() reads a frame holding one of these messages field by field, with no intermediate object
// and no key strings: the general reader's object building cost as much as the socket for an 8 KiB
// message. It applies the rules above and gives the same message fastParse(readCbor(frame)) gives, or
// null, and then the frame takes the general path (which is where every error is explained).

const keys = (...names: string[]) => names.map((k) => Buffer.from(k));
// 'type' first in each list: a second `type` key makes the frame one for the general path.
// A split head's fields (head, finish) send the frame to the general path.
const FORWARD_KEYS = keys('type', 'request', 'origin', 'planVersion', 'step', 'offset', 'hidden', 'tokens', 'sample', 'sampling', 'sentAt', 'trace', 'head', 'finish');
const TOKEN_KEYS = keys('type', 'request', 'step', 'token', 'sentAt', 'trace', 'head');
const ECHO_KEYS = keys('type', 'seq', 'answer', 'tensor');
const TENSOR_KEYS = keys('dtype', 'shape', 'data');
const SAMPLING_KEYS = keys('temperature', 'topP', 'seed');
const TYPE_KEY = keys('type');

/** Thrown (and caught in fastDecode) when a field breaks a rule: the general path takes the frame. */
const NOT_HOT = new Error('not a plainly valid hot message');

function check(ok: boolean): void {
  if (!ok) throw NOT_HOT;
}

function readTensor(): Tensor {
  let dtype: string | undefined;
  let shape: number[] | undefined;
  let data: Uint8Array | undefined;
  const n = readMapHead();
  for (let i = 0, hint = 0; i < n; i++) {
    const k = readKey(TENSOR_KEYS, hint);
    hint = k + 1;
    if (k === 0) dtype = readText();
    else if (k === 1) shape = readCounts(8);
    else if (k === 2) data = readBytes();
    else readAny();
  }
  check(dtype !== undefined && shape !== undefined && data !== undefined);
  // A number only for the dtypes' own keys (not for 'toString' or '__proto__').
  let bytes = (DTYPE_BYTES as Record<string, unknown>)[dtype!];
  check(typeof bytes === 'number');
  for (let i = 0; i < shape!.length; i++) (bytes as number) *= shape![i];
  check(data!.byteLength === bytes);
  return { dtype: dtype as DType, shape: shape!, data: data! };
}

function readCounts(max: number): number[] {
  const n = readArrayHead();
  check(n <= max);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const x = readNumber();
    check(isCount(x));
    out[i] = x;
  }
  return out;
}

function readSampling(): { temperature: number; topP: number; seed: number | null } {
  let temperature: number | undefined;
  let topP: number | undefined;
  let seed: number | null | undefined;
  const n = readMapHead();
  for (let i = 0, hint = 0; i < n; i++) {
    const k = readKey(SAMPLING_KEYS, hint);
    hint = k + 1;
    if (k === 0) temperature = readNumber();
    else if (k === 1) topP = readNumber();
    else if (k === 2) seed = readNull() ? null : readNumber();
    else readAny();
  }
  check(isNum(temperature) && temperature >= 0 && isNum(topP) && topP > 0 && topP <= 1);
  check(seed === null || isInt(seed));
  return { temperature: temperature!, topP: topP!, seed: seed! };
}

function readTrace(): Hop[] {
  const t = trace(readAny());
  check(t !== null);
  return t!;
}

/** sentAt (k === sentAtKey) or trace (k === sentAtKey + 1) into `out`; false for another key. */
function readTiming(k: number, sentAtKey: number, out: { sentAt?: number; trace?: Hop[] }): boolean {
  if (k === sentAtKey) {
    const x = readNumber();
    check(isNum(x));
    out.sentAt = x;
    return true;
  }
  if (k === sentAtKey + 1) {
    out.trace = readTrace();
    return true;
  }
  return false;
}

/** `out` with the sentAt and trace that were read, after its other keys (the schema's order). */
function withTiming<T extends { sentAt?: number; trace?: Hop[] }>(out: T, timed: { sentAt?: number; trace?: Hop[] }): T {
  if (timed.sentAt !== undefined) out.sentAt = timed.sentAt;
  if (timed.trace !== undefined) out.trace = timed.trace;
  return out;
}

function readForward(n: number): Message {
  let request: string | undefined;
  let origin: string | undefined;
  let planVersion: number | undefined;
  let step: number | undefined;
  let offset: number | undefined;
  let hidden: Tensor | undefined;
  let tokens: number[] | undefined;
  let sample: boolean | undefined;
  let sampling: ReturnType<typeof readSampling> | undefined;
  const timed: { sentAt?: number; trace?: Hop[] } = {};
  for (let i = 0, hint = 1; i < n; i++) {
    const k = readKey(FORWARD_KEYS, hint);
    hint = k + 1;
    switch (k) {
      case 0:
        throw NOT_HOT;
      case 1:
        request = readText();
        break;
      case 2:
        origin = readText();
        break;
      case 3:
        planVersion = readNumber();
        break;
      case 4:
        step = readNumber();
        break;
      case 5:
        offset = readNumber();
        break;
      case 6:
        hidden = readTensor();
        break;
      case 7:
        tokens = readCounts(Infinity);
        break;
      case 8:
        sample = readBool();
        break;
      case 9:
        sampling = readSampling();
        break;
      case 12:
      case 13:
        throw NOT_HOT;
      default:
        if (!readTiming(k, 10, timed)) readAny();
    }
  }
  check(request !== undefined && origin !== undefined && isInt(planVersion) && isCount(step) && isCount(offset));
  check(sample !== undefined && sampling !== undefined);
  // Keys in the schema's order, as zod writes them (and fastParse).
  const out = {
    type: 'forward',
    request,
    origin,
    planVersion,
    step,
    offset,
    ...(hidden && { hidden }),
    ...(tokens && { tokens }),
    sample,
    sampling,
  } as Extract<Message, { type: 'forward' }>;
  return withTiming(out, timed);
}

function readToken(n: number): Message {
  let request: string | undefined;
  let step: number | undefined;
  let token: number | undefined;
  const timed: { sentAt?: number; trace?: Hop[] } = {};
  for (let i = 0, hint = 1; i < n; i++) {
    const k = readKey(TOKEN_KEYS, hint);
    hint = k + 1;
    if (k === 0) throw NOT_HOT;
    else if (k === 1) request = readText();
    else if (k === 2) step = readNumber();
    else if (k === 3) token = readNumber();
    else if (k === 6) throw NOT_HOT;
    else if (!readTiming(k, 4, timed)) readAny();
  }
  check(request !== undefined && isCount(step) && isCount(token));
  const out: Extract<Message, { type: 'token' }> = { type: 'token', request: request!, step: step!, token: token! };
  return withTiming(out, timed);
}

function readBenchEcho(n: number): Message {
  let seq: number | undefined;
  let answer: string | undefined;
  let tensor: Tensor | undefined;
  for (let i = 0, hint = 1; i < n; i++) {
    const k = readKey(ECHO_KEYS, hint);
    hint = k + 1;
    if (k === 0) throw NOT_HOT;
    else if (k === 1) seq = readNumber();
    else if (k === 2) answer = readText();
    else if (k === 3) tensor = readTensor();
    else readAny();
  }
  check(isCount(seq) && (answer === 'echo' || answer === 'ack' || answer === 'none') && tensor !== undefined);
  return { type: 'bench-echo', seq: seq!, answer: answer as 'echo' | 'ack' | 'none', tensor: tensor! };
}

/** The hot message in `frame` (one map, `type` its first key), exactly as fastParse gives it; else null. */
export function fastDecode(frame: Uint8Array): Message | null {
  openFrame(frame);
  let msg: Message | null = null;
  try {
    const n = readMapHead();
    if (n > 0 && readKey(TYPE_KEY, 0) === 0) {
      const type = readText();
      if (type === 'forward') msg = readForward(n - 1);
      else if (type === 'token') msg = readToken(n - 1);
      else if (type === 'bench-echo') msg = readBenchEcho(n - 1);
    }
  } catch (err) {
    if (err !== NOT_HOT && !isMismatch(err)) {
      closeFrame();
      throw err;
    }
    msg = null;
  }
  return closeFrame() ? msg : null;
}
