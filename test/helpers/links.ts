// Links on 127.0.0.1 for transport tests: endpoint options for a test peer, and a LinkServer that
// collects its inbound links and refusals and is stopped after the test body.
import type { MeshError } from '../../core/errors.ts';
import { PROTOCOL_VERSION } from '../../core/defaults.ts';
import { createLogger } from '../../core/log.ts';
import type { EndpointOptions } from '../../transport/endpoint.ts';
import type { Link } from '../../transport/link.ts';
import type { PeerInfo } from '../../transport/messages.ts';
import { LinkServer } from '../../transport/server.ts';

export function info(id: string): PeerInfo {
  return {
    id,
    name: id,
    hostname: 'test',
    startedAt: 1,
    port: 0,
    apiPort: 0,
    addresses: [],
    capabilities: { platform: 'linux', arch: 'x64', totalMemory: 1, freeMemory: 1 },
  };
}

export function endpoint(id: string, over: Partial<EndpointOptions> = {}): EndpointOptions {
  return {
    protocol: PROTOCOL_VERSION,
    cluster: 'c',
    instance: `${id}-instance`,
    self: () => info(id),
    timeoutMs: 1000,
    maxPayloadBytes: 1 << 20,
    sendWindow: 4,
    heartbeatMs: 100,
    heartbeatMisses: 3,
    logger: createLogger('link-test'),
    ...over,
  };
}

export async function withServer(
  over: Partial<EndpointOptions>,
  fn: (server: LinkServer, port: number, inbound: Link[], refused: MeshError[]) => Promise<void>,
) {
  const server = new LinkServer({ ...endpoint('server', over), host: '127.0.0.1', port: 0 });
  const inbound: Link[] = [];
  const refused: MeshError[] = [];
  server.on('link', (l) => {
    l.start();
    inbound.push(l);
  });
  server.on('refused', (e) => refused.push(e));
  await server.start();
  try {
    await fn(server, server.port, inbound, refused);
  } finally {
    for (const l of inbound) l.terminate();
    await server.stop();
  }
}
