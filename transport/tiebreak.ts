// One link per pair of peers. When both dial at once, each side ends up with two sockets to the
// other; both must keep the same one without talking about it. The socket dialled by the smaller
// id wins; between two sockets dialled by the same side (a redial racing a dying link), the newer wins.
export interface LinkFacts {
  direction: 'in' | 'out';
  openedAt: number;
}

export function keepFirst(a: LinkFacts, b: LinkFacts, selfId: string, remoteId: string): boolean {
  if (a.direction !== b.direction) {
    const winnerDirection = selfId < remoteId ? 'out' : 'in';
    return a.direction === winnerDirection;
  }
  return a.openedAt >= b.openedAt;
}
