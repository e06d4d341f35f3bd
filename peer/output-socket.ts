// A connected pair of Unix sockets for a child's output: one end becomes the child's fd, the other is
// read here with `onread`, so each read lands where the frame reader asks (a large frame's own buffer)
// instead of in a fresh 64 KiB chunk that is copied and then collected. Node cannot create a socket
// pair directly: a one-shot listener in a private temporary directory (mode 0700) does it.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { FrameReader } from './frame-reader.ts';

export interface OutputSocket {
  /** Hand to spawn's stdio, then destroy() here once the child holds its copy. */
  childEnd: net.Socket;
  /** Our end: bytes go to the reader; 'close' once the child's end is closed everywhere. */
  reader: net.Socket;
}

/** `onError` gets what the reader throws (an oversize frame): reading stops then. */
export async function openOutputSocket(frames: FrameReader, onError: (err: Error) => void): Promise<OutputSocket> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlx-mesh-'));
  const server = net.createServer();
  try {
    const at = path.join(dir, 'out');
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(at, resolve));
    const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
    const reader = net.connect({
      path: at,
      onread: {
        buffer: () => frames.nextBuffer(),
        callback: (n: number) => {
          try {
            frames.filled(n);
            return true;
          } catch (err) {
            onError(err as Error);
            return false;
          }
        },
      },
    });
    reader.on('error', () => {}); // the child's exit is what callers hear about
    await new Promise<void>((resolve, reject) => reader.once('connect', resolve).once('error', reject));
    return { childEnd: await accepted, reader };
  } finally {
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
