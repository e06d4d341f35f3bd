// Peers given on the command line (`--peer host:port`, repeatable). They work with or without mDNS,
// e.g. across subnets where multicast does not reach. The peer id stays unknown until the handshake.
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { meshError } from '../core/errors.ts';
import type { DiscoveredPeer, Discovery } from './discovery.ts';

export interface PeerAddress {
  host: string;
  port: number;
}

export interface StaticDiscoveryOptions {
  /** Raw `--peer` values: `host`, `host:port` or `[ipv6]:port`. */
  peers: readonly string[];
  /** Port used when a value has none (the caller passes config's default peer port). */
  defaultPort: number;
}

const FORMS = 'expected host, host:port or [ipv6]:port, e.g. 192.168.1.20:50051';
const LABEL = '[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?';
const HOSTNAME = new RegExp(`^${LABEL}(?:\\.${LABEL})*\\.?$`);

function bad(value: string, why: string): never {
  throw meshError('BAD_ARGUMENT', `--peer "${value}": ${why}; ${FORMS}`, { value });
}

function parsePort(value: string, text: string): number {
  if (!/^\d{1,5}$/.test(text)) bad(value, `port "${text}" is not a number`);
  const port = Number(text);
  if (port < 1 || port > 65535) bad(value, `port ${port} is outside 1-65535`);
  return port;
}

/** Parses one `--peer` value; throws MeshError BAD_ARGUMENT with the reason for a bad one. */
export function parsePeerAddress(input: string, defaultPort: number): PeerAddress {
  const value = String(input).trim();
  if (value === '') bad(input, 'empty address');
  if (value.includes('://')) bad(value, 'leave out the scheme');
  if (/[\s/?#@]/.test(value)) bad(value, 'not a host name or address');

  if (value.startsWith('[')) {
    const m = /^\[([^\]]+)\](?::(.*))?$/.exec(value);
    if (!m) bad(value, 'unbalanced brackets');
    if (!net.isIPv6(m[1])) bad(value, `"${m[1]}" is not an IPv6 address`);
    return { host: m[1], port: m[2] === undefined ? defaultPort : parsePort(value, m[2]) };
  }

  const colons = value.split(':').length - 1;
  if (colons > 1) {
    // A bare IPv6 address is ambiguous ("fe80::1:50051"), so brackets are required.
    if (net.isIPv6(value)) bad(value, `write IPv6 addresses in brackets: [${value}]:${defaultPort}`);
    bad(value, 'too many colons (IPv6 addresses go in brackets)');
  }
  const [host, portText] = value.split(':');
  if (host === '') bad(value, 'missing host');
  if (/^[\d.]+$/.test(host) ? !net.isIPv4(host) : !HOSTNAME.test(host) || host.length > 253) {
    bad(value, `"${host}" is not a valid host name or IPv4 address`);
  }
  return { host, port: portText === undefined ? defaultPort : parsePort(value, portText) };
}

/** Reports each `--peer` address once per start(). Bad values throw from the constructor, before anything runs. */
export class StaticDiscovery extends EventEmitter implements Discovery {
  readonly peers: readonly PeerAddress[];
  private started = false;

  constructor(options: StaticDiscoveryOptions) {
    super();
    const seen = new Map<string, PeerAddress>();
    for (const raw of options.peers) {
      const addr = parsePeerAddress(raw, options.defaultPort);
      seen.set(`${addr.host.toLowerCase()}|${addr.port}`, addr);
    }
    this.peers = [...seen.values()];
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    for (const { host, port } of this.peers) {
      const peer: DiscoveredPeer = { host, port, source: 'static' };
      this.emit('peer', peer);
    }
  }

  async stop(): Promise<void> {
    this.started = false;
  }
}
