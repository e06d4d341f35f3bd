// CBOR (RFC 8949) to plain values, by hand, for what messages are made of: definite-length maps with
// text keys, arrays, text and byte strings, integers, float64, booleans, null and undefined. Byte
// strings come back as views of the frame, never copies. On anything else (tags, indefinite lengths,
// half and single floats, 64-bit integers, non-text keys, trailing or missing bytes) readCbor() gives
// NOT_PLAIN and the caller hands the frame to cbor-x, which decodes it or says exactly what is wrong:
// this reader only takes the common path off the general decoder, it never decides what is valid.
// (cbor-x's per-call setup and its object building cost more than the socket for an 8 KiB message.)

/** The frame holds something this reader leaves to cbor-x. */
export const NOT_PLAIN: unique symbol = Symbol('not plain CBOR');

/** Deeper frames go to cbor-x. */
const MAX_DEPTH = 32;

class Bail extends Error {}
const BAIL = new Bail('not plain CBOR');

let src: Buffer = Buffer.alloc(0);
let pos = 0;
let end = 0;

/** The one CBOR item of `frame`, or NOT_PLAIN. */
export function readCbor(frame: Uint8Array): unknown {
  openFrame(frame);
  let value: unknown;
  try {
    value = item(0);
  } catch (err) {
    closeFrame();
    if (err === BAIL) return NOT_PLAIN;
    throw err;
  }
  return closeFrame() ? value : NOT_PLAIN;
}

const EMPTY = Buffer.alloc(0);

/** The argument of a head whose initial byte had additional information `info`. */
function argument(info: number): number {
  if (info < 24) return info;
  if (info === 24) {
    if (pos + 1 > end) throw BAIL;
    return src[pos++];
  }
  if (info === 25) {
    if (pos + 2 > end) throw BAIL;
    const n = (src[pos] << 8) | src[pos + 1];
    pos += 2;
    return n;
  }
  if (info === 26) {
    if (pos + 4 > end) throw BAIL;
    const n = src.readUInt32BE(pos);
    pos += 4;
    return n;
  }
  throw BAIL; // 27: 64-bit (cbor-x gives a BigInt), 28–30 reserved, 31 indefinite
}

function item(depth: number): unknown {
  if (pos >= end) throw BAIL;
  const initial = src[pos++];
  const major = initial >> 5;
  const info = initial & 0x1f;
  switch (major) {
    case 0:
      return argument(info);
    case 1:
      return -1 - argument(info);
    case 2: {
      const n = argument(info);
      if (pos + n > end) throw BAIL;
      const bytes = src.subarray(pos, pos + n);
      pos += n;
      return bytes;
    }
    case 3:
      return shortText(argument(info));
    case 4: {
      const n = argument(info);
      if (depth >= MAX_DEPTH || n > end - pos) throw BAIL; // every item takes a byte at least
      const out = new Array(n);
      for (let i = 0; i < n; i++) out[i] = item(depth + 1);
      return out;
    }
    case 5: {
      const n = argument(info);
      if (depth >= MAX_DEPTH || 2 * n > end - pos) throw BAIL;
      const out: Record<string, unknown> = {};
      for (let i = 0; i < n; i++) {
        if (pos >= end || src[pos] >> 5 !== 3) throw BAIL; // text keys only
        const key = shortText(argument(src[pos++] & 0x1f));
        if (key === '__proto__') throw BAIL;
        out[key] = item(depth + 1);
      }
      return out;
    }
    case 7:
      switch (info) {
        case 20:
          return false;
        case 21:
          return true;
        case 22:
          return null;
        case 23:
          return undefined;
        case 27: {
          if (pos + 8 > end) throw BAIL;
          const x = src.readDoubleBE(pos);
          pos += 8;
          return x;
        }
      }
      throw BAIL;
    default:
      throw BAIL; // tags
  }
}

/**
 * Short strings seen before, by their bytes: a message's keys, its type and dtype, a request's id repeat
 * frame after frame. Found here, a string costs a hash of its bytes instead of being built, and a key
 * that is the same string each time keeps property stores on V8's fast path (fresh key strings made
 * decoding a forward message slower than cbor-x, which caches keys too). 512 slots, overwritten.
 */
const SLOTS = 512;
const slotBytes: Array<Uint8Array | undefined> = new Array(SLOTS);
const slotStrings: string[] = new Array(SLOTS);

function shortText(n: number): string {
  if (n > 32 || pos + n > end) return text(n);
  const start = pos;
  if (n === 0) return '';
  // The slot from a few of its bytes (one pass over the bytes, the comparison, is enough).
  const h = Math.imul(n ^ (src[start] << 8) ^ (src[start + (n >> 1)] << 16), 0x9e3779b1) ^ (src[start + n - 1] * 0x2545);
  const slot = (h ^ (h >>> 15)) & (SLOTS - 1);
  const known = slotBytes[slot];
  if (known !== undefined && known.length === n) {
    let i = 0;
    while (i < n && known[i] === src[start + i]) i++;
    if (i === n) {
      pos += n;
      return slotStrings[slot];
    }
  }
  // Kept internalized (V8's one copy of a string, what property names are): a lookup by it, as in
  // DTYPE_BYTES[dtype] or a decoded map's keys, then compares pointers instead of hashing it each time.
  const s = Object.keys({ [text(n)]: 0 })[0];
  slotBytes[slot] = Uint8Array.prototype.slice.call(src, start, start + n);
  slotStrings[slot] = s;
  return s;
}

function text(n: number): string {
  if (pos + n > end) throw BAIL;
  const start = pos;
  pos += n;
  return src.toString('utf8', start, pos);
}

// ---- A cursor over one frame, for readers that know the shape they expect (fast-parse.ts) --------
// Each read takes the next item if it has the asked-for type and throws otherwise (isMismatch() tells
// that throw from a real error); the caller then gives the frame to the general path.

/** Starts reading `frame`; end with closeFrame(). */
export function openFrame(frame: Uint8Array): void {
  src = Buffer.isBuffer(frame) ? frame : Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  pos = 0;
  end = src.length;
}

/** Ends reading; true when the whole frame was read. */
export function closeFrame(): boolean {
  const whole = pos === end;
  src = EMPTY;
  return whole;
}

/** What the read functions throw when the next item is not what was asked for. */
export function isMismatch(err: unknown): boolean {
  return err === BAIL;
}

function head(major: number): number {
  if (pos >= end) throw BAIL;
  const initial = src[pos];
  if (initial >> 5 !== major) throw BAIL;
  pos++;
  return argument(initial & 0x1f);
}

export function readMapHead(): number {
  return head(5);
}

export function readArrayHead(): number {
  const n = head(4);
  if (n > end - pos) throw BAIL;
  return n;
}

export function readText(): string {
  return shortText(head(3));
}

/** Any number: an integer or a float64. */
export function readNumber(): number {
  if (pos >= end) throw BAIL;
  const initial = src[pos];
  if (initial === 0xfb) {
    if (pos + 9 > end) throw BAIL;
    const x = src.readDoubleBE(pos + 1);
    pos += 9;
    return x;
  }
  const major = initial >> 5;
  if (major > 1) throw BAIL;
  pos++;
  const n = argument(initial & 0x1f);
  return major === 0 ? n : -1 - n;
}

export function readBool(): boolean {
  if (pos >= end) throw BAIL;
  const b = src[pos];
  if (b !== 0xf4 && b !== 0xf5) throw BAIL;
  pos++;
  return b === 0xf5;
}

/** null when the next item is CBOR null (and consumes it). */
export function readNull(): boolean {
  if (pos < end && src[pos] === 0xf6) {
    pos++;
    return true;
  }
  return false;
}

/** A byte string, as a view of the frame. */
export function readBytes(): Buffer {
  const n = head(2);
  if (pos + n > end) throw BAIL;
  const bytes = src.subarray(pos, pos + n);
  pos += n;
  return bytes;
}

/** Any plain item, as readCbor() gives it. */
export function readAny(): unknown {
  return item(1);
}

/**
 * The next map key, as its index in `keys` (each a key's UTF-8 bytes) or -1 for another text key.
 * `hint` is tried first: keys usually come in the order they were written in.
 */
export function readKey(keys: readonly Uint8Array[], hint: number): number {
  const n = head(3);
  if (pos + n > end) throw BAIL;
  if (hint < keys.length && sameBytes(keys[hint], n)) return (pos += n), hint;
  for (let i = 0; i < keys.length; i++) if (i !== hint && sameBytes(keys[i], n)) return (pos += n), i;
  pos += n;
  return -1;
}

function sameBytes(key: Uint8Array, n: number): boolean {
  if (key.length !== n) return false;
  for (let i = 0; i < n; i++) if (key[i] !== src[pos + i]) return false;
  return true;
}
