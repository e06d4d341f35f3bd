// Frames <-> messages. CBOR options chosen so a plain CBOR decoder in any language reads our frames:
// no records extension, byte strings untagged. Every decoded frame is validated before anyone uses it.
// Large byte strings (tensors) skip the encoder: their CBOR header is written, then their own bytes,
// so a 16 MiB tensor is copied once into the frame (or not at all when sent as parts).
import { Encoder } from 'cbor-x';
import { meshError, MeshError } from '../core/errors.ts';
import { fastParse } from './fast-parse.ts';
import type { FramePool } from './frame-pool.ts';
import { MessageSchema, type Message } from './messages.ts';

/** The one CBOR option set of the project: links and the engine's stdio use the same encoder. */
export const CBOR_OPTIONS = {
  useRecords: false,
  tagUint8Array: false,
  mapsAsObjects: true,
  variableMapSize: true,
  pack: false,
} as const;

/** Decoded byte strings are views into the frame they came from (cbor-x's default), never copies. */
export const cbor = new Encoder(CBOR_OPTIONS);

/** Byte strings from this size on are written as header + their own bytes. */
const LARGE_BYTES = 64 * 1024;
/** How deep into maps large byte strings are looked for: a message's (or an engine reply's) tensor. */
const LARGE_DEPTH = 2;

function isMap(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !ArrayBuffer.isView(v);
}

function isLarge(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array && v.byteLength >= LARGE_BYTES;
}

/** Whether v is, or holds within `depth` maps, a large byte string. */
function holdsLarge(v: unknown, depth: number): boolean {
  return isLarge(v) || (depth > 0 && hasLarge(v, depth));
}

function hasLarge(v: unknown, depth: number): boolean {
  if (!isMap(v)) return false;
  for (const key in v) {
    const x = v[key];
    if (isLarge(x) || (depth > 1 && hasLarge(x, depth - 1))) return true;
  }
  return false;
}

/** The length of the CBOR map header whose first byte is `initial` (definite lengths only: cbor-x's). */
function mapHeaderLength(initial: number): number {
  const info = initial & 0x1f;
  return info < 24 ? 1 : 1 + (1 << (info - 24));
}

/** Encoded map keys, kept: messages use a handful of them. Bounded so odd keys cannot grow it. */
const KEY_CACHE = new Map<string, Uint8Array>();

function encodedKey(key: string): Uint8Array {
  let bytes = KEY_CACHE.get(key);
  if (!bytes) {
    bytes = Uint8Array.from(cbor.encode(key));
    if (KEY_CACHE.size < 256) KEY_CACHE.set(key, bytes);
  }
  return bytes;
}

/** Small CBOR pieces accumulate here (reused across frames); large byte strings stay where they are. */
class PartWriter {
  private static scratch = Buffer.allocUnsafeSlow(64 * 1024);
  private pos = 0;
  private flushedTo = 0;
  /** [start, end) ranges of the scratch buffer, or a large byte string. */
  private readonly segments: Array<[number, number] | Uint8Array> = [];
  total = 0;

  private room(n: number): Buffer {
    if (this.pos + n > PartWriter.scratch.byteLength) {
      const bigger = Buffer.allocUnsafeSlow(Math.max(2 * PartWriter.scratch.byteLength, this.pos + n));
      PartWriter.scratch.copy(bigger, 0, 0, this.pos);
      PartWriter.scratch = bigger;
    }
    return PartWriter.scratch;
  }

  private bytes(b: Uint8Array): void {
    this.room(b.byteLength).set(b, this.pos);
    this.pos += b.byteLength;
  }

  /** A CBOR major type with its argument, in the shortest form (RFC 8949 §3). */
  private head(major: number, n: number): void {
    const buf = this.room(9);
    const m = major << 5;
    if (n < 24) buf[this.pos++] = m | n;
    else if (n < 0x100) (buf[this.pos++] = m | 24), (buf[this.pos++] = n);
    else if (n < 0x10000) (buf[this.pos++] = m | 25), buf.writeUInt16BE(n, this.pos), (this.pos += 2);
    else if (n < 0x100000000) (buf[this.pos++] = m | 26), buf.writeUInt32BE(n, this.pos), (this.pos += 4);
    else (buf[this.pos++] = m | 27), buf.writeBigUInt64BE(BigInt(n), this.pos), (this.pos += 8);
  }

  private flush(): void {
    if (this.pos > this.flushedTo) this.segments.push([this.flushedTo, this.pos]);
    this.total += this.pos - this.flushedTo;
    this.flushedTo = this.pos;
  }

  value(v: unknown, depth: number): void {
    if (isLarge(v)) {
      this.head(2, v.byteLength);
      this.flush();
      this.segments.push(v);
      this.total += v.byteLength;
    } else if (depth > 0 && isMap(v) && hasLarge(v, depth)) {
      // Keys holding a large byte string go last (key order means nothing in a CBOR map), so that a
      // frame's one tensor can end it and be written from its own memory, after the rest.
      // The other entries go through the encoder in one call, as a map of their own whose header is
      // then rewritten to count every entry.
      const small: Record<string, unknown> = {};
      const large: string[] = [];
      let count = 0;
      for (const key in v) {
        if (holdsLarge(v[key], depth - 1)) large.push(key);
        else (small[key] = v[key]), count++;
      }
      this.head(5, count + large.length);
      const encoded = cbor.encode(small);
      this.bytes(encoded.subarray(mapHeaderLength(encoded[0])));
      for (const key of large) {
        this.bytes(encodedKey(key));
        this.value(v[key], depth - 1);
      }
    } else {
      this.bytes(cbor.encode(v));
    }
  }

  /** The frame in one buffer: each large byte string is copied exactly once. */
  join(pool?: FramePool): Uint8Array {
    this.flush();
    const out = pool ? pool.take(this.total) : Buffer.allocUnsafe(this.total);
    let at = 0;
    for (const s of this.segments) {
      if (s instanceof Uint8Array) out.set(s, at), (at += s.byteLength);
      else at += PartWriter.scratch.copy(out, at, s[0], s[1]);
    }
    return out;
  }

  /**
   * The frame as two parts: [everything before the byte string, its own bytes] when the frame
   * ends with its one large byte string, otherwise the whole frame in one buffer.
   */
  fragments(pool?: FramePool): Uint8Array[] {
    const large = this.segments.filter((s) => s instanceof Uint8Array);
    if (large.length !== 1 || this.pos > this.flushedTo || this.segments.at(-1) !== large[0]) return [this.join(pool)];
    const head = Buffer.allocUnsafe(this.pos);
    let at = 0;
    for (const s of this.segments) if (!(s instanceof Uint8Array)) at += PartWriter.scratch.copy(head, at, s[0], s[1]);
    return [head.subarray(0, at), large[0] as Uint8Array];
  }

  /** The frame as parts (for writev): large byte strings are not copied at all. */
  parts(): Uint8Array[] {
    this.flush();
    return this.segments.map((s) => (s instanceof Uint8Array ? s : Buffer.from(PartWriter.scratch.subarray(s[0], s[1]))));
  }
}

/** Any value as one CBOR item, large byte strings copied once (into a buffer from `pool` if given). */
export function encodeFrame(value: unknown, pool?: FramePool): Uint8Array {
  if (!hasLarge(value, LARGE_DEPTH)) return cbor.encode(value);
  const w = new PartWriter();
  w.value(value, LARGE_DEPTH);
  return w.join(pool);
}

/** Any value as one CBOR item split in parts whose concatenation is the frame; large byte strings are not copied. */
export function encodeFrameParts(value: unknown): Uint8Array[] {
  if (!hasLarge(value, LARGE_DEPTH)) return [cbor.encode(value)];
  const w = new PartWriter();
  w.value(value, LARGE_DEPTH);
  return w.parts();
}

export function encodeMessage(msg: Message, pool?: FramePool): Uint8Array {
  return encodeFrame(msg, pool);
}

/**
 * A message as the parts a link writes back to back in one WebSocket frame: [its CBOR up to the
 * tensor's bytes, the tensor's own memory] when it has a tensor (never copied), otherwise the whole
 * frame in one buffer (from `pool` when large).
 */
export function encodeMessageFragments(msg: Message, pool?: FramePool): Uint8Array[] {
  if (!hasLarge(msg, LARGE_DEPTH)) return [cbor.encode(msg)];
  const w = new PartWriter();
  w.value(msg, LARGE_DEPTH);
  return w.fragments(pool);
}

/** The shortest CBOR header of a byte string of n bytes. */
function byteStringHeader(n: number): Buffer {
  if (n < 24) return Buffer.from([0x40 | n]);
  if (n < 0x100) return Buffer.from([0x58, n]);
  const b = Buffer.alloc(n < 0x10000 ? 3 : n < 0x100000000 ? 5 : 9);
  if (b.length === 3) (b[0] = 0x59), b.writeUInt16BE(n, 1);
  else if (b.length === 5) (b[0] = 0x5a), b.writeUInt32BE(n, 1);
  else (b[0] = 0x5b), b.writeBigUInt64BE(BigInt(n), 1);
  return b;
}

const EMPTY_BYTE_STRING = Buffer.from([0x40]);
const INDEX_KEY = /^(0|[1-9]\d*)$/;

/**
 * Puts `tail` in place of the empty byte string that was parsed last: the last value of the last map,
 * all the way down. Objects keep keys in parse order unless a key looks like an array index; then no.
 */
function graft(value: unknown, tail: Uint8Array): boolean {
  let node = value;
  while (isMap(node)) {
    const keys = Object.keys(node);
    if (keys.some((k) => INDEX_KEY.test(k))) return false;
    const last = keys.at(-1);
    if (last === undefined) return false;
    const child = node[last];
    if (child instanceof Uint8Array && child.byteLength === 0) {
      node[last] = tail;
      return true;
    }
    node = child;
  }
  return false;
}

/**
 * A message that came in several fragments. When the last fragment is exactly the content of the byte
 * string the first one ends with (encodeMessageFragments' shape), it becomes that byte string without a
 * copy: the first fragment is decoded with an empty byte string in its place, and the fragment grafted
 * in. Parsing is left to right, so that is the same map the joined bytes decode to. Any other split is
 * joined first.
 */
function decodeFragments(fragments: readonly Uint8Array[]): unknown {
  if (fragments.length === 2 && fragments[1].byteLength >= LARGE_BYTES) {
    const [head, tail] = fragments;
    const header = byteStringHeader(tail.byteLength);
    const at = head.byteLength - header.byteLength;
    if (at >= 0 && Buffer.from(head.buffer, head.byteOffset + at, header.byteLength).equals(header)) {
      const value = cbor.decode(Buffer.concat([head.subarray(0, at), EMPTY_BYTE_STRING]));
      if (graft(value, tail)) return value;
    }
  }
  return cbor.decode(Buffer.concat(fragments));
}

/** Raw CBOR, for tests that need frames the schema would never produce. */
export function encodeRaw(value: unknown): Uint8Array {
  return cbor.encode(value);
}

/** One message from a frame, or from the fragments of one WebSocket message. */
export function decodeMessage(frame: Uint8Array | readonly Uint8Array[], maxBytes = Infinity): Message {
  const fragments = frame instanceof Uint8Array ? [frame] : frame;
  const bytes = fragments.reduce((n, f) => n + f.byteLength, 0);
  if (bytes > maxBytes) {
    throw meshError('FRAME_TOO_LARGE', `frame of ${bytes} bytes exceeds the limit of ${maxBytes}`);
  }
  let value: unknown;
  try {
    value = fragments.length === 1 ? cbor.decode(fragments[0]) : decodeFragments(fragments);
  } catch (err) {
    throw meshError('BAD_FRAME', `frame is not valid CBOR: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value) || value instanceof Uint8Array) {
    throw meshError('BAD_FRAME', 'frame is not a CBOR map');
  }
  const type = (value as { type?: unknown }).type;
  if (typeof type !== 'string') throw meshError('BAD_FRAME', 'frame has no string `type`');
  const fast = fastParse(value as Record<string, unknown>);
  if (fast) return fast;
  const parsed = MessageSchema.safeParse(value);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    if (first?.code === 'invalid_union' && (first as { note?: string }).note === 'No matching discriminator') {
      throw meshError('BAD_FRAME', `unknown message type "${type}"`);
    }
    const tensorIssue = parsed.error.issues.find((i) => i.code === 'custom' && i.message.startsWith('tensor '));
    if (tensorIssue) throw meshError('TENSOR_SIZE', tensorIssue.message);
    const where = first?.path.join('.') || '(root)';
    throw meshError('SCHEMA', `invalid "${type}" message at ${where}: ${first?.message ?? 'schema mismatch'}`);
  }
  return parsed.data as Message;
}

export { MeshError };
