// Accepts links: a ws server that runs the handshake on every new socket and emits the resulting Link.
import { EventEmitter } from 'node:events';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { type EndpointOptions, wsOptions } from './endpoint.ts';
import { bindRetrying } from '../core/bind.ts';
import { defaults } from '../core/defaults.ts';
import { MeshError, meshError } from '../core/errors.ts';
import { CloseCode } from './close-codes.ts';
import { handshake } from './handshake.ts';
import { Link } from './link.ts';
import { Wire } from './wire.ts';

export interface LinkServerEvents {
  link: [Link];
  /** A socket whose handshake failed (wrong protocol or cluster, timeout, ourselves). */
  refused: [MeshError, string];
}

export class LinkServer extends EventEmitter<LinkServerEvents> {
  private wss: WebSocketServer | null = null;
  private starting: Promise<void> | null = null;
  private readonly wires = new Set<Wire>();

  /** Sockets per remote address that have not completed the handshake. */
  private readonly strangers = new Map<string, number>();

  constructor(
    private readonly opts: EndpointOptions & { host?: string; port: number; maxUnauthenticatedPerAddress?: number; bindRetryMs?: number },
  ) {
    super();
  }

  get port(): number {
    return (this.wss?.address() as AddressInfo | undefined)?.port ?? this.opts.port;
  }

  /** One attempt to listen; PORT_IN_USE when the port is taken. */
  private async listen(): Promise<void> {
    // ws does the upgrade; each socket is then a Wire of ours (transport/wire.ts), so ws tracks none.
    const wss = new WebSocketServer({ host: this.opts.host, port: this.opts.port, clientTracking: false, ...wsOptions(this.opts) });
    await new Promise<void>((resolve, reject) => {
      wss.once('listening', resolve);
      wss.once('error', (err: NodeJS.ErrnoException) => {
        wss.close();
        reject(
          err.code === 'EADDRINUSE'
            ? meshError('PORT_IN_USE', `peer port ${this.opts.port} is already in use: stop the other process or pass --port`)
            : err,
        );
      });
    });
    this.wss = wss;
    wss.on('connection', (ws, req) => {
      const from = unmapIPv4(req.socket.remoteAddress ?? '');
      let wire: Wire;
      try {
        wire = Wire.takeOver(ws, req.socket, 'server', this.opts.maxPayloadBytes);
      } catch (err) {
        ws.terminate();
        this.emit('refused', meshError('BAD_FRAME', (err as Error).message), from);
        return;
      }
      void this.accept(wire, from);
    });
  }

  async start(): Promise<void> {
    if (this.wss) return;
    this.starting ??= bindRetrying(() => this.listen(), this.opts.bindRetryMs ?? defaults.bindRetryMs).finally(() => (this.starting = null));
    await this.starting;
  }

  async stop(): Promise<void> {
    if (this.starting) await this.starting.catch(() => {});
    const wss = this.wss;
    if (!wss) return;
    this.wss = null;
    for (const wire of this.wires) wire.terminate();
    await new Promise<void>((resolve) => wss.close(() => resolve()));
  }

  private async accept(wire: Wire, from: string): Promise<void> {
    this.wires.add(wire);
    wire.once('close', () => this.wires.delete(wire));
    const cap = this.opts.maxUnauthenticatedPerAddress ?? defaults.maxUnauthenticatedPerAddress;
    const waiting = this.strangers.get(from) ?? 0;
    if (waiting >= cap) {
      wire.close(CloseCode.TRY_AGAIN, 'too many sockets from this address in their handshake');
      setTimeout(() => wire.terminate(), 500).unref();
      const err = meshError('TOO_MANY_HANDSHAKES', `${from} already holds ${waiting} sockets that have not completed the handshake`);
      this.emit('refused', err, from);
      return;
    }
    this.strangers.set(from, waiting + 1);
    try {
      const hs = await handshake(wire, this.opts);
      this.emit('link', new Link(wire, hs, 'in', from, this.opts));
    } catch (err) {
      this.emit('refused', err instanceof MeshError ? err : meshError('BAD_FRAME', String(err)), from);
    } finally {
      const left = (this.strangers.get(from) ?? 1) - 1;
      if (left > 0) this.strangers.set(from, left);
      else this.strangers.delete(from);
    }
  }
}

/** '::ffff:10.0.0.2' → '10.0.0.2': a dual-stack socket reports IPv4 peers in mapped form. */
function unmapIPv4(address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}
