// Election is pure: replay joins, leaves, ties and flapping on several simulated peers and check
// that they end up agreeing, with terms only moving up; then random partial topologies.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decide, type Leadership, type Member, supersedes } from '../../peer/election.ts';

const m = (id: string, startedAt: number): Member => ({ id, startedAt });
const A = m('a', 100);
const B = m('b', 200);
const C = m('c', 300);
const none: Leadership = { term: 0, coordinator: null };

test('the longest-running live peer is chosen; only it takes the lead', () => {
  assert.equal(decide([A, B, C], 'a', none), { action: 'lead', term: 1 });
  assert.equal(decide([A, B, C], 'b', none), { action: 'await', candidate: 'a' });
  assert.equal(decide([C, B, A], 'c', none), { action: 'await', candidate: 'a' });
});

test('equal start times are broken by id, the same way everywhere', () => {
  const x = m('x', 5);
  const y = m('y', 5);
  assert.equal(decide([y, x], 'x', none), { action: 'lead', term: 1 });
  assert.equal(decide([x, y], 'y', none), { action: 'await', candidate: 'x' });
});

test('a newcomer never displaces a live coordinator, even an older one', () => {
  const old = m('old', 1); // e.g. a machine whose clock is behind
  const current: Leadership = { term: 4, coordinator: 'b' };
  assert.equal(decide([old, B, C], 'old', current), { action: 'keep' });
  assert.equal(decide([old, B, C], 'c', current), { action: 'keep' });
});

test('when the coordinator leaves, the oldest survivor leads with a higher term', () => {
  const current: Leadership = { term: 3, coordinator: 'a' };
  assert.equal(decide([B, C], 'b', current), { action: 'lead', term: 4 });
  assert.equal(decide([B, C], 'c', current), { action: 'await', candidate: 'b' });
});

test('stale terms are ignored; higher terms win', () => {
  const at = (id: string) => ({ a: 100, b: 200, c: 300 })[id];
  const current: Leadership = { term: 5, coordinator: 'b' };
  assert.not.ok(supersedes({ term: 4, coordinator: 'a' }, current, at));
  assert.ok(supersedes({ term: 6, coordinator: 'c' }, current, at));
  assert.not.ok(supersedes({ term: 5, coordinator: 'b' }, current, at), 'same announcement again');
  assert.not.ok(supersedes({ term: 9, coordinator: null }, current, at), 'an empty announcement');
  assert.ok(supersedes({ term: 0, coordinator: 'c' }, none, at), 'anything beats nothing');
});

test('two coordinators of the same term resolve to the one that started first', () => {
  const at = (id: string) => ({ a: 100, b: 200 })[id];
  assert.ok(supersedes({ term: 2, coordinator: 'a' }, { term: 2, coordinator: 'b' }, at));
  assert.not.ok(supersedes({ term: 2, coordinator: 'b' }, { term: 2, coordinator: 'a' }, at));
});

/** A small simulation: each peer has its own view and leadership; announcements are delivered to all. */
function simulate(peers: Member[], views: Record<string, string[]>, start: Record<string, Leadership>) {
  const state = { ...start };
  const byId = Object.fromEntries(peers.map((p) => [p.id, p]));
  const at = (id: string) => byId[id]?.startedAt;
  for (let round = 0; round < 5; round++) {
    const announcements: Leadership[] = [];
    for (const p of peers) {
      const live = views[p.id].map((id) => byId[id]);
      const d = decide(live, p.id, state[p.id]);
      if (d.action === 'lead') {
        state[p.id] = { term: d.term, coordinator: p.id };
        announcements.push(state[p.id]);
      }
    }
    for (const ann of announcements) {
      for (const p of peers) {
        if (views[p.id].includes(ann.coordinator!) && supersedes(ann, state[p.id], at)) state[p.id] = ann;
      }
    }
  }
  return state;
}

test('three peers starting together agree on one coordinator in term 1', () => {
  const all = ['a', 'b', 'c'];
  const s = simulate([A, B, C], { a: all, b: all, c: all }, { a: none, b: none, c: none });
  assert.equal(s.a, { term: 1, coordinator: 'a' });
  assert.equal(s.b, s.a);
  assert.equal(s.c, s.a);
});

test('flapping: a peer that briefly lost the coordinator takes over, and everyone follows the higher term', () => {
  const all = ['a', 'b', 'c'];
  const t: Leadership = { term: 1, coordinator: 'a' };
  // b lost its link to a (and thinks it is the oldest live peer); a and c still see everyone.
  let s = simulate([A, B, C], { a: all, b: ['b', 'c'], c: all }, { a: t, b: t, c: t });
  assert.equal(s.b, { term: 2, coordinator: 'b' });
  assert.equal(s.c, s.b, 'c follows the higher term');
  // The link comes back: nobody moves back to a, because b is live and holds the higher term.
  s = simulate([A, B, C], { a: all, b: all, c: all }, { ...s, a: s.b });
  assert.equal(new Set(Object.values(s).map((x) => `${x.term}/${x.coordinator}`)).size, 1);
  assert.equal(s.a, { term: 2, coordinator: 'b' });
});

test('a split brain heals: the same term on both sides resolves to the older coordinator', () => {
  const at = (id: string) => ({ a: 100, c: 300 })[id];
  const left: Leadership = { term: 2, coordinator: 'a' };
  const right: Leadership = { term: 2, coordinator: 'c' };
  assert.ok(supersedes(left, right, at));
  assert.not.ok(supersedes(right, left, at));
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

/** Every peer exchanges announcements with its links and decides, round after round, until quiet. */
function settle(members: Member[], graph: Graph, start: Record<string, Leadership>, maxRounds = 60) {
  const state: Record<string, Leadership> = { ...start };
  const startOf = (id: string) => members.find((m) => m.id === id)?.startedAt;
  const linked = (a: string, b: string) => graph.has(edge(a, b));
  let quiet = 0;
  let rounds = 0;
  let maxTerm = Math.max(...Object.values(state).map((l) => l.term));
  for (; rounds < maxRounds && quiet < 3; rounds++) {
    const before = JSON.stringify(state);
    for (const p of members) {
      for (const q of members) {
        if (!linked(p.id, q.id)) continue;
        const ann = state[q.id];
        if (state[p.id].coordinator === q.id && ann.coordinator !== q.id) {
          state[p.id] = { term: Math.max(state[p.id].term, ann.term), coordinator: null };
        }
        const c = ann.coordinator;
        // Only the coordinator's own announcement counts, over our own link to it.
        if (c === q.id && supersedes(ann, state[p.id], startOf)) state[p.id] = ann;
      }
    }
    for (const p of members) {
      const live = members.filter((m) => m.id === p.id || linked(p.id, m.id));
      const followed = live
        .filter((m) => m.id !== p.id)
        .map((m) => ({ peer: m.id, leadership: state[m.id], coordinatorStartedAt: state[m.id].coordinator ? startOf(state[m.id].coordinator!) : undefined }));
      const d = decide(live, p.id, state[p.id], followed);
      if (d.action === 'lead') state[p.id] = { term: d.term, coordinator: p.id };
      else if (d.action === 'defer') state[p.id] = { term: d.term, coordinator: null };
      else if (d.action === 'await' && state[p.id].coordinator && !linked(p.id, state[p.id].coordinator!)) {
        state[p.id] = { term: state[p.id].term, coordinator: null };
      }
    }
    maxTerm = Math.max(maxTerm, ...Object.values(state).map((l) => l.term));
    quiet = JSON.stringify(state) === before ? quiet + 1 : 0;
  }
  return { state, settled: quiet >= 3, rounds, maxTerm };
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
