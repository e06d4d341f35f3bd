// One Discovery over several sources: the `--peer` list plus mDNS unless `--no-mdns`.
// The peer layer listens to this one object and never knows how many sources there are.
import { EventEmitter } from 'node:events';
import type { Discovery } from './discovery.ts';
import { MdnsDiscovery, type MdnsDiscoveryOptions } from './mdns.ts';
import { StaticDiscovery } from './static.ts';

const EVENTS = ['peer', 'down', 'ignored', 'error'] as const;

export class CombinedDiscovery extends EventEmitter implements Discovery {
  readonly sources: readonly Discovery[];
  private starting?: Promise<void>;
  private stopping?: Promise<void>;

  constructor(sources: readonly Discovery[]) {
    super();
    this.sources = sources;
    for (const source of sources) {
      for (const event of EVENTS) source.on(event, (value) => this.emit(event, value));
    }
  }

  start(): Promise<void> {
    this.starting ??= this.open();
    return this.starting;
  }

  stop(): Promise<void> {
    if (!this.starting) return this.stopping ?? Promise.resolve();
    const started = this.starting;
    this.starting = undefined;
    this.stopping = started
      .catch(() => {})
      .then(() => Promise.all(this.sources.map((s) => s.stop())))
      .then(() => {
        this.stopping = undefined;
      });
    return this.stopping;
  }

  private async open(): Promise<void> {
    await this.stopping;
    const results = await Promise.allSettled(this.sources.map((s) => s.start()));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (!failed) return;
    // All or nothing: a half-started discovery would hold the mDNS socket with nobody to stop it.
    await Promise.all(this.sources.map((s) => s.stop()));
    this.starting = undefined;
    throw failed.reason;
  }
}

export interface DiscoveryOptions {
  /** Raw `--peer` values; validated here (MeshError BAD_ARGUMENT), before anything starts. */
  peers?: readonly string[];
  /** Port for a `--peer` value without one. */
  defaultPort: number;
  /** mDNS settings, or false for `--no-mdns`. */
  mdns: MdnsDiscoveryOptions | false;
}

export function createDiscovery(options: DiscoveryOptions): CombinedDiscovery {
  const sources: Discovery[] = [];
  if (options.peers?.length) sources.push(new StaticDiscovery({ peers: options.peers, defaultPort: options.defaultPort }));
  if (options.mdns) sources.push(new MdnsDiscovery(options.mdns));
  return new CombinedDiscovery(sources);
}
