// RFC 6455 frames, both ways, without I/O: the header a sender writes before a message's bytes, and a
// parser that turns a byte stream into messages, pings, pongs and a close. A link's data path runs on
// these after `ws` has done the HTTP upgrade (transport/wire.ts says why).
//
// What it accepts is what RFC 6455 allows without extensions: no RSV bits, control frames of at most
// 125 bytes and never fragmented, continuation frames only inside a fragmented message, client frames
// masked and server frames not. A payload inside one read is handed out as a view of it; one spread
// over reads is copied once, as its bytes arrive, into a buffer of its own length.

export const Opcode = { CONTINUATION: 0x0, TEXT: 0x1, BINARY: 0x2, CLOSE: 0x8, PING: 0x9, PONG: 0xa } as const;

/** Close codes the parser fails with (RFC 6455 §7.4.1). */
export const WsClose = { NORMAL: 1000, PROTOCOL_ERROR: 1002, NO_STATUS: 1005, ABNORMAL: 1006, TOO_BIG: 1009 } as const;

export class WsProtocolError extends Error {
  constructor(
    readonly closeCode: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The header of one frame of `length` payload bytes. A client's frames carry the mask bit with an
 * all-zero key: XOR with zero leaves the payload as it is, so it goes out from its own memory (masking
 * protects HTTP proxies from bytes a browser script chose; links carry no browser traffic).
 */
export function frameHeader(opcode: number, length: number, masked: boolean, fin = true): Buffer {
  // From Node's shared pool (Buffer.alloc would make an ArrayBuffer per frame); every byte is set.
  const head = Buffer.allocUnsafe(headerSize(length, masked));
  writeFrameHeader(head, 0, opcode, length, masked, fin);
  return head;
}

/** The size of the header of a frame of `length` payload bytes. */
export function headerSize(length: number, masked: boolean): number {
  return 2 + (length < 126 ? 0 : length < 0x10000 ? 2 : 8) + (masked ? 4 : 0);
}

/** Writes frameHeader()'s bytes into `out` at `at`. */
export function writeFrameHeader(out: Uint8Array, at: number, opcode: number, length: number, masked: boolean, fin = true): void {
  out[at] = (fin ? 0x80 : 0) | opcode;
  let p = at + 2;
  if (length < 126) out[at + 1] = length;
  else if (length < 0x10000) (out[at + 1] = 126), (out[p++] = length >>> 8), (out[p++] = length & 0xff);
  else {
    out[at + 1] = 127;
    const hi = Math.floor(length / 0x100000000);
    const lo = length >>> 0;
    out[p++] = hi >>> 24; out[p++] = (hi >>> 16) & 0xff; out[p++] = (hi >>> 8) & 0xff; out[p++] = hi & 0xff;
    out[p++] = lo >>> 24; out[p++] = (lo >>> 16) & 0xff; out[p++] = (lo >>> 8) & 0xff; out[p++] = lo & 0xff;
  }
  if (masked) {
    out[at + 1] |= 0x80;
    out[p++] = 0; out[p++] = 0; out[p++] = 0; out[p++] = 0;
  }
}

/** A close frame's payload: the code, then the reason (UTF-8, cut to fit a control frame). */
export function closePayload(code: number, reason: string): Buffer {
  const text = Buffer.from(reason);
  const out = Buffer.alloc(2 + Math.min(text.length, 123));
  out.writeUInt16BE(code, 0);
  text.copy(out, 2, 0, out.length - 2);
  return out;
}

export interface FrameSink {
  /** A whole data message: its fragments' payloads in order (usually one). */
  message(fragments: Buffer[], binary: boolean): void;
  ping(payload: Buffer): void;
  pong(payload: Buffer): void;
  /** The other side's close frame: its code (1005 when it gave none) and reason. */
  close(code: number, reason: string): void;
}

export interface ParserOptions {
  /** Largest data message, all fragments together; a larger one fails with 1009 before it is buffered. */
  maxPayload: number;
  /** True on the server side: every frame from a client must be masked (RFC 6455 §5.1). */
  expectMasked: boolean;
}

const enum State {
  HEADER,
  PAYLOAD,
}

export class WsFrameParser {
  private state = State.HEADER;
  /** Header bytes gathered so far when a header is split over reads (at most 14). */
  private readonly head = Buffer.alloc(14);
  private headFill = 0;
  private fin = false;
  private opcode = 0;
  private mask: Buffer | null = null;
  private payload: Buffer | null = null;
  private payloadFill = 0;
  /** Fragments of a message whose last frame has not come yet, and its type. */
  private fragments: Buffer[] = [];
  private fragmentedBytes = 0;
  private messageOpcode = 0;
  private failed = false;

  constructor(
    readonly opts: ParserOptions,
    private readonly sink: FrameSink,
  ) {}

  /** Feeds one read; calls the sink for each frame it completes. Throws WsProtocolError on a bad frame. */
  push(chunk: Buffer): void {
    if (this.failed) return;
    try {
      this.parse(chunk);
    } catch (err) {
      this.failed = true;
      throw err;
    }
  }

  private parse(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.state === State.HEADER) {
        let length: number;
        const need = this.headFill === 0 ? headerLength(chunk, at) : 0;
        if (need !== 0 && chunk.length - at >= need) {
          length = this.readHeader(chunk, at);
          at += need;
        } else {
          // A header split over reads: gather it first.
          at = this.gatherHeader(chunk, at);
          if (at < 0) return;
          length = this.readHeader(this.head, 0);
          this.headFill = 0;
        }
        if (chunk.length - at >= length) {
          // The whole payload is in this read: a view of it.
          const view = chunk.subarray(at, at + length);
          at += length;
          this.complete(view);
          continue;
        }
        this.payload = length >= 4096 ? Buffer.allocUnsafeSlow(length) : Buffer.allocUnsafe(length);
        this.payloadFill = 0;
        this.state = State.PAYLOAD;
      }
      const payload = this.payload!;
      const n = Math.min(payload.length - this.payloadFill, chunk.length - at);
      chunk.copy(payload, this.payloadFill, at, at + n);
      this.payloadFill += n;
      at += n;
      if (this.payloadFill === payload.length) {
        this.payload = null;
        this.state = State.HEADER;
        this.complete(payload);
      }
    }
  }

  /** Copies header bytes from `chunk` until the header is whole; returns where it ended, or -1 (need more). */
  private gatherHeader(chunk: Buffer, at: number): number {
    let target = this.headFill < 2 ? 2 : headerLength(this.head, 0, this.headFill);
    while (this.headFill < target) {
      if (at >= chunk.length) return -1;
      const n = Math.min(target - this.headFill, chunk.length - at);
      chunk.copy(this.head, this.headFill, at, at + n);
      this.headFill += n;
      at += n;
      if (this.headFill >= 2) target = headerLength(this.head, 0, this.headFill);
    }
    return at;
  }

  /** Reads and checks a complete header at `at`; returns the payload length. */
  private readHeader(b: Buffer, at: number): number {
    const b0 = b[at];
    const b1 = b[at + 1];
    if (b0 & 0x70) throw new WsProtocolError(WsClose.PROTOCOL_ERROR, 'RSV bits set without a negotiated extension');
    this.fin = (b0 & 0x80) !== 0;
    this.opcode = b0 & 0x0f;
    const masked = (b1 & 0x80) !== 0;
    if (masked !== this.opts.expectMasked) {
      throw new WsProtocolError(WsClose.PROTOCOL_ERROR, masked ? 'a server frame must not be masked' : 'a client frame must be masked');
    }
    let length = b1 & 0x7f;
    let pos = at + 2;
    if (length === 126) {
      length = b.readUInt16BE(pos);
      pos += 2;
    } else if (length === 127) {
      const big = b.readBigUInt64BE(pos);
      if (big > BigInt(Number.MAX_SAFE_INTEGER)) throw new WsProtocolError(WsClose.TOO_BIG, 'frame length out of range');
      length = Number(big);
      pos += 8;
    }
    if (masked) {
      const key = b.subarray(pos, pos + 4);
      this.mask = key[0] | key[1] | key[2] | key[3] ? Buffer.from(key) : null;
    } else {
      this.mask = null;
    }
    const op = this.opcode;
    if (op >= 0x8) {
      if (op !== Opcode.CLOSE && op !== Opcode.PING && op !== Opcode.PONG) throw new WsProtocolError(WsClose.PROTOCOL_ERROR, `unknown control opcode ${op}`);
      if (!this.fin) throw new WsProtocolError(WsClose.PROTOCOL_ERROR, 'a control frame must not be fragmented');
      if (length > 125) throw new WsProtocolError(WsClose.PROTOCOL_ERROR, 'a control frame holds at most 125 bytes');
    } else if (op === Opcode.CONTINUATION) {
      if (!this.fragments.length && this.messageOpcode === 0) throw new WsProtocolError(WsClose.PROTOCOL_ERROR, 'continuation frame outside a fragmented message');
    } else if (op === Opcode.TEXT || op === Opcode.BINARY) {
      if (this.messageOpcode !== 0) throw new WsProtocolError(WsClose.PROTOCOL_ERROR, 'new message inside a fragmented one');
    } else {
      throw new WsProtocolError(WsClose.PROTOCOL_ERROR, `unknown opcode ${op}`);
    }
    if (op < 0x8 && this.fragmentedBytes + length > this.opts.maxPayload) {
      throw new WsProtocolError(WsClose.TOO_BIG, `message of over ${this.opts.maxPayload} bytes`);
    }
    return length;
  }

  private complete(payload: Buffer): void {
    if (this.mask) unmask(payload, this.mask);
    const op = this.opcode;
    if (op === Opcode.PING) return this.sink.ping(payload);
    if (op === Opcode.PONG) return this.sink.pong(payload);
    if (op === Opcode.CLOSE) {
      if (payload.length === 1) throw new WsProtocolError(WsClose.PROTOCOL_ERROR, 'close frame of 1 byte');
      const code = payload.length >= 2 ? payload.readUInt16BE(0) : WsClose.NO_STATUS;
      return this.sink.close(code, payload.subarray(2).toString());
    }
    if (op !== Opcode.CONTINUATION) this.messageOpcode = op;
    if (this.fin && this.fragments.length === 0) {
      this.messageOpcode = 0;
      return this.sink.message([payload], op === Opcode.BINARY);
    }
    this.fragments.push(payload);
    this.fragmentedBytes += payload.length;
    if (!this.fin) return;
    const fragments = this.fragments;
    const binary = this.messageOpcode === Opcode.BINARY;
    this.fragments = [];
    this.fragmentedBytes = 0;
    this.messageOpcode = 0;
    this.sink.message(fragments, binary);
  }
}

/** The length of the header starting at `at` when enough of it is there to tell, else 0. */
function headerLength(b: Buffer, at: number, end = b.length): number {
  if (end - at < 2) return 0;
  const b1 = b[at + 1];
  const len7 = b1 & 0x7f;
  return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (b1 & 0x80 ? 4 : 0);
}

/** XOR with a non-zero masking key, in place (a client other than a peer, e.g. a browser or `ws`). */
function unmask(data: Buffer, mask: Buffer): void {
  for (let i = 0; i < data.length; i++) data[i] ^= mask[i & 3];
}
