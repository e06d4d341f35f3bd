// Who coordinates. Pure: every peer runs the same rules on the same facts and gets the same answer.
//
// - The coordinator is the longest-running live peer (earliest startedAt, then smallest id)...
// - ...except that a live coordinator is never displaced, even by an older newcomer.
// - Each new coordinator takes a term one above the highest it has seen. A peer that leads with no
//   link at all (cut off, or before its links come up) makes a *solo* claim, which any claim made
//   with links outweighs whatever its term; otherwise the higher term wins, then the older peer. So
//   a peer that led alone while cut off rejoins under the coordinator the others kept, bringing its
//   higher term along, which that coordinator takes over: the cut and the heal cost one term.
// - A peer without a coordinator follows a solo claim only at a term above its own: a same-term
//   solo claim is a leftover, never the election that replaces the coordinator it lost.
// - Only evidence a peer can check itself counts: it follows a coordinator only on that
//   coordinator's own announcement over its own link, never on gossip. When a linked peer follows a
//   coordinator this peer cannot reach (partial connectivity: A–B and B–C up, A–C cut), this peer
//   does not start an election against it, and a coordinator it outweighs steps down: no
//   coordinator here (degraded) rather than a term storm.

export interface Member {
  id: string;
  startedAt: number;
}

export interface Leadership {
  term: number;
  coordinator: string | null;
  /** Set by a coordinator whose claim is solo: it took its term with no link, and nobody follows it yet. */
  solo?: boolean;
}

/** What a linked peer last announced (its leadership; `solo` when it coordinates on a solo claim). */
export interface Followed {
  peer: string;
  leadership: Leadership;
  coordinatorStartedAt?: number;
}

export type Decision =
  | { action: 'keep' }
  /** Follow a linked coordinator (on its own announcement) at `term`. */
  | { action: 'follow'; coordinator: string; term: number }
  /**
   * Lead at `term`: a new term (solo when no link is up), or, already coordinating, the higher term a
   * follower brought along or the same term no longer solo.
   */
  | { action: 'lead'; term: number; solo: boolean }
  /** No coordinator yet: the oldest live peer is expected to lead. */
  | { action: 'await'; candidate: string; term: number }
  /** A linked peer follows `coordinator`, which this peer cannot reach: no coordinator, no election. */
  | { action: 'defer'; coordinator: string; term: number };

interface Claim {
  id: string;
  term: number;
  startedAt?: number;
  solo: boolean;
}

export function byAge(a: Member, b: Member): number {
  return a.startedAt - b.startedAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/**
 * What this peer should do given the members it has live links to (itself included), its current
 * leadership, and what each linked peer last announced.
 */
export function decide(live: readonly Member[], selfId: string, current: Leadership, followed: readonly Followed[] = []): Decision {
  const linked = (id: string) => live.some((m) => m.id === id);
  const self = live.find((m) => m.id === selfId);
  const seen = followed.filter((f) => f.peer !== selfId && linked(f.peer));
  // Linked coordinators in their own words, the strongest first.
  const claims = seen
    .filter((f) => f.leadership.coordinator === f.peer)
    .map((f): Claim => ({ id: f.peer, term: f.leadership.term, startedAt: live.find((m) => m.id === f.peer)?.startedAt, solo: !!f.leadership.solo }))
    .sort(strongestFirst);
  // Coordinators our linked peers follow that we cannot reach ourselves (followed, so not solo).
  const unreachable = seen
    .filter((f) => f.leadership.coordinator && !linked(f.leadership.coordinator))
    .map((f): Claim => ({ id: f.leadership.coordinator!, term: f.leadership.term, startedAt: f.coordinatorStartedAt, solo: false }))
    .sort(strongestFirst);
  const best = claims[0];

  if (current.coordinator === selfId && self) {
    const mine: Claim = { id: selfId, term: current.term, startedAt: self.startedAt, solo: !!current.solo };
    if (best && stronger(best, mine)) return { action: 'follow', coordinator: best.id, term: Math.max(current.term, best.term) };
    // Outweighed by one we cannot reach: step down, so a peer linked to both sees only one.
    const over = unreachable.find((u) => stronger(u, mine));
    if (over) return { action: 'defer', coordinator: over.id, term: Math.max(current.term, over.term) };
    const followers = seen.filter((f) => f.leadership.coordinator === selfId);
    if (followers.length) {
      // A peer that took a higher term while cut off follows us at it: we lead at that term.
      const raised = Math.max(current.term, ...followers.map((f) => f.leadership.term));
      return raised > current.term || current.solo ? { action: 'lead', term: raised, solo: false } : { action: 'keep' };
    }
    // A solo claim nobody takes (a linked peer is between coordinators at a term as high): a new term.
    const waiting = seen.filter((f) => !f.leadership.coordinator && f.leadership.term >= current.term);
    if (current.solo && waiting.length) return { action: 'lead', term: Math.max(...waiting.map((f) => f.leadership.term)) + 1, solo: false };
    return { action: 'keep' };
  }

  let term = current.term;
  if (current.coordinator && linked(current.coordinator)) {
    const said = seen.find((f) => f.peer === current.coordinator);
    if (!said) return { action: 'keep' }; // linked, not heard from yet
    const ours = claims.find((c) => c.id === current.coordinator);
    if (ours) {
      if (best !== ours && stronger(best, ours)) return { action: 'follow', coordinator: best.id, term: Math.max(term, best.term) };
      return ours.term > term ? { action: 'follow', coordinator: ours.id, term: ours.term } : { action: 'keep' };
    }
    term = Math.max(term, said.leadership.term); // it stepped down, or follows another one now
  }
  if (best && (!best.solo || best.term > term)) return { action: 'follow', coordinator: best.id, term: Math.max(term, best.term) };
  const u = unreachable[0];
  if (u) return { action: 'defer', coordinator: u.id, term: Math.max(term, u.term) };
  // A link just up may bring a coordinator: hear the peer before starting an election.
  const unheard = live.find((x) => x.id !== selfId && !seen.some((f) => f.peer === x.id));
  if (unheard) return { action: 'await', candidate: unheard.id, term };
  const oldest = [...live].sort(byAge)[0];
  if (!oldest) return { action: 'keep' };
  if (oldest.id === selfId) return { action: 'lead', term: term + 1, solo: live.length === 1 };
  return { action: 'await', candidate: oldest.id, term };
}

/** A claim made with links beats a solo one; then the higher term; then (same term) the older; then the smaller id. */
function stronger(a: Claim, b: Claim): boolean {
  if (a.solo !== b.solo) return b.solo;
  if (a.term !== b.term) return a.term > b.term;
  if (a.startedAt === undefined || b.startedAt === undefined) return a.startedAt !== undefined || (b.startedAt === undefined && a.id < b.id);
  return byAge({ id: a.id, startedAt: a.startedAt }, { id: b.id, startedAt: b.startedAt }) < 0;
}

function strongestFirst(a: Claim, b: Claim): number {
  return stronger(a, b) ? -1 : stronger(b, a) ? 1 : 0;
}
