// One WebSocket between two peers after the handshake: validated messages in, windowed sends out,
// a ping/pong heartbeat that measures RTT and declares the link dead after a few missed beats.
// Every path (close, terminate, socket error, heartbeat timeout, bad frame) emits exactly one 'close'.
import { EventEmitter } from 'node:events';
import { decodeMessage, encodeMessageFragments } from './codec.ts';
import { CloseCode } from './close-codes.ts';
import { isMeshError, meshError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { CLOSE_FOR, type HandshakeResult } from './handshake.ts';
import type { ErrorCode } from '../core/errors.ts';
import type { Message, PeerInfo } from './messages.ts';
import { FRAME_HEADROOM, type Wire } from './wire.ts';

const DONE = Promise.resolve();

export interface LinkOptions {
  maxPayloadBytes: number;
  sendWindow: number;
  heartbeatMs: number;
  heartbeatMisses: number;
  logger: Logger;
}

export interface LinkClose {
  code: number;
  reason: string;
}

export interface LinkEvents {
  message: [Message];
  close: [LinkClose];
}

export class Link extends EventEmitter<LinkEvents> {
  readonly remote: PeerInfo;
  /** Who opened the socket: 'out' when we dialled. The tie-break for duplicate links needs it. */
  readonly direction: 'in' | 'out';
  readonly remoteInstance: string;
  /** 'bench' when the other side is `mlx-mesh bench transport`, not a peer. */
  readonly remoteRole: 'peer' | 'bench';
  /** The address we see the other side at: what we tell others to dial. */
  readonly remoteHost: string;
  readonly openedAt = Date.now();
  rttMs: number | null = null;

  private readonly wire: Wire;
  private readonly opts: LinkOptions;
  private inFlight = 0;
  private waiters: Array<() => void> = [];
  private missed = 0;
  private pingSentAt = 0;
  /** When the other side last showed it is alive (a pong or a frame). */
  private heardAt = performance.now();
  private heartbeat: NodeJS.Timeout | null = null;
  private closed: LinkClose | null = null;
  /** Frames held until the owner has attached its listeners and called start(). */
  private held: Array<[Buffer[], boolean]> | null;

  constructor(wire: Wire, hs: HandshakeResult, direction: 'in' | 'out', remoteHost: string, opts: LinkOptions) {
    super();
    this.remoteHost = remoteHost;
    this.wire = wire;
    this.remote = hs.remote;
    this.remoteInstance = hs.instance;
    this.remoteRole = hs.role;
    this.direction = direction;
    this.opts = opts;
    this.held = hs.pending.map((f) => [f, true]);
    const remote = hs.remote;
    wire.onMessage = (data, isBinary) => {
      if (this.held) this.held.push([data, isBinary]);
      else this.onFrame(data, isBinary);
    };
    wire.on('pong', () => this.onPong());
    wire.on('violation', (err) => {
      this.opts.logger.warn('closing link after an invalid frame', { peer: remote.id, reason: err.message });
    });
    wire.on('close', (code, reason) => this.finish({ code, reason }));
    this.heartbeat = setInterval(() => this.beat(), opts.heartbeatMs);
    this.heartbeat.unref();
  }

  /** Starts delivering 'message' events, first the frames that arrived since the handshake. */
  start(): void {
    const held = this.held;
    if (!held) return;
    this.held = null;
    for (const [frame, isBinary] of held) this.onFrame(frame, isBinary);
  }

  get isOpen(): boolean {
    return this.closed === null;
  }

  /**
   * Sends one message; waits while the window of unacknowledged socket writes is full. Frames go out
   * in call order: a freed slot is handed to the oldest waiter, never taken by a later caller.
   * A tensor goes to the socket from its own memory: its bytes must not change until this resolves.
   */
  send(msg: Message): Promise<void> {
    if (this.closed) return Promise.reject(this.closedError());
    let parts: Uint8Array[];
    try {
      parts = encodeMessageFragments(msg, FRAME_HEADROOM);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.inFlight < this.opts.sendWindow && this.waiters.length === 0) {
      this.inFlight++;
      return this.write(parts);
    }
    return new Promise<void>((resolve) => this.waiters.push(resolve)).then(() => {
      if (this.closed) throw this.closedError();
      return this.write(parts);
    });
  }

  /**
   * Sends one message nobody waits for (a reply, a gossip): as send(), but a frame the socket takes at
   * once costs no promise reaction. A send fails only on a closing link, which its 'close' reports.
   */
  post(msg: Message): void {
    const sent = this.send(msg);
    if (sent !== DONE) sent.catch(() => {});
  }

  /** Writes one frame in a slot of the window already taken; frees the slot (or hands it on) when done. */
  private write(parts: Uint8Array[]): Promise<void> {
    // Usually the socket takes the frame at once: the send is done, with no callback and no new promise.
    if (this.wire.send(parts, FRAME_HEADROOM)) {
      this.release();
      return DONE;
    }
    return new Promise((resolve, reject) => {
      this.wire.flushed((err) => {
        this.release();
        if (err) reject(meshError('LINK_CLOSED', `send to ${this.remote.id} failed: ${err.message}`));
        else resolve();
      });
    });
  }

  /** A slot of the send window is free: the oldest waiter takes it. */
  private release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.inFlight--;
  }

  private closedError() {
    return meshError('LINK_CLOSED', `link to ${this.remote.id} is closed (${this.closed?.reason})`);
  }

  close(code: number = CloseCode.NORMAL, reason = 'closing'): void {
    if (this.closed) return;
    // A peer that never answers the close handshake is cut off (after a second).
    this.wire.close(code, reason.slice(0, 120));
    this.finish({ code, reason });
  }

  terminate(reason = 'terminated'): void {
    if (this.closed) return;
    this.wire.terminate();
    this.finish({ code: CloseCode.GOING_AWAY, reason });
  }

  private onFrame(data: Buffer[], isBinary: boolean): void {
    if (this.closed) return;
    let msg: Message;
    try {
      if (!isBinary) throw meshError('BAD_FRAME', 'text frames are not allowed');
      msg = decodeMessage(data, this.opts.maxPayloadBytes);
    } catch (err) {
      const code = isMeshError(err) ? err.code : 'BAD_FRAME';
      const why = `${code}: ${(err as Error).message}`;
      this.opts.logger.warn('closing link after an invalid frame', { peer: this.remote.id, reason: why });
      this.close(code === 'FRAME_TOO_LARGE' ? CloseCode.TOO_BIG : CloseCode.POLICY, why);
      return;
    }
    this.heardAt = performance.now();
    if (msg.type === 'reject') {
      // The other side refused this link after its handshake (e.g. DUPLICATE_ID): close with its code.
      const code = CLOSE_FOR[msg.code as ErrorCode] ?? CloseCode.POLICY;
      this.close(code, `refused by the other side: ${msg.message}`);
      return;
    }
    this.emit('message', msg);
  }

  /** Milliseconds since the other side last showed it is alive. */
  get silentForMs(): number {
    return performance.now() - this.heardAt;
  }

  private beat(): void {
    if (this.missed >= this.opts.heartbeatMisses) {
      this.opts.logger.warn('link missed heartbeats', { peer: this.remote.id, missed: this.missed });
      this.wire.terminate();
      this.finish({ code: CloseCode.HEARTBEAT_TIMEOUT, reason: `missed ${this.missed} heartbeats` });
      return;
    }
    this.missed++;
    this.pingSentAt = performance.now();
    this.wire.ping();
  }

  private onPong(): void {
    this.missed = 0;
    this.heardAt = performance.now();
    if (this.pingSentAt) this.rttMs = Math.round((performance.now() - this.pingSentAt) * 100) / 100;
  }

  private finish(info: LinkClose): void {
    if (this.closed) return;
    this.closed = info;
    if (this.heartbeat) clearInterval(this.heartbeat);
    for (const wake of this.waiters.splice(0)) wake();
    this.emit('close', info);
  }
}
