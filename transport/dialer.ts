// Opens a link to host:port: connect, handshake, hand back the Link (or a MeshError saying why not).
import WebSocket from 'ws';
import { type EndpointOptions, wsOptions } from './endpoint.ts';
import { isMeshError, meshError } from '../core/errors.ts';
import { handshake } from './handshake.ts';
import { Link } from './link.ts';

export function peerUrl(host: string, port: number): string {
  return `ws://${host.includes(':') ? `[${host}]` : host}:${port}/`;
}

export async function dial(host: string, port: number, opts: EndpointOptions): Promise<Link> {
  const ws = new WebSocket(peerUrl(host, port), { ...wsOptions(opts), handshakeTimeout: opts.timeoutMs });
  try {
    const hs = await handshake(ws, opts);
    return new Link(ws, hs, 'out', host, opts);
  } catch (err) {
    ws.terminate();
    if (isMeshError(err, 'PEER_UNREACHABLE')) {
      throw meshError('PEER_UNREACHABLE', `cannot reach ${host}:${port}: ${err.message}`);
    }
    throw isMeshError(err) ? err : meshError('PEER_UNREACHABLE', String(err));
  }
}
