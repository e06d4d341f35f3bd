// mDNS discovery: publish our `_<type>._tcp` service and browse for others with bonjour-service.
// Reports what it sees and nothing more: a crashed peer's record lingers for hours (TTLs), so liveness
// comes from the link heartbeat, and only a goodbye (TTL 0) becomes 'down'.
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { Bonjour, type Browser, type Service } from 'bonjour-service';
import { createLogger, type Logger } from '../core/log.ts';
import type { DiscoveredPeer, Discovery, IgnoredPeer, IgnoreReason } from './discovery.ts';
import { classifyService, encodeTxt, type BrowsedService, type LocalAnnouncement } from './txt.ts';

export interface MdnsDiscoveryOptions {
  /** This peer: announced in TXT, and used to ignore our own echo. */
  id: string;
  port: number;
  cluster: string;
  protocol: number;
  /** Bytes this peer offers for layers, announced as `mem` in TXT. */
  memory?: number;
  /** Service type without underscores, e.g. 'mlx-mesh' for `_mlx-mesh._tcp`. */
  serviceType: string;
  /** Human label put in front of the id in the service instance name (e.g. --name). */
  name?: string;
  /** IPv4 address of the NIC to join the group and send on; default: the default-route interface. */
  interface?: string;
  /** Address the 5353 socket binds to. Defaults to 0.0.0.0: on Linux a socket bound to a unicast address
   *  never receives multicast, which is what multicast-dns would otherwise do when `interface` is set. */
  bind?: string;
  /** mDNS UDP port (5353); another value only reaches peers configured the same way. */
  mdnsPort?: number;
  /** How often to ask again for every peer, catching announcements we missed and address changes. */
  queryIntervalMs?: number;
  logger?: Logger;
}

/** Peers re-query like js-libp2p's mDNS does; announcements alone back off to once an hour. */
const QUERY_INTERVAL_MS = 10_000;
const FATAL = new Set(['EADDRINUSE', 'EACCES']);

type Reported = { kind: 'peer' | 'ignored'; reason?: IgnoreReason; peer: DiscoveredPeer };
const keyOf = (r: Reported) => `${r.kind}|${r.reason ?? ''}|${r.peer.id}|${r.peer.host}|${r.peer.port}`;
type MdnsSocket = EventEmitter & { update(): void };
type ResourceRecord = { type: string; name: string; ttl?: number };
type Packet = { answers?: ResourceRecord[]; additionals?: ResourceRecord[] };


/** DNS labels are at most 63 bytes; keep the id whole and shorten the human part. */
function instanceName(id: string, name?: string): string {
  const label = (name ?? '').replace(/[.]/g, '-').slice(0, Math.max(0, 62 - id.length));
  return label ? `${label}-${id}` : id;
}

export class MdnsDiscovery extends EventEmitter implements Discovery {
  private readonly opts: MdnsDiscoveryOptions;
  private readonly self: LocalAnnouncement;
  private readonly log: Logger;
  private bonjour?: Bonjour;
  private browser?: Browser;
  private service?: Service;
  private timer?: NodeJS.Timeout;
  private starting?: Promise<void>;
  private stopping?: Promise<void>;
  private failed = false;
  /** What we last reported per service fqdn, so repeats are not re-emitted. */
  private readonly reported = new Map<string, Reported>();

  constructor(options: MdnsDiscoveryOptions) {
    super();
    this.opts = options;
    this.self = { ...options, instance: randomBytes(6).toString('hex') };
    this.log = options.logger ?? createLogger('discovery');
  }

  start(): Promise<void> {
    this.starting ??= this.open();
    return this.starting;
  }

  stop(): Promise<void> {
    if (!this.starting) return this.stopping ?? Promise.resolve();
    const started = this.starting;
    this.starting = undefined;
    this.stopping = started.catch(() => {}).then(() => this.close());
    return this.stopping;
  }

  private async open(): Promise<void> {
    await this.stopping;
    const { opts } = this;
    this.failed = false;
    const mdnsOptions = {
      port: opts.mdnsPort ?? 5353,
      interface: opts.interface,
      bind: opts.bind ?? (opts.interface ? '0.0.0.0' : undefined),
    };
    // The second argument replaces bonjour-service's default, which throws on a failed send.
    const bonjour = new Bonjour(mdnsOptions as object, (err: Error) => this.onSocketError(err));
    this.bonjour = bonjour;
    const mdns = (bonjour as unknown as { server: { mdns: MdnsSocket } }).server.mdns;
    mdns.on('warning', (err: Error) => this.log.debug('mdns warning', { error: err.message }));
    mdns.on('response', (packet: Packet, rinfo: { address: string }) => this.onResponse(packet, rinfo));

    // multicast-dns can emit 'error' twice for one failed bind, so one listener stays for the whole life.
    let rejectStart: ((err: Error) => void) | undefined;
    mdns.on('error', (err: Error) => (rejectStart ? rejectStart(err) : this.onSocketError(err)));
    await new Promise<void>((resolve, reject) => {
      rejectStart = reject;
      mdns.once('ready', () => resolve());
    }).catch(async (err: Error) => {
      await new Promise((r) => bonjour.destroy(r));
      this.bonjour = undefined;
      this.starting = undefined;
      throw err;
    }).finally(() => {
      rejectStart = undefined;
    });

    this.service = bonjour.publish({
      name: instanceName(opts.id, opts.name),
      type: opts.serviceType,
      port: opts.port,
      host: `${instanceName(opts.id).replace(/[^A-Za-z0-9-]/g, '-')}.local`,
      txt: encodeTxt(this.self),
      // Probing stops a clashing service and prints to stdout; the name holds our id, so a clash means
      // a copied id, which the instance nonce in TXT reports as 'duplicate-id' instead.
      probe: false,
      disableIPv6: true,
    });
    const browser = bonjour.find({ type: opts.serviceType });
    this.browser = browser;
    browser.on('up', (s) => this.onService(s));
    browser.on('srv-update', (s) => this.onService(s));
    browser.on('txt-update', (s) => this.onService(s));
    browser.on('down', (s) => this.onGoodbye(s));
    const every = opts.queryIntervalMs ?? QUERY_INTERVAL_MS;
    if (every > 0) this.timer = setInterval(() => browser.update(), every).unref();
    this.log.debug('mdns started', { id: opts.id, type: opts.serviceType, interface: opts.interface });
  }

  private async close(): Promise<void> {
    clearInterval(this.timer);
    this.browser?.stop();
    const { bonjour, service } = this;
    this.browser = this.service = this.bonjour = undefined;
    this.reported.clear();
    // The goodbye (all records with TTL 0) is sent before the socket closes.
    if (service) await new Promise<void>((resolve) => service.stop(() => resolve()));
    if (bonjour) await new Promise<void>((resolve) => bonjour.destroy(() => resolve()));
    this.stopping = undefined;
    this.log.debug('mdns stopped', { id: this.opts.id });
  }

  private onService(service: Service): void {
    const result = classifyService(service as BrowsedService, this.self);
    if (result.kind === 'self') return;
    const next: Reported = result.kind === 'peer' ? result : { kind: 'ignored', reason: result.reason, peer: result.peer };
    const previous = this.reported.get(service.fqdn);
    if (previous && keyOf(previous) === keyOf(next)) return;
    this.reported.set(service.fqdn, next);
    if (previous?.kind === 'peer' && result.kind === 'ignored' && previous.peer.id) {
      this.emit('down', { id: previous.peer.id });
    }
    if (result.kind === 'peer') this.emit('peer', result.peer);
    else this.emit('ignored', { peer: result.peer, reason: result.reason } satisfies IgnoredPeer);
  }

  private onGoodbye(service: Service): void {
    const previous = this.reported.get(service.fqdn);
    this.reported.delete(service.fqdn);
    if (previous?.kind === 'peer' && previous.peer.id) this.emit('down', { id: previous.peer.id });
  }

  /** The browser only notices SRV/TXT changes; a known peer answering from a new address is a change too. */
  private onResponse(packet: Packet, rinfo: { address: string }): void {
    if (!net.isIPv4(rinfo.address)) return;
    for (const rr of [...(packet.answers ?? []), ...(packet.additionals ?? [])]) {
      if (rr.type !== 'SRV' || !rr.ttl) continue;
      const fqdn = [...this.reported.keys()].find((k) => k.toLowerCase() === String(rr.name).toLowerCase());
      const known = fqdn ? this.reported.get(fqdn) : undefined;
      if (!fqdn || !known || known.kind !== 'peer' || known.peer.host === rinfo.address) continue;
      const peer = { ...known.peer, host: rinfo.address };
      this.reported.set(fqdn, { ...known, peer });
      this.emit('peer', peer);
    }
  }

  private onSocketError(err: Error & { code?: string }): void {
    if (!FATAL.has(err.code ?? '')) {
      this.log.warn('mdns send failed', { error: err.message });
      return;
    }
    if (this.failed) return;
    this.failed = true;
    this.log.error('mdns socket failed', { error: err.message, code: err.code });
    this.emit('error', err);
  }
}
