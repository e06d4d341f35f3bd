// What just happened in the cluster, as one peer saw it: joins, leaves, elections, plans, engine
// restarts and refused handshakes, newest last, in a bounded ring the dashboard streams.
import { EventEmitter } from 'node:events';
import type { Inference } from '../../peer/inference.ts';
import type { Peer } from '../../peer/peer.ts';

export type EventKind = 'join' | 'leave' | 'election' | 'plan' | 'engine' | 'refused';

export interface MeshEvent {
  seq: number;
  at: number;
  kind: EventKind;
  text: string;
}

export class EventLog extends EventEmitter<{ event: [MeshEvent] }> {
  private readonly entries: MeshEvent[] = [];
  private seq = 0;

  constructor(peer: Peer, inference: Inference | null, private readonly limit = 200) {
    super();
    const name = (id: string | null) => (id ? (peer.live().find((p) => p.id === id)?.name ?? id) : '(none)');
    peer.on('up', (l) => this.add('join', `${l.remote.name} joined from ${l.remote.hostname} (${l.remoteHost})`));
    peer.on('down', (l, info) => this.add('leave', `${l.remote.name} left: ${info.reason || (info.code === 1006 ? 'connection lost' : 'link closed')} (${info.code})`));
    peer.on('leadership', (l) => this.add('election', l.coordinator ? `term ${l.term}: ${name(l.coordinator)} is the coordinator` : `term ${l.term}: electing a coordinator`));
    peer.on('refused', (r) => this.add('refused', `handshake from ${r.from} refused: ${r.code}, ${r.message}${r.count > 1 ? ` (${r.count} times)` : ''}`));
    if (!inference) return;
    inference.on('plan', (p) =>
      this.add('plan', `plan ${p.version} (term ${p.term}): ${p.stages.map((s) => `${name(s.id)} ${s.layers[0]}–${s.layers[1] - 1}`).join(', ')}${p.excluded.length ? `; left out: ${p.excluded.map((e) => name(e.id)).join(', ')}` : ''}`),
    );
    inference.engine.on('restart', (r: { attempt: number; reason: string }) => this.add('engine', `engine restarted (attempt ${r.attempt}): ${r.reason}`));
    inference.engine.on('failed', (err: Error) => this.add('engine', `engine failed: ${err.message}`));
  }

  add(kind: EventKind, text: string): void {
    const e = { seq: ++this.seq, at: Date.now(), kind, text };
    this.entries.push(e);
    if (this.entries.length > this.limit) this.entries.shift();
    this.emit('event', e);
  }

  recent(n = 50): MeshEvent[] {
    return this.entries.slice(-n);
  }
}
