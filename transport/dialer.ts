// Opens a link to host:port: connect, handshake, hand back the Link (or a MeshError saying why not).
import type { Duplex } from 'node:stream';
import WebSocket from 'ws';
import { type EndpointOptions, wsOptions } from './endpoint.ts';
import { isMeshError, meshError } from '../core/errors.ts';
import { handshake, type HandshakeResult } from './handshake.ts';
import { Link } from './link.ts';
import { Wire } from './wire.ts';

export function peerUrl(host: string, port: number): string {
  return `ws://${host.includes(':') ? `[${host}]` : host}:${port}/`;
}

export async function dial(host: string, port: number, opts: EndpointOptions): Promise<Link> {
  let wire: Wire | undefined;
  try {
    const hs = await new Promise<HandshakeResult>((resolve, reject) => {
      // ws does the upgrade; then the socket is ours (transport/wire.ts).
      const ws = new WebSocket(peerUrl(host, port), { ...wsOptions(opts), handshakeTimeout: opts.timeoutMs });
      let socket: Duplex | undefined;
      ws.once('upgrade', (res) => (socket = res.socket));
      ws.once('open', () => {
        try {
          wire = Wire.takeOver(ws, socket!, 'client', opts.maxPayloadBytes);
        } catch (err) {
          ws.terminate();
          reject(meshError('PEER_UNREACHABLE', (err as Error).message));
          return;
        }
        // At once: the other side's hello may have come with the upgrade response and is read next tick.
        handshake(wire, opts).then(resolve, reject);
      });
      ws.once('error', (err) => {
        ws.terminate();
        reject(meshError('PEER_UNREACHABLE', `cannot reach ${host}:${port}: ${err.message}`));
      });
    });
    return new Link(wire!, hs, 'out', host, opts);
  } catch (err) {
    wire?.terminate();
    throw isMeshError(err) ? err : meshError('PEER_UNREACHABLE', String(err));
  }
}
