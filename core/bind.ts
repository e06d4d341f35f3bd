// Binding a port that is in use only for a moment. On one machine, peers dial each other's loopback
// ports while those are starting: a dial to a port nobody listens on yet can take that same port as its
// own local port and connect to itself (TCP self-connect), or an outgoing connection's ephemeral port can
// be the one a peer is about to listen on. Such a socket is gone within milliseconds, so a bind that finds
// its port in use tries again for a while; a port another process really holds is still reported.
import { isMeshError } from './errors.ts';

export async function bindRetrying(bind: () => Promise<void>, retryMs: number, pauseMs = 100): Promise<void> {
  const deadline = Date.now() + retryMs;
  for (;;) {
    try {
      return await bind();
    } catch (err) {
      if (!isMeshError(err) || err.code !== 'PORT_IN_USE' || Date.now() + pauseMs > deadline) throw err;
    }
    await new Promise((resolve) => setTimeout(resolve, pauseMs));
  }
}
