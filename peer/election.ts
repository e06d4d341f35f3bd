// Who coordinates. Pure: every peer runs the same rules on the same facts and gets the same answer.
//
// - The coordinator is the longest-running live peer (earliest startedAt, then smallest id)...
// - ...except that a live coordinator is never displaced, even by an older newcomer.
// - Each new coordinator takes a term one above the highest it has seen; announcements with a lower
//   term are stale and ignored. Two announcements of the same term (split views) resolve to the
//   coordinator that started first, so every peer settles on the same one.
// - Only evidence a peer can check itself counts: it follows a coordinator only over its own link to
//   it, never on gossip. When a linked peer follows a coordinator this peer cannot reach (partial
//   connectivity: A–B and B–C up, A–C cut), this peer does not start an election against it, and a
//   coordinator it outranks steps down: no coordinator here (degraded) rather than a term storm.

export interface Member {
  id: string;
  startedAt: number;
}

export interface Leadership {
  term: number;
  coordinator: string | null;
}

/** What a linked peer last said it follows, with its coordinator's start time when known. */
export interface Followed {
  peer: string;
  leadership: Leadership;
  coordinatorStartedAt?: number;
}

export type Decision =
  | { action: 'keep' }
  | { action: 'await'; candidate: string }
  | { action: 'lead'; term: number }
  /** A linked peer follows `coordinator`, which this peer cannot reach: no coordinator, no election. */
  | { action: 'defer'; coordinator: string; term: number };

export function byAge(a: Member, b: Member): number {
  return a.startedAt - b.startedAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/**
 * What this peer should do given the members it has live links to (itself included) and what those
 * linked peers follow.
 */
export function decide(live: readonly Member[], selfId: string, current: Leadership, followed: readonly Followed[] = []): Decision {
  const linked = (id: string) => live.some((m) => m.id === id);
  const self = live.find((m) => m.id === selfId);
  // Coordinators our linked peers follow that we cannot reach ourselves, the highest-ranked first.
  const unreachable = followed
    .filter((f) => f.leadership.coordinator && !linked(f.leadership.coordinator))
    .map((f) => ({ id: f.leadership.coordinator!, term: f.leadership.term, startedAt: f.coordinatorStartedAt }))
    .sort((a, b) => (outranks(a, b) ? -1 : outranks(b, a) ? 1 : 0));
  if (current.coordinator === selfId && self) {
    // A coordinator steps down for an unreachable one that outranks it (higher term, or the same term
    // and older), so a peer linked to both sees only one.
    const over = unreachable.find((u) => outranks(u, { id: selfId, term: current.term, startedAt: self.startedAt }));
    return over ? { action: 'defer', coordinator: over.id, term: Math.max(current.term, over.term) } : { action: 'keep' };
  }
  if (current.coordinator && linked(current.coordinator)) return { action: 'keep' };
  // A coordinator a linked peer follows and we cannot reach is not challenged, unless we would
  // outrank it by the same order (older, at a term as high): then it steps down for us, and never the
  // other way round, so this cannot flap. That settles peers that led alone before their links came up.
  const u = unreachable[0];
  if (u && !(self && u.startedAt !== undefined && current.term + 1 >= u.term && byAge(self, { id: u.id, startedAt: u.startedAt }) < 0)) {
    return { action: 'defer', coordinator: u.id, term: Math.max(current.term, u.term) };
  }
  const oldest = [...live].sort(byAge)[0];
  if (!oldest) return { action: 'keep' };
  if (oldest.id === selfId) return { action: 'lead', term: current.term + 1 };
  return { action: 'await', candidate: oldest.id };
}

/** The order supersedes() uses: higher term, then (same term) older, then smaller id. */
function outranks(a: { id: string; term: number; startedAt?: number }, b: { id: string; term: number; startedAt?: number }): boolean {
  if (a.term !== b.term) return a.term > b.term;
  if (a.startedAt === undefined || b.startedAt === undefined) return a.startedAt !== undefined || a.id < b.id;
  return byAge({ id: a.id, startedAt: a.startedAt }, { id: b.id, startedAt: b.startedAt }) < 0;
}

/**
 * Whether an announced leadership replaces ours. `startedAt` looks up a member's start time
 * (undefined when unknown) to settle two coordinators announced for the same term.
 */
export function supersedes(
  incoming: Leadership,
  current: Leadership,
  startedAt: (id: string) => number | undefined,
): boolean {
  if (!incoming.coordinator) return false;
  if (incoming.term !== current.term) return incoming.term > current.term;
  if (!current.coordinator) return true;
  if (incoming.coordinator === current.coordinator) return false;
  return outranks(
    { id: incoming.coordinator, term: incoming.term, startedAt: startedAt(incoming.coordinator) },
    { id: current.coordinator, term: current.term, startedAt: startedAt(current.coordinator) },
  );
}
