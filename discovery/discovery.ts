// The one shape every discovery source has, so the peer layer never cares where an address came from.
// A source only reports what it sees; whether a peer is alive is decided by the link heartbeat.
import type { EventEmitter } from 'node:events';

export interface DiscoveredPeer {
  /** Peer id from the mDNS TXT record; unknown for a `--peer` address until the handshake. */
  id?: string;
  cluster?: string;
  protocol?: number;
  host: string;
  port: number;
  source: 'mdns' | 'static';
}

/** Why a seen peer was not reported as 'peer' (doctor prints these). */
export type IgnoreReason = 'other-cluster' | 'other-protocol' | 'duplicate-id' | 'malformed';

export const IgnoreReasons: Record<IgnoreReason, string> = {
  'other-cluster': 'it announces another cluster name (--cluster)',
  'other-protocol': 'it speaks another protocol version (upgrade the older peer)',
  'duplicate-id': 'it announces our own peer id from another process (a copied data dir?)',
  'malformed': 'its mDNS record lacks a peer id, protocol version or port',
};

export interface IgnoredPeer {
  peer: DiscoveredPeer;
  reason: IgnoreReason;
}

export interface PeerDown {
  id: string;
}

/**
 * Events:
 * - 'peer' (DiscoveredPeer): a peer was seen, or its address or port changed.
 * - 'down' (PeerDown): an mDNS goodbye for a peer previously reported as 'peer'.
 * - 'ignored' (IgnoredPeer): a peer of another cluster or protocol version, or a clash of ids.
 * - 'error' (Error): fatal only (the mDNS socket could not be bound); the source has stopped working.
 *
 * start() and stop() are idempotent; stop() resolves once sockets are closed and goodbyes are sent.
 */
export interface Discovery extends EventEmitter {
  start(): Promise<void>;
  stop(): Promise<void>;
}
