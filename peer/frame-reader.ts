// Length-prefixed frames (4-byte big-endian length, then the payload) out of a byte stream that
// arrives in arbitrary chunks. A frame inside one chunk is a view of it; a frame spread over chunks
// is copied once, as its bytes arrive, into a buffer allocated when its length is known.
import { meshError } from '../core/errors.ts';

const HEADER_BYTES = 4;

export class FrameReader {
  private readonly header = Buffer.alloc(HEADER_BYTES);
  private headerFill = 0;
  private frame: Buffer | null = null;
  private frameFill = 0;

  constructor(
    private readonly maxBytes: number,
    private readonly onFrame: (frame: Buffer) => void,
  ) {}

  /** Bytes of a frame received so far: a stream that ends with this non-zero was cut mid-frame. */
  get partialBytes(): number {
    return this.frame ? HEADER_BYTES + this.frameFill : this.headerFill;
  }

  /** Feeds one chunk; calls onFrame for each frame it completes. Throws FRAME_TOO_LARGE on an oversize length. */
  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.frame === null) {
        if (this.headerFill === 0 && chunk.length - at >= HEADER_BYTES) {
          const length = this.checkLength(chunk.readUInt32BE(at));
          at += HEADER_BYTES;
          if (chunk.length - at >= length) {
            this.onFrame(chunk.subarray(at, at + length));
            at += length;
            continue;
          }
          this.begin(length);
        } else {
          const n = Math.min(HEADER_BYTES - this.headerFill, chunk.length - at);
          chunk.copy(this.header, this.headerFill, at, at + n);
          this.headerFill += n;
          at += n;
          if (this.headerFill < HEADER_BYTES) return;
          this.headerFill = 0;
          this.begin(this.checkLength(this.header.readUInt32BE(0)));
        }
      }
      const frame = this.frame!;
      const n = Math.min(frame.length - this.frameFill, chunk.length - at);
      chunk.copy(frame, this.frameFill, at, at + n);
      this.frameFill += n;
      at += n;
      if (this.frameFill === frame.length) {
        this.frame = null;
        this.frameFill = 0;
        this.onFrame(frame);
      }
    }
  }

  private checkLength(length: number): number {
    if (length > this.maxBytes) {
      throw meshError('FRAME_TOO_LARGE', `frame of ${length} bytes exceeds the limit of ${this.maxBytes}`);
    }
    return length;
  }

  private begin(length: number): void {
    // Large frames get their own memory rather than a slice of Node's shared pool.
    this.frame = length >= 4096 ? Buffer.allocUnsafeSlow(length) : Buffer.allocUnsafe(length);
    this.frameFill = 0;
  }
}
