// Keeps a link to every address we were told about (--peer, mDNS, gossip): dials, and redials with
// backoff when the link drops, but only while no link to that peer exists already.
import { backoffDelay } from '../transport/backoff.ts';
import { dial } from '../transport/dialer.ts';
import type { EndpointOptions } from '../transport/endpoint.ts';
import { isMeshError, type MeshError } from '../core/errors.ts';
import type { Link } from '../transport/link.ts';
import type { Logger } from '../core/log.ts';

export interface Target {
  host: string;
  port: number;
  /** The peer id behind this address, once known (from mDNS, gossip or a handshake). */
  id?: string;
  source: 'static' | 'mdns' | 'gossip';
  attempt: number;
  lastError?: string;
  timer?: NodeJS.Timeout;
  dialing: boolean;
  /** Set when the address turned out to be ourselves: never dialled again. */
  self?: boolean;
}

export interface ConnectorOptions {
  endpoint: EndpointOptions;
  backoffMinMs: number;
  backoffMaxMs: number;
  isLinked: (id: string) => boolean;
  onLink: (link: Link, target: Target) => void;
  onRefused: (err: MeshError, target: Target) => void;
  log: Logger;
}

export class Connector {
  private readonly targets = new Map<string, Target>();
  private stopped = false;

  constructor(private readonly opts: ConnectorOptions) {}

  add(host: string, port: number, source: Target['source'], id?: string): void {
    const key = `${host}:${port}`;
    const existing = this.targets.get(key);
    if (existing) {
      if (id && !existing.id) existing.id = id;
      return;
    }
    const target: Target = { host, port, id, source, attempt: 0, dialing: false };
    this.targets.set(key, target);
    this.schedule(target, 0);
  }

  /** A peer's link went down: try its addresses again soon. */
  poke(id: string): void {
    for (const t of this.targets.values()) {
      if (t.id === id && !t.dialing && !t.self) {
        t.attempt = 0;
        this.schedule(t, backoffDelay(0, this.opts.backoffMinMs, this.opts.backoffMaxMs));
      }
    }
  }

  list(): Target[] {
    return [...this.targets.values()];
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.targets.values()) if (t.timer) clearTimeout(t.timer);
  }

  private schedule(target: Target, delayMs: number): void {
    if (this.stopped || target.self) return;
    if (target.timer) clearTimeout(target.timer);
    target.timer = setTimeout(() => void this.attempt(target), delayMs);
  }

  private async attempt(target: Target): Promise<void> {
    target.timer = undefined;
    if (this.stopped || target.dialing) return;
    if (target.id && this.opts.isLinked(target.id)) return; // poke() brings us back when it drops
    target.dialing = true;
    try {
      const link = await dial(target.host, target.port, this.opts.endpoint);
      target.dialing = false;
      if (this.stopped) return link.close(1001, 'stopping');
      target.id = link.remote.id;
      target.attempt = 0;
      target.lastError = undefined;
      this.opts.onLink(link, target);
    } catch (err) {
      target.dialing = false;
      target.lastError = (err as Error).message;
      if (isMeshError(err, 'SELF_CONNECTION')) {
        target.self = true;
        return;
      }
      if (isMeshError(err) && err.code !== 'PEER_UNREACHABLE' && err.code !== 'LINK_CLOSED') this.opts.onRefused(err, target);
      else this.opts.log.debug('dial failed', { target: `${target.host}:${target.port}`, error: target.lastError });
      target.attempt++;
      this.schedule(target, backoffDelay(target.attempt, this.opts.backoffMinMs, this.opts.backoffMaxMs));
    }
  }
}
