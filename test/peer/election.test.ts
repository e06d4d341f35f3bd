// Election is pure: replay joins, leaves, ties and flapping on several simulated peers and check
// that they end up agreeing, with terms only moving up; then random partial topologies.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decide, type Followed, type Leadership, type Member } from '../../peer/election.ts';

const m = (id: string, startedAt: number): Member => ({ id, startedAt });
const A = m('a', 100);
const B = m('b', 200);
const C = m('c', 300);
const none: Leadership = { term: 0, coordinator: null };

const claim = (peer: string, term: number, solo = false) => ({ peer, leadership: { term, coordinator: peer, ...(solo && { solo }) } });
const follows = (peer: string, coordinator: string | null, term: number) => ({ peer, leadership: { term, coordinator } });
/** Linked peers that said they follow nobody yet. */
const quiet = (term: number, ...peers: string[]) => peers.map((p) => follows(p, null, term));

test('the longest-running live peer is chosen; only it takes the lead', () => {
  assert.equal(decide([A, B, C], 'a', none, quiet(0, 'b', 'c')), { action: 'lead', term: 1, solo: false });
  assert.equal(decide([A, B, C], 'b', none, quiet(0, 'a', 'c')), { action: 'await', candidate: 'a', term: 0 });
  assert.equal(decide([C, B, A], 'c', none, quiet(0, 'a', 'b')), { action: 'await', candidate: 'a', term: 0 });
});

test('no election before every linked peer has said what it follows (a link just up may bring a coordinator)', () => {
  assert.equal(decide([A, B, C], 'a', none, quiet(0, 'b')), { action: 'await', candidate: 'c', term: 0 });
});

test('equal start times are broken by id, the same way everywhere', () => {
  const x = m('x', 5);
  const y = m('y', 5);
  assert.equal(decide([y, x], 'x', none, quiet(0, 'y')), { action: 'lead', term: 1, solo: false });
  assert.equal(decide([x, y], 'y', none, quiet(0, 'x')), { action: 'await', candidate: 'x', term: 0 });
});

test('a newcomer never displaces a live coordinator, even an older one', () => {
  const old = m('old', 1); // e.g. a machine whose clock is behind
  const current: Leadership = { term: 4, coordinator: 'b' };
  assert.equal(decide([old, B, C], 'old', current, [claim('b', 4), follows('c', 'b', 4)]), { action: 'keep' });
  assert.equal(decide([old, B, C], 'c', current, [claim('b', 4), follows('old', 'b', 4)]), { action: 'keep' });
  assert.equal(decide([old, B, C], 'old', none, [claim('b', 4), follows('c', 'b', 4)]), { action: 'follow', coordinator: 'b', term: 4 });
});

test('when the coordinator leaves, the oldest survivor leads with a higher term', () => {
  const current: Leadership = { term: 3, coordinator: 'a' };
  assert.equal(decide([B, C], 'b', current, quiet(3, 'c')), { action: 'lead', term: 4, solo: false });
  assert.equal(decide([B, C], 'c', current, quiet(3, 'b')), { action: 'await', candidate: 'b', term: 3 });
});

test('a peer without a coordinator follows a claim; a solo claim only at a higher term, never a same-term leftover', () => {
  assert.equal(decide([A, B, C], 'c', none, [claim('b', 1, true)]), { action: 'follow', coordinator: 'b', term: 1 });
  // a (term 3) is gone; b still says it leads solo at term 3 (it led before its links came up): not a new election.
  assert.equal(decide([B, C], 'b', { term: 3, coordinator: null }, [follows('c', null, 3)]), { action: 'lead', term: 4, solo: false });
  assert.equal(decide([B, C], 'c', { term: 3, coordinator: null }, [claim('b', 3, true)]), { action: 'await', candidate: 'b', term: 3 });
  assert.equal(decide([B, C], 'b', { term: 3, coordinator: 'b', solo: true }, [follows('c', null, 3)]), { action: 'lead', term: 4, solo: false });
  assert.equal(decide([B, C], 'c', { term: 3, coordinator: null }, [claim('b', 4)]), { action: 'follow', coordinator: 'b', term: 4 });
  assert.equal(decide([C], 'c', { term: 3, coordinator: null }), { action: 'lead', term: 4, solo: true });
});

test('a claim made with links outweighs a solo one whatever its term; the solo one follows at its own term, taken over', () => {
  const a1: Leadership = { term: 1, coordinator: 'a' };
  // c led alone at term 2 while cut off; b, which follows a, keeps a.
  assert.equal(decide([A, B, C], 'b', a1, [claim('a', 1), claim('c', 2, true)]), { action: 'keep' });
  // c follows a at term 2, and a takes that term over: no new term.
  assert.equal(decide([A, B, C], 'c', { term: 2, coordinator: 'c', solo: true }, [claim('a', 1), follows('b', 'a', 1)]), { action: 'follow', coordinator: 'a', term: 2 });
  assert.equal(decide([A, C], 'c', { term: 2, coordinator: null }, [claim('a', 1)]), { action: 'follow', coordinator: 'a', term: 2 });
  assert.equal(decide([A, B, C], 'a', a1, [follows('b', 'a', 1), follows('c', 'a', 2)]), { action: 'lead', term: 2, solo: false });
  assert.equal(decide([A, B, C], 'b', a1, [claim('a', 2), follows('c', 'a', 2)]), { action: 'follow', coordinator: 'a', term: 2 });
  // Linked only to b, c cannot reach a: it steps down for it rather than lead beside it.
  assert.equal(decide([B, C], 'c', { term: 2, coordinator: 'c', solo: true }, [follows('b', 'a', 1)]), { action: 'defer', coordinator: 'a', term: 2 });
  // A solo coordinator that gets a follower is solo no more.
  assert.equal(decide([A, B], 'a', { term: 1, coordinator: 'a', solo: true }, [follows('b', 'a', 1)]), { action: 'lead', term: 1, solo: false });
});

test('two coordinators of one term, both solo or neither, resolve to the one that started first', () => {
  assert.equal(decide([A, C], 'c', { term: 2, coordinator: 'c' }, [claim('a', 2)]), { action: 'follow', coordinator: 'a', term: 2 });
  assert.equal(decide([A, C], 'a', { term: 2, coordinator: 'a' }, [claim('c', 2)]), { action: 'keep' });
  assert.equal(decide([A, C], 'c', { term: 2, coordinator: 'c', solo: true }, [claim('a', 2, true)]), { action: 'follow', coordinator: 'a', term: 2 });
  assert.equal(decide([A, B, C], 'b', { term: 2, coordinator: 'c' }, [claim('a', 2), claim('c', 2)]), { action: 'follow', coordinator: 'a', term: 2 });
});

// --- partial connectivity: property tests over random topologies ------------------------------
//
// The guarantee, for any undirected "has a live link" graph, from any start (fresh or converged):
// 1. it settles: no leadership changes after a bounded number of exchanges, and terms stay small
//    (no storm: at most one term per peer from a fresh start, one new term per change of the graph);
// 2. a peer follows only a coordinator it has its own link to, or none (degraded);
// 3. two coordinators are never linked to each other, and each connected component has one or more;
// 4. where reachability is transitive (the component is fully connected) there is exactly one
//    coordinator and every peer follows it;
// 5. A–B, B–C up and A–C cut settles on one coordinator, followed by every peer that can reach it;
//    the other is explicitly without one (degraded), whatever the ages.

/** Small deterministic PRNG, so a failing topology can be replayed from its seed. */
function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Graph = Set<string>;
const edge = (a: string, b: string) => (a < b ? `${a}|${b}` : `${b}|${a}`);

/**
 * Peers as peer.ts runs them: each keeps what every linked peer last announced (its leadership, solo
 * or not), forgets a peer when the link drops, and decides
 * on what it heard. A peer leads only after its settle period (it may follow before). Announcements
 * travel one link at a time, in any order: `step` delivers one and lets the receiver decide.
 */
class Sim {
  readonly state: Record<string, Leadership>;
  readonly graph: Graph;
  private readonly heard: Record<string, Map<string, Followed>> = {};
  private readonly settled: Set<string>;
  private readonly dead = new Set<string>();
  maxTerm: number;

  constructor(readonly members: Member[], graph: Graph, start: Record<string, Leadership>, settled = members.map((x) => x.id)) {
    this.state = { ...start };
    this.graph = new Set(graph);
    this.settled = new Set(settled);
    for (const x of members) this.heard[x.id] = new Map();
    this.maxTerm = Math.max(...Object.values(this.state).map((l) => l.term));
  }

  linked(a: string, b: string): boolean {
    return this.graph.has(edge(a, b));
  }

  link(a: string, b: string): void {
    this.graph.add(edge(a, b));
  }

  unlink(a: string, b: string): void {
    this.graph.delete(edge(a, b));
    this.heard[a].delete(b);
    this.heard[b].delete(a);
  }

  settle(id: string): void {
    this.settled.add(id);
  }

  /** The same id back as a new instance (a newcomer: started last, fresh, listening before it may lead). */
  restart(id: string, startedAt: number): void {
    const i = this.members.findIndex((x) => x.id === id);
    this.members[i] = { id, startedAt };
    this.state[id] = none;
    this.heard[id].clear();
    this.dead.delete(id);
    this.settled.delete(id);
  }

  /** kill -9: its links drop and it never speaks again. */
  kill(id: string): void {
    for (const x of this.members) this.unlink(id, x.id);
    this.dead.add(id);
  }

  /** What `from` tells its links now. */
  private announcement(from: string): Followed {
    const l = this.state[from];
    const startOf = (id: string) => this.members.find((x) => x.id === id)?.startedAt;
    return { peer: from, leadership: l, coordinatorStartedAt: l.coordinator ? startOf(l.coordinator) : undefined };
  }

  deliver(from: string, to: string): void {
    if (this.linked(from, to)) this.heard[to].set(from, this.announcement(from));
  }

  decide(id: string): void {
    if (this.dead.has(id)) return;
    const live = this.members.filter((x) => x.id === id || this.linked(id, x.id));
    const d = decide(live, id, this.state[id], [...this.heard[id].values()]);
    if (d.action === 'lead' && (this.settled.has(id) || this.state[id].coordinator === id)) this.state[id] = { term: d.term, coordinator: id, ...(d.solo && { solo: true }) };
    else if (d.action === 'follow') this.state[id] = { term: d.term, coordinator: d.coordinator };
    else if (d.action === 'defer' || d.action === 'await') this.state[id] = { term: d.term, coordinator: null };
    this.maxTerm = Math.max(this.maxTerm, this.state[id].term);
  }

  /** One announcement over a random link, then the receiver decides. */
  step(random: () => number): void {
    const edges = [...this.graph];
    if (!edges.length) return this.decide(this.members[Math.floor(random() * this.members.length)].id);
    const [a, b] = edges[Math.floor(random() * edges.length)].split('|');
    const [from, to] = random() < 0.5 ? [a, b] : [b, a];
    this.deliver(from, to);
    this.decide(to);
  }

  /** Everyone announces to every link, then everyone decides. */
  round(): void {
    for (const p of this.members) for (const q of this.members) this.deliver(q.id, p.id);
    for (const p of this.members) this.decide(p.id);
  }

  /** Rounds until nothing changes for three of them. */
  run(maxRounds = 60) {
    let quiet = 0;
    let rounds = 0;
    for (; rounds < maxRounds && quiet < 3; rounds++) {
      const before = JSON.stringify(this.state);
      this.round();
      quiet = JSON.stringify(this.state) === before ? quiet + 1 : 0;
    }
    return { state: this.state, settled: quiet >= 3, rounds, maxTerm: this.maxTerm };
  }
}

/** Every peer exchanges announcements with its links and decides, round after round, until quiet. */
function settle(members: Member[], graph: Graph, start: Record<string, Leadership>, maxRounds = 60) {
  return new Sim(members, graph, start).run(maxRounds);
}

function components(members: Member[], graph: Graph): string[][] {
  const seen = new Set<string>();
  const out: string[][] = [];
  for (const m of members) {
    if (seen.has(m.id)) continue;
    const comp: string[] = [];
    const stack = [m.id];
    seen.add(m.id);
    while (stack.length) {
      const x = stack.pop()!;
      comp.push(x);
      for (const y of members) if (!seen.has(y.id) && graph.has(edge(x, y.id))) (seen.add(y.id), stack.push(y.id));
    }
    out.push(comp);
  }
  return out;
}

function checkGuarantees(members: Member[], graph: Graph, r: ReturnType<typeof settle>, what: string) {
  const linked = (a: string, b: string) => graph.has(edge(a, b));
  assert.ok(r.settled, `${what}: still changing after ${r.rounds} rounds`);
  const coordinators = members.filter((m) => r.state[m.id].coordinator === m.id).map((m) => m.id);
  for (const m of members) {
    const c = r.state[m.id].coordinator;
    assert.ok(c === null || c === m.id || linked(m.id, c), `${what}: ${m.id} follows ${c} without a link to it`);
    assert.ok(c === null || c === m.id || coordinators.includes(c), `${what}: ${m.id} follows ${c}, which does not coordinate`);
  }
  for (const x of coordinators) for (const y of coordinators) assert.ok(x === y || !linked(x, y), `${what}: linked coordinators ${x}, ${y}`);
  for (const comp of components(members, graph)) {
    assert.ok(comp.some((id) => coordinators.includes(id)), `${what}: no coordinator in ${comp}`);
    const clique = comp.every((a) => comp.every((b) => a === b || linked(a, b)));
    if (clique) {
      const followed = new Set(comp.map((id) => r.state[id].coordinator));
      assert.is(followed.size, 1, `${what}: a fully linked component follows ${[...followed]}`);
      assert.ok(!followed.has(null), `${what}: a fully linked component without a coordinator`);
    }
  }
}

function randomCluster(random: () => number, n: number) {
  const members = Array.from({ length: n }, (_, i) => m(`p${i}`, Math.floor(random() * 1000) + i / 100));
  const density = 0.3 + random() * 0.7;
  const graph: Graph = new Set();
  for (const a of members) for (const b of members) if (a.id < b.id && random() < density) graph.add(edge(a.id, b.id));
  return { members, graph };
}

const fresh = (members: Member[]) => Object.fromEntries(members.map((x) => [x.id, none]));

test('property: random partial topologies from a fresh start settle with the guarantees, terms at most one per peer', () => {
  for (let seed = 1; seed <= 400; seed++) {
    const random = rng(seed);
    const { members, graph } = randomCluster(random, 2 + Math.floor(random() * 6));
    const r = settle(members, graph, fresh(members));
    checkGuarantees(members, graph, r, `seed ${seed}`);
    // Only an older peer can out-term a coordinator it cannot reach, so each peer adds at most one term.
    assert.ok(r.maxTerm <= members.length, `seed ${seed}: term ${r.maxTerm} for ${members.length} peers`);
  }
});

test('property: from a converged full mesh, any cut settles with at most one new term, and so does the heal', () => {
  for (let seed = 1; seed <= 300; seed++) {
    const random = rng(seed * 7919);
    const n = 3 + Math.floor(random() * 5);
    const members = Array.from({ length: n }, (_, i) => m(`p${i}`, Math.floor(random() * 1000) + i / 100));
    const full: Graph = new Set();
    for (const a of members) for (const b of members) if (a.id < b.id) full.add(edge(a.id, b.id));
    const converged = settle(members, full, fresh(members));
    checkGuarantees(members, full, converged, `seed ${seed} full`);
    const cut: Graph = new Set([...full].filter(() => random() > 0.4));
    const during = settle(members, cut, converged.state);
    checkGuarantees(members, cut, during, `seed ${seed} cut`);
    assert.ok(during.maxTerm <= converged.maxTerm + 1, `seed ${seed}: cut took terms ${converged.maxTerm} → ${during.maxTerm}`);
    const healed = settle(members, full, during.state);
    checkGuarantees(members, full, healed, `seed ${seed} healed`);
    assert.ok(healed.maxTerm <= during.maxTerm + 1, `seed ${seed}: heal took terms ${during.maxTerm} → ${healed.maxTerm}`);
  }
});

const fullMesh = (members: Member[]): Graph => new Set(members.flatMap((a) => members.filter((b) => a.id < b.id).map((b) => edge(a.id, b.id))));
const shuffle = <T>(xs: T[], random: () => number): T[] => xs.map((x) => [random(), x] as const).sort((a, b) => a[0] - b[0]).map(([, x]) => x);
const coordinatorOf = (sim: Sim, ids: string[]) => new Set(ids.map((id) => sim.state[id].coordinator));

test('property: a peer cut off and back, its links dropping and returning one by one in any order: the others never change coordinator, one new term in all', () => {
  for (let seed = 1; seed <= 400; seed++) {
    const random = rng(seed * 104729);
    const n = 3 + Math.floor(random() * 5); // with two, each is cut off as much as the other
    const members = Array.from({ length: n }, (_, i) => m(`p${i}`, Math.floor(random() * 1000) + i / 100));
    const full = fullMesh(members);
    const sim = new Sim(members, full, fresh(members));
    const term0 = sim.run().maxTerm;
    const x = members[Math.floor(random() * n)].id;
    const others = members.map((p) => p.id).filter((id) => id !== x);
    const what = `seed ${seed} (${n} peers, ${x} cut)`;
    for (const other of shuffle(others, random)) {
      sim.unlink(x, other);
      for (let i = Math.floor(random() * 4 * n); i > 0; i--) sim.step(random);
    }
    sim.run();
    const leaders = coordinatorOf(sim, others);
    assert.is(leaders.size, 1, `${what}: the others follow ${[...leaders]}`);
    const [leader] = leaders;
    assert.ok(leader && leader !== x, `${what}: the others follow ${leader}`);
    for (const other of shuffle(others, random)) {
      sim.link(x, other);
      for (let i = Math.floor(random() * 4 * n); i > 0; i--) {
        sim.step(random);
        const now = coordinatorOf(sim, others);
        assert.ok(now.size === 1 && now.has(leader), `${what}: while healing the others follow ${[...now]}, not ${leader}: ${JSON.stringify(sim.state)}`);
      }
    }
    const healed = sim.run();
    checkGuarantees(members, full, healed, what);
    assert.is(healed.state[x].coordinator, leader, `${what}: ${x} rejoins under ${leader}`);
    assert.ok(healed.maxTerm <= term0 + 1, `${what}: terms ${term0} → ${healed.maxTerm}`);
  }
});

test('property: peers that come up in any order (some leading alone first), then lose their coordinator: the survivors follow one at a higher term; back, it follows it, no new term', () => {
  for (let seed = 1; seed <= 400; seed++) {
    const random = rng(seed * 15485863);
    const n = 2 + Math.floor(random() * 5);
    const members = Array.from({ length: n }, (_, i) => m(`p${i}`, i * 10 + random()));
    const sim = new Sim(members, new Set(), fresh(members), []);
    // Links come up and settle periods end in a random interleaving, announcements in between.
    const events = shuffle([...[...fullMesh(members)].map((e) => () => sim.link(...(e.split('|') as [string, string]))), ...members.map((p) => () => sim.settle(p.id))], random);
    for (const event of events) {
      event();
      for (let i = Math.floor(random() * 3 * n); i > 0; i--) sim.step(random);
    }
    const ids = members.map((p) => p.id);
    const what = `seed ${seed} (${n} peers)`;
    const before = sim.run();
    checkGuarantees(members, fullMesh(members), before, what);
    const [dead] = coordinatorOf(sim, ids);
    const deadTerm = sim.state[dead!].term;
    sim.kill(dead!);
    const survivors = members.filter((p) => p.id !== dead);
    for (let i = Math.floor(random() * 6 * n); i > 0; i--) sim.step(random);
    const after = sim.run();
    checkGuarantees(survivors, fullMesh(survivors), after, `${what} after ${dead} died`);
    const next = after.state[survivors[0].id];
    assert.ok(next.term > deadTerm, `${what}: ${dead} led at term ${deadTerm}, now ${next.coordinator} at term ${next.term}`);
    // It comes back as a newcomer, its links and settle period in any order: nothing moves.
    sim.restart(dead!, 10_000);
    const back = shuffle([...survivors.map((p) => () => sim.link(dead!, p.id)), () => sim.settle(dead!)], random);
    for (const event of back) {
      event();
      for (let i = Math.floor(random() * 4 * n); i > 0; i--) {
        sim.step(random);
        const now = coordinatorOf(sim, survivors.map((p) => p.id));
        assert.ok(now.size === 1 && now.has(next.coordinator), `${what}: while ${dead} rejoins the others follow ${[...now]}: ${JSON.stringify(sim.state)}`);
      }
    }
    const rejoined = sim.run();
    checkGuarantees(members, fullMesh(members), rejoined, `${what} after ${dead} rejoined`);
    assert.equal(rejoined.state[dead!], { term: next.term, coordinator: next.coordinator }, `${what}: ${dead} rejoins as a follower, no new term`);
    assert.is(rejoined.maxTerm, after.maxTerm, `${what}: no new term`);
  }
});

test('A–B and B–C up, A–C cut: one coordinator for every age order; the peer that cannot reach it is degraded', () => {
  const orders = [[1, 2, 3], [1, 3, 2], [2, 1, 3], [2, 3, 1], [3, 1, 2], [3, 2, 1]];
  const line: Graph = new Set([edge('a', 'b'), edge('b', 'c')]);
  for (const [ta, tb, tc] of orders) {
    const members = [m('a', ta), m('b', tb), m('c', tc)];
    for (const start of [fresh(members), settle(members, new Set([...line, edge('a', 'c')]), fresh(members)).state]) {
      const r = settle(members, line, start);
      const what = `ages a=${ta} b=${tb} c=${tc}`;
      checkGuarantees(members, line, r, what);
      const coordinators = members.filter((x) => r.state[x.id].coordinator === x.id);
      assert.is(coordinators.length, 1, `${what}: ${JSON.stringify(r.state)}`);
      const leader = coordinators[0].id;
      for (const x of members) {
        const c = r.state[x.id].coordinator;
        assert.ok(c === leader || (c === null && x.id !== 'b'), `${what}: ${x.id} → ${c}`);
      }
      assert.is(r.state.b.coordinator, leader, 'the peer linked to both follows the coordinator');
      assert.ok(r.maxTerm <= Math.max(...Object.values(start).map((l) => l.term)) + 1, `${what}: term ${r.maxTerm}`);
    }
  }
});

test.run();
