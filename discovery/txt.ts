// What a peer puts in its mDNS TXT record, and how a browsed record becomes a peer, an ignored peer or
// ourselves. Pure functions, so the filtering rules are tested without sockets.
import net from 'node:net';
import type { DiscoveredPeer, IgnoreReason } from './discovery.ts';

export interface LocalAnnouncement {
  id: string;
  cluster: string;
  protocol: number;
  port: number;
  /** Random per process: tells our own echo apart from another process that copied our peer id. */
  instance: string;
  /** Bytes this peer offers for layers (its `--memory`), for tools that read TXT alone. */
  memory?: number;
}

/** The subset of a bonjour-service browsed service this module reads. */
export interface BrowsedService {
  port?: number;
  txt?: Record<string, unknown>;
  addresses?: string[];
  referer?: { address: string; family?: string };
}

export type Classified =
  | { kind: 'self' }
  | { kind: 'peer'; peer: DiscoveredPeer }
  | { kind: 'ignored'; reason: IgnoreReason; peer: DiscoveredPeer };

export function encodeTxt(self: LocalAnnouncement): Record<string, string> {
  return {
    id: self.id,
    cluster: self.cluster,
    proto: String(self.protocol),
    port: String(self.port),
    inst: self.instance,
    ...(self.memory ? { mem: String(self.memory) } : {}),
  };
}

/** DNS-SD TXT keys are case-insensitive; values arrive as strings (or undefined when empty). */
function readTxt(txt: Record<string, unknown> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(txt ?? {})) if (typeof v === 'string') out[k.toLowerCase()] = v;
  return out;
}

function validPort(value: unknown): number | undefined {
  const port = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  return typeof port === 'number' && Number.isInteger(port) && port > 0 && port <= 65535 ? port : undefined;
}

/**
 * The packet's source address is what actually reached us, so it wins over the advertised A records
 * (a publisher lists every NIC it has, including ones we cannot route to).
 */
export function pickHost(service: BrowsedService): string | undefined {
  const referer = service.referer?.address;
  if (referer && net.isIPv4(referer)) return referer;
  return (service.addresses ?? []).find((a) => net.isIPv4(a)) ?? referer;
}

export function classifyService(service: BrowsedService, self: LocalAnnouncement): Classified {
  const txt = readTxt(service.txt);
  const protocol = /^\d+$/.test(txt.proto ?? '') ? Number(txt.proto) : undefined;
  const peer: DiscoveredPeer = {
    id: txt.id,
    cluster: txt.cluster,
    protocol,
    host: pickHost(service) ?? '',
    // SRV carries the port; the TXT copy only helps tools that read TXT alone.
    port: validPort(service.port) ?? validPort(txt.port) ?? 0,
    source: 'mdns',
  };
  if (peer.id === self.id) {
    if (txt.inst === undefined || txt.inst === self.instance) return { kind: 'self' };
    return { kind: 'ignored', reason: 'duplicate-id', peer };
  }
  if (!peer.id || peer.cluster === undefined || protocol === undefined || !peer.port || !peer.host) {
    return { kind: 'ignored', reason: 'malformed', peer };
  }
  if (peer.cluster !== self.cluster) return { kind: 'ignored', reason: 'other-cluster', peer };
  if (protocol !== self.protocol) return { kind: 'ignored', reason: 'other-protocol', peer };
  return { kind: 'peer', peer };
}
