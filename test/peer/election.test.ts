// Election is pure: replay joins, leaves, ties and flapping on several simulated peers and check
// that they end up agreeing, with terms only moving up.
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

test.run();
