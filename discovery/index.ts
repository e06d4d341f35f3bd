// Public surface of discovery/: the peer layer imports from here only.
export type { DiscoveredPeer, Discovery, IgnoredPeer, IgnoreReason, PeerDown } from './discovery.ts';
export { IgnoreReasons } from './discovery.ts';
export { StaticDiscovery, parsePeerAddress, type PeerAddress, type StaticDiscoveryOptions } from './static.ts';
export { MdnsDiscovery, type MdnsDiscoveryOptions } from './mdns.ts';
export { CombinedDiscovery, createDiscovery, type DiscoveryOptions } from './combined.ts';
export { classifyService, encodeTxt, pickHost } from './txt.ts';
