// A large WebSocket frame's payload, gathered into one buffer of its size as the socket's reads arrive.
// ws's receiver keeps every read (64 KiB each) until the whole payload is in, then copies them into one
// buffer: a 16 MiB tensor holds 256 reads long enough to survive young-generation collections, and
// freeing them takes full ones (measured: ~1.4 full collections per 16 MiB frame, against ~0 for a
// reader that copies each read as it comes). Here each read is copied into the payload's own buffer at
// once and dropped; ws then takes that buffer as it is (its consume() returns a buffer of exactly the
// length asked for without copying). Only frames of `minBytes` and more take this path.
//
// This reaches into ws's receiver (pinned: ws 8.23.0). install() checks the fields it relies on and
// leaves a receiver of any other shape untouched (slower, never wrong); a test fails when it is skipped.
import type { WebSocket } from 'ws';

/** ws/lib/receiver.js: the state in which the receiver waits for a frame's payload. */
const GET_DATA = 4;

interface WsReceiver {
  _state: number;
  _payloadLength: number;
  _bufferedBytes: number;
  _buffers: Buffer[];
  _write(chunk: Buffer, encoding: BufferEncoding, cb: (err?: Error | null) => void): void;
  startLoop(cb: (err?: Error | null) => void): void;
}

function isWsReceiver(r: unknown): r is WsReceiver {
  const o = r as Partial<WsReceiver> | undefined;
  return (
    !!o &&
    typeof o._state === 'number' &&
    typeof o._payloadLength === 'number' &&
    typeof o._bufferedBytes === 'number' &&
    Array.isArray(o._buffers) &&
    typeof o._write === 'function' &&
    typeof o.startLoop === 'function'
  );
}

/** Gathers payloads of `minBytes` and more on this socket's receiver; false when ws's shape is not known. */
export function gatherLargePayloads(ws: WebSocket, minBytes: number): boolean {
  const receiver = (ws as unknown as { _receiver?: unknown })._receiver;
  if (!isWsReceiver(receiver)) return false;
  const write = receiver._write;
  /** The payload being gathered and how much of it is in. */
  let into: Buffer | null = null;
  let filled = 0;
  receiver._write = function (chunk, encoding, cb) {
    if (this._state !== GET_DATA || this._payloadLength < minBytes) return write.call(this, chunk, encoding, cb);
    if (!into) {
      // What the receiver already holds is the start of this payload (it would have consumed it otherwise).
      into = Buffer.allocUnsafe(this._payloadLength);
      filled = 0;
      for (const b of this._buffers) filled += b.copy(into, filled);
      this._buffers = [];
      this._bufferedBytes = 0;
    }
    const take = Math.min(chunk.length, into.length - filled);
    filled += chunk.copy(into, filled, 0, take);
    if (filled < into.length) return cb();
    // Complete: hand ws the payload as one buffer, then whatever of the next frame this read held.
    this._buffers = take < chunk.length ? [into, chunk.subarray(take)] : [into];
    this._bufferedBytes = chunk.length - take + into.length;
    into = null;
    this.startLoop(cb);
  };
  return true;
}
