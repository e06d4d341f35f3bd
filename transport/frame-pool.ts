// Reusable buffers for large outgoing frames. A fresh 16 MiB buffer costs page faults on first touch
// and garbage collection after; a link that sends one large frame usually sends more of its size.
// A buffer goes back once the socket has taken its bytes (ws's send callback).

/** Idle buffers kept per pool: enough for a frame being written while the next one is encoded. */
const KEEP_IDLE = 2;

export class FramePool {
  private readonly idle: Buffer[] = [];
  private readonly mine = new WeakSet<ArrayBufferLike>();

  /** A buffer of exactly n bytes (a view of a pooled one, at most twice its size). */
  take(n: number): Buffer {
    const i = this.idle.findIndex((b) => b.length >= n && b.length <= 2 * n);
    const buf = i >= 0 ? this.idle.splice(i, 1)[0] : this.fresh(n);
    return buf.subarray(0, n);
  }

  /** Returns a frame from take() once nothing reads it any more; other buffers are ignored. */
  give(frame: Uint8Array): void {
    if (!this.mine.has(frame.buffer) || this.idle.length >= KEEP_IDLE) return;
    this.idle.push(Buffer.from(frame.buffer as ArrayBuffer));
  }

  private fresh(n: number): Buffer {
    const buf = Buffer.allocUnsafeSlow(n);
    this.mine.add(buf.buffer);
    return buf;
  }
}
