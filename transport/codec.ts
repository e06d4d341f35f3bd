// Frames <-> messages. Frames are plain CBOR that a decoder in any language reads: definite lengths,
// byte strings untagged, no extensions. Every decoded frame is validated before anyone uses it.
// The common path is written and read by hand (cbor-writer.ts, cbor-reader.ts): a tensor goes out from
// its own memory and comes in as a view of the frame. The per-token messages go field by field
// (fast-encode.ts, fastDecode in fast-parse.ts). cbor-x takes whatever those paths leave, zod judges
// whatever the hand-written checks do not plainly accept.
import { Encoder } from 'cbor-x';
import { meshError, MeshError } from '../core/errors.ts';
import { CborWriter } from './cbor-writer.ts';
import { NOT_PLAIN, readCbor } from './cbor-reader.ts';
import { fastEncode } from './fast-encode.ts';
import { fastDecode, fastParse } from './fast-parse.ts';
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

/**
 * Byte strings from this size on are not copied on the way out: the socket or the pipe takes them from
 * their own memory (so their bytes must not change until the send is done). Smaller ones are copied
 * with the rest of the frame, which is cheaper than one more piece in the write.
 */
export const LARGE_BYTES = 1024;

const writer = new CborWriter(LARGE_BYTES);

function isMap(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !ArrayBuffer.isView(v);
}

/** Any value as one CBOR item in one buffer. */
export function encodeFrame(value: unknown): Uint8Array {
  return writer.join(value) ?? cbor.encode(value);
}

/** Any value as one CBOR item split in parts whose concatenation is the frame; large byte strings are not copied. */
export function encodeFrameParts(value: unknown): Uint8Array[] {
  return writer.parts(value) ?? [cbor.encode(value)];
}

export function encodeMessage(msg: Message): Uint8Array {
  return encodeFrame(msg);
}

/**
 * A message as the parts a link writes back to back in one WebSocket frame: its CBOR, with each
 * tensor's bytes taken from the tensor's own memory (never copied). With `headroom`, the first part
 * starts with that many spare bytes, for the frame's header.
 */
export function encodeMessageFragments(msg: Message, headroom = 0): Uint8Array[] {
  const parts = fastEncode(writer, msg, headroom) ?? writer.parts(msg, headroom);
  if (parts) return parts;
  const encoded = cbor.encode(msg);
  return [headroom ? Buffer.concat([Buffer.alloc(headroom), encoded]) : encoded];
}

/** A frame's CBOR item: by hand on the common path (transport/cbor-reader.ts), cbor-x for the rest. */
export function decodeCbor(frame: Uint8Array): unknown {
  const value = readCbor(frame);
  return value === NOT_PLAIN ? cbor.decode(frame) : value;
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
      const value = decodeCbor(Buffer.concat([head.subarray(0, at), EMPTY_BYTE_STRING]));
      if (graft(value, tail)) return value;
    }
  }
  return decodeCbor(Buffer.concat(fragments));
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
  if (fragments.length === 1) {
    const hot = fastDecode(fragments[0]);
    if (hot) return hot;
  }
  let value: unknown;
  try {
    value = fragments.length === 1 ? decodeCbor(fragments[0]) : decodeFragments(fragments);
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
