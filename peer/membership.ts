// The live links of this peer, one per remote peer id, and what each remote said about itself.
import { EventEmitter } from 'node:events';
import { CloseCode } from '../transport/close-codes.ts';
import type { Link, LinkClose } from '../transport/link.ts';
import type { Logger } from '../core/log.ts';
import { meshError } from '../core/errors.ts';
import type { Message, PeerInfo } from '../transport/messages.ts';
import { keepFirst } from '../transport/tiebreak.ts';

export interface MembershipEvents {
  up: [Link];
  down: [Link, LinkClose];
  message: [Message, Link];
}

export class Membership extends EventEmitter<MembershipEvents> {
  private readonly links = new Map<string, Link>();

  constructor(
    private readonly selfId: string,
    private readonly log: Logger,
  ) {
    super();
  }

  /** Takes a freshly handshaken link, or closes it when a better link to that peer already exists. */
  adopt(link: Link): boolean {
    const id = link.remote.id;
    const existing = this.links.get(id);
    if (existing?.isOpen) {
      // A restarted peer (new instance) replaces its dead predecessor's link at once.
      const restarted = existing.remoteInstance !== link.remoteInstance;
      if (!restarted && keepFirst(existing, link, this.selfId, id)) {
        link.close(CloseCode.DUPLICATE_LINK, 'duplicate link');
        return false;
      }
      this.links.delete(id);
      existing.close(CloseCode.DUPLICATE_LINK, restarted ? 'peer restarted' : 'duplicate link');
    }
    this.links.set(id, link);
    link.on('message', (msg) => this.emit('message', msg, link));
    link.once('close', (info) => {
      if (this.links.get(id) !== link) return;
      this.links.delete(id);
      this.log.info('peer left', { peer: id, code: info.code, reason: info.reason });
      this.emit('down', link, info);
    });
    link.start();
    if (!link.isOpen) return false;
    this.log.info('peer linked', { peer: id, host: link.remoteHost, direction: link.direction });
    this.emit('up', link);
    return true;
  }

  /**
   * Whether a freshly handshaken peer may take its id. A second link from the same process (same
   * instance) is a simultaneous dial, settled by adopt(). Another process with the id of a peer that
   * is live on its link is refused (DUPLICATE_ID) and the live link stays. It replaces the link only
   * as a restart would: the old link silent for more than `liveWithinMs` (dead or dying) and the
   * newcomer started after it.
   */
  checkClaim(remote: PeerInfo, instance: string, liveWithinMs: number): void {
    const existing = this.links.get(remote.id);
    if (!existing?.isOpen || existing.remoteInstance === instance) return;
    const silent = Math.round(existing.silentForMs);
    if (silent > liveWithinMs && remote.startedAt > existing.remote.startedAt) return;
    const why = silent > liveWithinMs ? 'started before it' : `heard ${silent} ms ago`;
    throw meshError(
      'DUPLICATE_ID',
      `peer id ${remote.id} is live on another link (${existing.remote.hostname}, ${why}); ${remote.hostname} claims it too: ` +
        'give one of them its own --data-dir (cloned data dir?)',
    );
  }

  get(id: string): Link | undefined {
    return this.links.get(id);
  }

  has(id: string): boolean {
    return this.links.get(id)?.isOpen ?? false;
  }

  all(): Link[] {
    return [...this.links.values()];
  }

  infoOf(id: string): PeerInfo | undefined {
    return this.links.get(id)?.remote;
  }

  /** Sends to every live link; a failed send only means that link is going away. */
  broadcast(msg: Message): void {
    for (const link of this.links.values()) link.post(msg);
  }

  closeAll(reason: string): void {
    for (const link of [...this.links.values()]) link.close(CloseCode.GOING_AWAY, reason);
    this.links.clear();
  }
}
