// One mesh peer: accepts and dials links, learns peers from discovery and gossip, and keeps the
// coordinator election going. Inference (plan, engine, pipeline) builds on the events it emits.
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { answerBenchEcho } from '../transport/bench-echo.ts';
import { CloseCode } from '../transport/close-codes.ts';
import type { EndpointOptions } from '../transport/endpoint.ts';
import { meshError, type MeshError } from '../core/errors.ts';
import type { Link, LinkClose } from '../transport/link.ts';
import { createLogger, type Logger } from '../core/log.ts';
import type { Message, PeerInfo } from '../transport/messages.ts';
import { LinkServer } from '../transport/server.ts';
import { Connector, type Target } from './connector.ts';
import { decide, type Followed, type Leadership } from './election.ts';
import { describeSelf, type Identity, loadIdentity } from './identity.ts';
import { Membership } from './membership.ts';

/** What discovery/ provides; kept structural so peer/ does not depend on a particular source. */
export interface DiscoverySource extends EventEmitter {
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** How fast links notice trouble and peers settle; defaults in src/config.ts, faster in tests. */
export interface PeerTimings {
  heartbeatMs: number;
  heartbeatMisses: number;
  handshakeTimeoutMs: number;
  dialBackoffMinMs: number;
  dialBackoffMaxMs: number;
  settleMs: number;
}

export interface PeerOptions extends PeerTimings {
  dataDir: string;
  name?: string;
  cluster: string;
  protocol: number;
  version: string;
  host?: string;
  port: number;
  apiPort: number;
  discovery?: DiscoverySource[];
  /** Sources that need the bound port (mDNS announces it): built once the peer port listens. */
  discoveryFor?: (peer: Peer) => Promise<DiscoverySource>;
  maxPayloadBytes: number;
  sendWindow: number;
  /** Cluster secret: only peers that prove they know it can link (transport/auth.ts). */
  secret?: string;
}

export interface Refusal {
  from: string;
  count: number;
  code: string;
  message: string;
  at: number;
}

export interface PeerEvents {
  leadership: [Leadership];
  up: [Link];
  /** The link's close code and reason say why the peer left (heartbeats, a refused frame, a clean leave). */
  down: [Link, LinkClose];
  message: [Message, Link];
  /** A handshake was refused (every time, including repeats the log keeps quiet about). */
  refused: [Refusal];
}

export class Peer extends EventEmitter<PeerEvents> {
  readonly identity: Identity;
  /** Sub-millisecond, so peers started in the same millisecond still order by age, not by id. */
  readonly startedAt = performance.timeOrigin + performance.now();
  readonly instance = randomBytes(8).toString('hex');
  readonly membership: Membership;
  leadership: Leadership = { term: 0, coordinator: null };
  /** False until the settle period after start has passed (we may not have heard the coordinator yet). */
  settled = false;
  readonly refusals: Refusal[] = [];
  /** Peers discovery saw but we leave alone (another cluster or protocol version). */
  readonly ignored: Array<{ id?: string; host: string; port: number; reason: string }> = [];
  readonly log: Logger;
  /** Extra capability fields (engine state, backend) filled in by higher layers. */
  extraCapabilities: Record<string, string | number | undefined> = {};

  /** A coordinator our linked peers follow that we cannot reach (partial connectivity), while we defer to it. */
  deferredTo: string | null = null;
  /** What each linked peer last said it follows: evidence for decide(), never a coordinator to adopt. */
  private readonly followed = new Map<string, Followed>();
  private readonly opts: PeerOptions;
  private server: LinkServer | null = null;
  private connector: Connector | null = null;
  private settleTimer: NodeJS.Timeout | null = null;
  private running = false;

  constructor(opts: PeerOptions) {
    super();
    this.opts = opts;
    this.identity = loadIdentity(opts.dataDir, opts.name);
    this.log = createLogger('peer', `[${this.identity.name}] `);
    this.membership = new Membership(this.identity.id, createLogger('membership', `[${this.identity.name}] `));
  }

  get id(): string {
    return this.identity.id;
  }

  get port(): number {
    return this.server?.port ?? this.opts.port;
  }

  get cluster(): string {
    return this.opts.cluster;
  }

  get isCoordinator(): boolean {
    return this.leadership.coordinator === this.id;
  }

  info(): PeerInfo {
    const info = describeSelf(this.identity, {
      startedAt: this.startedAt,
      port: this.port,
      apiPort: this.opts.apiPort,
      version: this.opts.version,
    });
    Object.assign(info.capabilities, this.extraCapabilities);
    return info;
  }

  /** Live members: ourselves plus every peer with an open link. */
  live(): PeerInfo[] {
    return [this.info(), ...this.membership.all().map((l) => l.remote)];
  }

  /** The ids of `live()`, without describing this machine again (request paths ask this per request). */
  liveIds(): Set<string> {
    return new Set([this.id, ...this.membership.all().map((l) => l.remote.id)]);
  }

  /** Tells the API port actually bound (port 0 in tests) so hellos carry it. */
  setApiPort(port: number): void {
    this.opts.apiPort = port;
  }

  addPeer(host: string, port: number, source: Target['source'], id?: string): void {
    if (id === this.id) return;
    this.connector?.add(host, port, source, id);
  }

  targets(): Target[] {
    return this.connector?.list() ?? [];
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    const endpoint = this.endpointOptions();
    this.server = new LinkServer({ ...endpoint, host: this.opts.host, port: this.opts.port });
    this.server.on('link', (link) => this.onLink(link));
    this.server.on('refused', (err, from) => this.onRefused(err, from, 0));
    await this.server.start();
    this.connector = new Connector({
      endpoint,
      backoffMinMs: this.opts.dialBackoffMinMs,
      backoffMaxMs: this.opts.dialBackoffMaxMs,
      isLinked: (id) => this.membership.has(id),
      onLink: (link) => this.onLink(link),
      onRefused: (err, t) => this.onRefused(err, t.host, t.port),
      log: this.log,
    });
    this.membership.on('up', (link) => {
      this.broadcastGossip(); // everyone learns of the newcomer, the newcomer learns of everyone
      this.emit('up', link);
      this.evaluate();
    });
    this.membership.on('down', (link, info) => {
      if (info.code === CloseCode.DUPLICATE_ID && info.reason.startsWith('refused by the other side')) {
        this.onRefused(meshError('DUPLICATE_ID', info.reason, { peer: link.remote.id, name: link.remote.name }), link.remoteHost, 0);
      }
      this.followed.delete(link.remote.id);
      this.connector?.poke(link.remote.id);
      this.emit('down', link, info);
      this.evaluate();
    });
    this.membership.on('message', (msg, link) => this.onMessage(msg, link));
    const sources = [...(this.opts.discovery ?? [])];
    if (this.opts.discoveryFor) sources.push(await this.opts.discoveryFor(this));
    this.opts.discovery = sources;
    for (const source of sources) {
      source.on('peer', (p: { id?: string; host: string; port: number; source: Target['source'] }) =>
        this.addPeer(p.host, p.port, p.source, p.id),
      );
      source.on('ignored', (x: { peer: { id?: string; host: string; port: number }; reason: string }) =>
        this.onIgnored(x),
      );
      source.on('error', (err: Error) => this.log.error('discovery failed', { error: err.message }));
      await source.start();
    }
    this.settleTimer = setTimeout(() => {
      this.settled = true;
      this.evaluate();
    }, this.opts.settleMs);
    this.log.info('peer started', { id: this.id, port: this.port, cluster: this.opts.cluster });
  }

  /** Leaves politely: closes every link (peers see it at once) and withdraws from mDNS. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    if (this.settleTimer) clearTimeout(this.settleTimer);
    this.connector?.stop();
    this.membership.closeAll('peer stopping');
    await Promise.all((this.opts.discovery ?? []).map((d) => d.stop()));
    await this.server?.stop();
    this.log.info('peer stopped', { id: this.id });
  }

  send(id: string, msg: Message): Promise<void> {
    const link = this.membership.get(id);
    if (!link) return Promise.reject(meshError('PEER_UNREACHABLE', `no link to peer ${id}`));
    return link.send(msg);
  }

  private endpointOptions(): EndpointOptions {
    const o = this.opts;
    return {
      protocol: o.protocol,
      cluster: o.cluster,
      instance: this.instance,
      self: () => this.info(),
      timeoutMs: o.handshakeTimeoutMs,
      // A peer is live when heard within two beats; a silent link is dying and a restart may replace it.
      admit: (remote, instance) => this.membership.checkClaim(remote, instance, 2 * o.heartbeatMs),
      secret: o.secret,
      maxPayloadBytes: o.maxPayloadBytes,
      sendWindow: o.sendWindow,
      heartbeatMs: o.heartbeatMs,
      heartbeatMisses: o.heartbeatMisses,
      logger: createLogger('link', `[${this.identity.name}] `),
    };
  }

  private onLink(link: Link): void {
    if (!this.running) return link.close(CloseCode.GOING_AWAY, 'stopping');
    // A benchmark measuring this peer's link: answered, never a member (server.stop() closes it).
    if (link.remoteRole === 'bench') return answerBenchEcho(link);
    this.membership.adopt(link);
  }

  private onRefused(err: MeshError, host: string, port: number): void {
    if (err.code === 'SELF_CONNECTION') return;
    const addr = port ? `${host}:${port}` : host;
    const who = err.details?.peer;
    const from = who ? `${who} (${addr})` : addr;
    const known = this.refusals.find((r) => r.from === from && r.code === err.code);
    if (known) {
      // Redials of the same wrong peer would flood the log: say it once, count the rest.
      known.count++;
      known.at = Date.now();
      this.emit('refused', known);
      return;
    }
    const level = err.code === 'DUPLICATE_ID' ? 'error' : 'warn';
    this.log[level]('handshake refused', { code: err.code, from, reason: err.message });
    const refusal = { from, code: err.code, message: err.message, at: Date.now(), count: 1 };
    this.refusals.unshift(refusal);
    this.refusals.splice(20);
    this.emit('refused', refusal);
  }

  private onIgnored(x: { peer: { id?: string; host: string; port: number }; reason: string }): void {
    const key = `${x.peer.host}:${x.peer.port}`;
    if (this.ignored.some((i) => `${i.host}:${i.port}` === key)) return;
    this.log.info('ignoring discovered peer', { peer: x.peer.id ?? key, reason: x.reason });
    this.ignored.push({ id: x.peer.id, host: x.peer.host, port: x.peer.port, reason: x.reason });
  }

  private onMessage(msg: Message, link: Link): void {
    switch (msg.type) {
      case 'gossip':
        for (const p of msg.peers) {
          if (p.id !== this.id && !this.membership.has(p.id) && p.addresses[0]) {
            this.addPeer(p.addresses[0], p.port, 'gossip', p.id);
          }
        }
        this.consider({ term: msg.term, coordinator: msg.coordinator, ...(msg.solo && { solo: true }) }, link, msg.peers);
        return;
      case 'coordinator':
        this.consider({ term: msg.term, coordinator: msg.id, ...(msg.solo && { solo: true }) }, link);
        return;
      default:
        this.emit('message', msg, link);
    }
  }

  /**
   * Notes what a linked peer announced. decide() weighs it: a coordinator is followed only on its own
   * announcement over our own link, never on what another peer says of it.
   */
  private consider(incoming: Leadership, from: Link, peers?: ReadonlyArray<{ id: string; startedAt: number }>): void {
    const startedAt = (id: string) => (id === this.id ? this.startedAt : (this.membership.infoOf(id)?.startedAt ?? peers?.find((p) => p.id === id)?.startedAt));
    const sender = from.remote.id;
    this.followed.set(sender, {
      peer: sender,
      leadership: incoming,
      coordinatorStartedAt: incoming.coordinator ? startedAt(incoming.coordinator) : undefined,
    });
    this.evaluate();
  }

  private evaluate(): void {
    if (!this.running) return;
    const followed = [...this.followed.values()].filter((f) => this.membership.has(f.peer));
    const d = decide(this.live(), this.id, this.leadership, followed);
    if (d.action === 'defer') {
      if (this.deferredTo !== d.coordinator) {
        this.log.warn('linked peers follow a coordinator this peer cannot reach: no coordinator here until a link to it works', { coordinator: d.coordinator });
      }
      this.deferredTo = d.coordinator;
      this.setLeadership({ term: d.term, coordinator: null });
      return;
    }
    this.deferredTo = null;
    if (d.action === 'lead') {
      // Until settled we only follow: an existing coordinator may not have announced itself to us yet.
      if (!this.settled && !this.isCoordinator) return;
      this.setLeadership({ term: d.term, coordinator: this.id, ...(d.solo && { solo: true }) });
      this.membership.broadcast({ type: 'coordinator', term: d.term, id: this.id, ...(d.solo && { solo: true }) });
    } else if (d.action === 'follow') {
      this.setLeadership({ term: d.term, coordinator: d.coordinator });
    } else if (d.action === 'await') {
      this.setLeadership({ term: d.term, coordinator: null });
    }
  }

  private setLeadership(next: Leadership): void {
    const prev = this.leadership;
    if (prev.term === next.term && prev.coordinator === next.coordinator && !prev.solo === !next.solo) return;
    this.leadership = next;
    this.log.info('coordinator', { term: next.term, id: next.coordinator ?? '(electing)', self: next.coordinator === this.id });
    this.emit('leadership', next);
    this.broadcastGossip();
  }

  private gossipMessage(): Message {
    // Addresses as we observe them: the ones that actually reached us.
    const peers = this.membership.all().map((l) => ({ ...l.remote, addresses: [l.remoteHost] }));
    const { term, coordinator, solo } = this.leadership;
    return { type: 'gossip', peers, coordinator, term, ...(solo && { solo }) };
  }

  private broadcastGossip(): void {
    this.membership.broadcast(this.gossipMessage());
  }
}
