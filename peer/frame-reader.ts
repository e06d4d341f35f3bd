// Length-prefixed frames (4-byte big-endian length, then the payload) out of a byte stream that
// arrives in arbitrary chunks. A frame inside one chunk is a view of it; a frame spread over chunks
// is copied once, as its bytes arrive, into a buffer allocated when its length is known.
// A socket can also read straight into the reader (net.Socket's `onread`): then the rest of a frame
// lands in the frame's own buffer, with no chunk allocated and nothing copied.
import { meshError } from '../core/errors.ts';

const HEADER_BYTES = 4;
/** Where reads land between frames: headers, small frames, the start of a large one. */
const SCRATCH_BYTES = 64 * 1024;

export class FrameReader {
  private readonly header = Buffer.alloc(HEADER_BYTES);
  private headerFill = 0;
  private frame: Buffer | null = null;
  private frameFill = 0;
  private scratch: Buffer | null = null;
  /** Whether the buffer nextBuffer() handed out last is the rest of `frame` (else the scratch). */
  private readingFrame = false;

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

  /**
   * Where the next read should land (onread's `buffer` function): the rest of the frame being
   * filled, or a scratch buffer. Pair each read with filled().
   */
  nextBuffer(): Buffer {
    this.readingFrame = this.frame !== null;
    if (this.frame) return this.frame.subarray(this.frameFill);
    this.scratch ??= Buffer.allocUnsafeSlow(SCRATCH_BYTES);
    return this.scratch;
  }

  /** n bytes were read into the buffer nextBuffer() returned last (onread's `callback`). */
  filled(n: number): void {
    if (!this.readingFrame) {
      // The scratch is read into again: what the frames in it keep must be a copy.
      this.push(Buffer.from(this.scratch!.subarray(0, n)));
      return;
    }
    const frame = this.frame!;
    this.frameFill += n;
    if (this.frameFill === frame.length) {
      this.frame = null;
      this.frameFill = 0;
      this.onFrame(frame);
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
