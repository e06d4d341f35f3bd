// One WebSocket connection's data path, on its TCP socket: messages in and out as RFC 6455 frames
// (transport/ws-frame.ts), pings answered, the close handshake. `ws` does the HTTP upgrade (and
// everything about it: headers, Sec-WebSocket-Accept, timeouts); the moment it reports the socket open
// we detach it and read and write the socket here.
//
// Why not `ws` for the frames too: its receiver is a Writable stream that keeps every read until a frame
// completes and then joins them, and its sender queues; per message that machinery cost more than the
// socket itself (8 KiB ping-pong 0.018 ms against 0.0095 for raw TCP) and a 16 MiB frame ~4 ms of CPU.
// Here a frame inside one read is a view of it, a larger one is copied once into its own buffer as the
// reads come, and a message goes out as [header, its parts] in one write, its tensor from its own memory.
// The bytes on the wire are the same WebSocket frames: any WebSocket client or server talks to a peer.
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type WebSocket from 'ws';
import { closePayload, frameHeader, headerSize, Opcode, writeFrameHeader, WsClose, WsFrameParser, WsProtocolError } from './ws-frame.ts';

/** Spare bytes in front of a message that always hold its frame header (2 + 8 length + 4 mask). */
export const FRAME_HEADROOM = 14;

export interface WireEvents {
  /** A data message: its payload as the fragments it came in (usually one buffer). */
  message: [Buffer[], boolean];
  pong: [];
  /** A frame broke RFC 6455 or the size limit: the wire is closing with `closeCode`. */
  violation: [WsProtocolError];
  /** Exactly once: the code the other side closed with (1006 when the socket just ended). */
  close: [number, string];
}

/** The listeners ws's setSocket() puts on the socket: removed when a Wire takes it over. */
const WS_SOCKET_LISTENERS = [['close', 'socketOnClose'], ['data', 'socketOnData'], ['end', 'socketOnEnd'], ['error', 'socketOnError']] as const;

const EMPTY = Buffer.alloc(0);

/** How long a close waits for the other side's close frame before cutting the socket. */
const CLOSE_WAIT_MS = 1000;

export class Wire extends EventEmitter<WireEvents> {
  private readonly parser: WsFrameParser;
  /** Whether our frames are masked: a client's are (RFC 6455 §5.3), with a zero key. */
  private readonly masked: boolean;
  private closeSent = false;
  private closed = false;
  /** The close frame that came from the other side, if any. */
  private received: [number, string] | null = null;
  /**
   * Where data messages go once set (a link's one reader): called directly, not through an event,
   * which on a token step cost as much as the rest of the frame's handling. Unset, 'message' is emitted.
   */
  onMessage: ((fragments: Buffer[], binary: boolean) => void) | null = null;
  /** A pong not yet flushed to the socket: pings arriving meanwhile get none (see pong()). */
  private pongPending = false;

  /**
   * Takes `socket` over from `ws`: call it synchronously in ws's 'open' (client) or the server's
   * 'connection' handler, before any frame was read (ws attaches its reader then; reads start a tick later).
   */
  static takeOver(ws: WebSocket, socket: Duplex, side: 'client' | 'server', maxPayload: number): Wire {
    for (const [event, name] of WS_SOCKET_LISTENERS) {
      const listener = socket.listeners(event).find((f) => f.name === name);
      // ws 8.23.0 (pinned) attaches these four in setSocket(); without them it has another shape.
      if (!listener) throw new Error(`ws's socket listener ${name} is missing: the installed ws is not the pinned one`);
      socket.removeListener(event, listener as (...args: unknown[]) => void);
    }
    // ws never hears from this socket again; nothing of it must surface.
    ws.removeAllListeners();
    ws.on('error', () => {});
    return new Wire(socket as Socket, side, maxPayload);
  }

  constructor(
    readonly socket: Socket,
    side: 'client' | 'server',
    maxPayload: number,
  ) {
    super();
    this.masked = side === 'client';
    this.parser = new WsFrameParser(
      { maxPayload, expectMasked: side === 'server' },
      {
        message: (fragments, binary) => (this.onMessage ? this.onMessage(fragments, binary) : this.emit('message', fragments, binary)),
        ping: (payload) => this.pong(payload),
        pong: () => this.emit('pong'),
        close: (code, reason) => this.onCloseFrame(code, reason),
      },
    );
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      try {
        this.parser.push(chunk);
      } catch (err) {
        const e = err instanceof WsProtocolError ? err : new WsProtocolError(WsClose.PROTOCOL_ERROR, String(err));
        this.emit('violation', e);
        this.close(e.closeCode, e.message);
        // Nothing more is read from a socket that broke the protocol (a huge frame is not drained).
        socket.pause();
        socket.end();
      }
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.finish());
    socket.on('end', () => socket.end());
    // An upgraded client socket can be left paused by the HTTP client: read it from now on.
    socket.resume();
  }

  /** The largest data message accepted from now on (a stranger's is small until its handshake passes). */
  set maxPayload(bytes: number) {
    this.parser.opts.maxPayload = bytes;
  }

  get isOpen(): boolean {
    return !this.closeSent && !this.closed;
  }

  /**
   * Sends one binary message made of `parts` (written back to back, not copied). `headroom` spare bytes
   * in front of the first part (FRAME_HEADROOM is enough) take the frame's header. Returns true when the
   * socket took every byte at once: they are in the kernel, and the parts' memory may change. False when
   * some wait in the socket's buffer (or the wire is closed): `flushed()` says when they are gone.
   */
  send(parts: readonly Uint8Array[], headroom = 0): boolean {
    const s = this.socket;
    if (!this.isOpen || s.destroyed) return false;
    let length = -headroom;
    for (const p of parts) length += p.byteLength;
    if (headroom === 0) {
      s.cork();
      s.write(frameHeader(Opcode.BINARY, length, this.masked));
      for (const p of parts) s.write(p);
      s.uncork();
    } else {
      // The header goes in the spare bytes in front of the first part: one buffer less to write.
      const size = headerSize(length, this.masked);
      if (headroom < size) throw new RangeError(`${headroom} spare bytes cannot hold a ${size}-byte frame header`);
      const first = parts[0];
      writeFrameHeader(first, headroom - size, Opcode.BINARY, length, this.masked);
      const head = first.subarray(headroom - size);
      if (parts.length === 1) s.write(head);
      else {
        s.cork();
        s.write(head);
        for (let i = 1; i < parts.length; i++) s.write(parts[i]);
        s.uncork();
      }
    }
    // No write callback: Node would defer it a tick even when the write was done at once, and on a
    // token step that bookkeeping cost more than the frame (8 KiB ping-pong 15.8 → 14.7 µs).
    return s.writableLength === 0 && !s.destroyed;
  }

  /** Calls `done` once every byte sent so far has gone to the kernel, with an error if it cannot. */
  flushed(done: (err?: Error | null) => void): void {
    if (!this.isOpen || this.socket.destroyed) {
      done(new Error('the socket is closing'));
      return;
    }
    // Writes complete in order: an empty one's callback comes after every byte before it.
    this.socket.write(EMPTY, done);
  }

  ping(): void {
    this.control(Opcode.PING, Buffer.alloc(0));
  }

  /** Starts the close handshake; the socket is cut if the other side does not answer in time. */
  close(code: number = WsClose.NORMAL, reason = ''): void {
    if (this.closed) return;
    if (!this.closeSent) {
      this.control(Opcode.CLOSE, closePayload(code, reason));
      this.closeSent = true;
    }
    if (this.received) this.socket.end();
    setTimeout(() => this.socket.destroy(), CLOSE_WAIT_MS).unref();
  }

  /** Cuts the socket at once. */
  terminate(): void {
    this.socket.destroy();
  }

  private control(opcode: number, payload: Buffer, done?: () => void): void {
    if (this.closeSent || this.closed || this.socket.destroyed) return;
    this.socket.write(Buffer.concat([frameHeader(opcode, payload.length, this.masked), payload]), done);
  }

  /**
   * Answers a ping, at most one pong in flight: a socket that floods pings and never reads would
   * otherwise fill this process's memory with queued pongs. A heartbeat's ping (one a second) always
   * finds the last pong flushed.
   */
  private pong(payload: Buffer): void {
    if (this.pongPending) return;
    this.pongPending = true;
    this.control(Opcode.PONG, payload, () => (this.pongPending = false));
  }

  private onCloseFrame(code: number, reason: string): void {
    this.received = [code, reason];
    // Answer with the same code (RFC 6455 §5.5.1), then end our side.
    if (!this.closeSent) {
      this.control(Opcode.CLOSE, code === WsClose.NO_STATUS ? Buffer.alloc(0) : closePayload(code, ''));
      this.closeSent = true;
    }
    this.socket.end();
    setTimeout(() => this.socket.destroy(), CLOSE_WAIT_MS).unref();
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    const [code, reason] = this.received ?? [WsClose.ABNORMAL, ''];
    this.emit('close', code, reason);
  }
}
