// Opens a link to host:port: connect, handshake, hand back the Link (or a MeshError saying why not).
import WebSocket from 'ws';
import { type EndpointOptions, wsOptions } from './endpoint.ts';
import { isMeshError, meshError } from '../core/errors.ts';
import { handshake } from './handshake.ts';
import { Link } from './link.ts';

export function peerUrl(host: string, port: number): string {
  return `ws://${host.includes(':') ? `[${host}]` : host}:${port}/`;
}

/**
 * An all-zero masking key: ws then skips XOR-ing every byte on both ends (a 16 MiB tensor at a few
 * hundred MB/s in JS). Masking protects HTTP proxies from script-chosen bytes in browsers; peer links
 * carry no browser traffic, and the frames stay valid RFC 6455 frames any server accepts.
 */
function zeroMask(mask: Uint8Array): void {
  mask.fill(0);
}

export async function dial(host: string, port: number, opts: EndpointOptions): Promise<Link> {
  const ws = new WebSocket(peerUrl(host, port), { ...wsOptions(opts), handshakeTimeout: opts.timeoutMs, generateMask: zeroMask });
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
