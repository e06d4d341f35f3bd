// Plain values to CBOR (RFC 8949), written by hand for the values messages are made of: maps with
// text keys, arrays, text and byte strings, integers, float64, booleans, null and undefined. Anything
// else (a bigint, a Map, a Date, a typed array other than bytes, a cycle) makes parts() return null
// and the caller uses cbor-x, which knows every type. Why by hand: a token step sends small maps, and
// a general encoder's per-call work (option checks, its own buffer management, copying the tensor into
// its buffer) cost more per 8 KiB message than the socket did.
//
// The output is definite-length, shortest-form CBOR that any decoder reads, in the map's own key order,
// with numbers written as cbor-x writes them.
// Byte strings of `largeBytes` or more are not copied: they are parts of their own, their own memory,
// between the parts that hold everything else. Joined, the parts are one CBOR item.

/** Deeper values go to cbor-x (messages are a few levels deep). */
const MAX_DEPTH = 32;

const writeValue = (w: CborWriter, v: unknown) => w.value(v);

class Unsupported extends Error {}
const UNSUPPORTED = new Unsupported('not a plain value');

/** Size of the buffer frames are written into, one after another. */
const SLAB_BYTES = 64 * 1024;

export class CborWriter {
  /**
   * Frames are written one after another into this buffer and handed out as views of it. Bytes once
   * handed out are never written again: when it is full a new one is started, and the old one lives
   * while some view of it does (a socket still writing it). So a frame costs no copy and no allocation.
   */
  private buf = Buffer.allocUnsafeSlow(SLAB_BYTES);
  private pos = 0;
  /** Where the bytes not yet cut into a part start. */
  private cut = 0;
  private out: Uint8Array[] = [];
  private total = 0;

  constructor(readonly largeBytes: number) {}

  /**
   * `value` as parts whose concatenation is its CBOR; null when it holds something outside the subset.
   * With `headroom`, the first part starts with that many spare bytes before the CBOR, for a header
   * (a WebSocket frame's) to go in front of it without a buffer of its own.
   */
  parts(value: unknown, headroom = 0): Uint8Array[] | null {
    return this.write(value, headroom) ? this.out : null;
  }

  /** `value`'s CBOR in one buffer (large byte strings copied once); null as parts(). */
  join(value: unknown): Uint8Array | null {
    if (!this.write(value)) return null;
    const parts = this.out;
    if (parts.length === 1) return parts[0];
    const joined = Buffer.allocUnsafe(this.total);
    let at = 0;
    for (const p of parts) joined.set(p, at), (at += p.byteLength);
    return joined;
  }

  /**
   * The parts `fill(this, arg)` writes through value(), head() and raw(), as parts() gives them; null
   * when it met a value outside the subset. For writers that know the shape of what they write.
   */
  written<T>(fill: (w: CborWriter, arg: T) => void, arg: T, headroom = 0): Uint8Array[] | null {
    this.room(headroom);
    this.cut = this.pos;
    this.pos += headroom;
    this.total = -headroom;
    this.out = [];
    try {
      fill(this, arg);
    } catch (err) {
      this.pos = this.cut;
      if (err === UNSUPPORTED) return null;
      throw err;
    }
    this.endPart();
    return this.out;
  }

  private write(value: unknown, headroom = 0): boolean {
    return this.written(writeValue, value, headroom) !== null;
  }

  /** Bytes that are already CBOR (a key written once, ahead of time), copied in. */
  raw(bytes: Uint8Array): void {
    const n = bytes.length;
    const b = this.room(n);
    let p = this.pos;
    for (let i = 0; i < n; i++) b[p++] = bytes[i];
    this.pos = p;
  }

  private endPart(): void {
    if (this.pos === this.cut) return;
    this.out.push(this.buf.subarray(this.cut, this.pos));
    this.total += this.pos - this.cut;
    this.cut = this.pos;
  }

  /** The buffer, with room for n more bytes at `pos` (the part being written moves to a new one if need be). */
  private room(n: number): Buffer {
    if (this.pos + n > this.buf.length) {
      const pending = this.pos - this.cut;
      const next = Buffer.allocUnsafeSlow(Math.max(SLAB_BYTES, 2 * (pending + n)));
      this.buf.copy(next, 0, this.cut, this.pos);
      this.buf = next;
      this.cut = 0;
      this.pos = pending;
    }
    return this.buf;
  }

  /** A major type with its argument, shortest form (RFC 8949 §3). */
  head(major: number, n: number): void {
    const b = this.room(9);
    const m = major << 5;
    let p = this.pos;
    if (n < 24) b[p++] = m | n;
    else if (n < 0x100) (b[p++] = m | 24), (b[p++] = n);
    else if (n < 0x10000) (b[p++] = m | 25), (b[p++] = n >>> 8), (b[p++] = n & 0xff);
    else if (n < 0x100000000) (b[p++] = m | 26), b.writeUInt32BE(n, p), (p += 4);
    else throw UNSUPPORTED; // a length of 4 GiB or more: cbor-x
    this.pos = p;
  }

  /** Any plain value; `depth` is how deep it already is. */
  value(v: unknown, depth = 0): void {
    switch (typeof v) {
      case 'string':
        return this.text(v);
      case 'number':
        return this.number(v);
      case 'boolean':
        return this.simple(v ? 0xf5 : 0xf4);
      case 'undefined':
        return this.simple(0xf7);
      case 'object':
        if (v === null) return this.simple(0xf6);
        if (depth >= MAX_DEPTH) throw UNSUPPORTED;
        if (Array.isArray(v)) return this.array(v, depth);
        if (v instanceof Uint8Array) return this.bytes(v);
        return this.map(v as Record<string, unknown>, depth);
      default:
        throw UNSUPPORTED;
    }
  }

  private simple(byte: number): void {
    this.room(1)[this.pos++] = byte;
  }

  /**
   * Integers from -2^32 to 2^32-1 as integers, every other number as a float64: what cbor-x writes, so
   * that a peer decoding with cbor-x gets numbers (it reads 64-bit integers as BigInts).
   */
  private number(n: number): void {
    if (Number.isInteger(n) && n < 0x100000000 && n >= -0x100000000) return n >= 0 ? this.head(0, n) : this.head(1, -1 - n);
    const b = this.room(9);
    b[this.pos] = 0xfb;
    b.writeDoubleBE(n, this.pos + 1);
    this.pos += 9;
  }

  private text(s: string): void {
    const n = s.length;
    if (n < 24) {
      // Short ASCII, the usual key or value, byte by byte; anything else through Buffer's UTF-8 writer.
      const b = this.room(1 + n);
      let p = this.pos;
      b[p++] = 0x60 | n;
      for (let i = 0; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) return this.utf8(s);
        b[p++] = c;
      }
      this.pos = p;
      return;
    }
    this.utf8(s);
  }

  private utf8(s: string): void {
    const n = Buffer.byteLength(s);
    this.head(3, n);
    this.room(n).write(s, this.pos, 'utf8');
    this.pos += n;
  }

  private bytes(v: Uint8Array): void {
    const n = v.byteLength;
    this.head(2, n);
    if (n >= this.largeBytes) {
      this.endPart();
      this.out.push(v);
      this.total += n;
      return;
    }
    this.room(n).set(v, this.pos);
    this.pos += n;
  }

  private array(v: unknown[], depth: number): void {
    this.head(4, v.length);
    for (let i = 0; i < v.length; i++) this.value(v[i], depth + 1);
  }

  private map(v: Record<string, unknown>, depth: number): void {
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) throw UNSUPPORTED; // Map, Date, typed arrays, classes
    const keys = Object.keys(v); // faster than for-in here, and the same keys: own, enumerable, strings
    const n = keys.length;
    this.head(5, n);
    for (let i = 0; i < n; i++) {
      const key = keys[i];
      this.text(key);
      this.value(v[key], depth + 1);
    }
  }
}
