// What both ends of a link need to know: who we are (for the hello) and the link's limits and timings.
import type { HandshakeOptions } from './handshake.ts';
import type { LinkOptions } from './link.ts';

export type EndpointOptions = HandshakeOptions & LinkOptions;

/** ws options shared by server and client: no compression (tensors don't compress; it costs CPU), explicit size cap. */
export function wsOptions(opts: EndpointOptions) {
  return { perMessageDeflate: false, maxPayload: opts.maxPayloadBytes } as const;
}
