// Who coordinates. Pure: every peer runs the same rules on the same facts and gets the same answer.
//
// - The coordinator is the longest-running live peer (earliest startedAt, then smallest id)...
// - ...except that a live coordinator is never displaced, even by an older newcomer.
// - Each new coordinator takes a term one above the highest it has seen; announcements with a lower
//   term are stale and ignored. Two announcements of the same term (split views) resolve to the
//   coordinator that started first, so every peer settles on the same one.

export interface Member {
  id: string;
  startedAt: number;
}

export interface Leadership {
  term: number;
  coordinator: string | null;
}

export type Decision =
  | { action: 'keep' }
  | { action: 'await'; candidate: string }
  | { action: 'lead'; term: number };

export function byAge(a: Member, b: Member): number {
  return a.startedAt - b.startedAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/** What this peer should do given the members it has live links to (itself included). */
export function decide(live: readonly Member[], selfId: string, current: Leadership): Decision {
  if (current.coordinator && live.some((m) => m.id === current.coordinator)) return { action: 'keep' };
  const oldest = [...live].sort(byAge)[0];
  if (!oldest) return { action: 'keep' };
  if (oldest.id === selfId) return { action: 'lead', term: current.term + 1 };
  return { action: 'await', candidate: oldest.id };
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
  const a = startedAt(incoming.coordinator);
  const b = startedAt(current.coordinator);
  if (a === undefined || b === undefined) return a !== undefined || incoming.coordinator < current.coordinator;
  return byAge({ id: incoming.coordinator, startedAt: a }, { id: current.coordinator, startedAt: b }) < 0;
}
