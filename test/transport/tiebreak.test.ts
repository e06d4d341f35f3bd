import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { backoffDelay } from '../../transport/backoff.ts';
import { keepFirst } from '../../transport/tiebreak.ts';

test('both ends of a simultaneous dial keep the same socket', () => {
  // Socket 1 dialled by "a", socket 2 dialled by "b". On a, socket 1 is 'out'; on b it is 'in'.
  const onA = { s1: { direction: 'out' as const, openedAt: 10 }, s2: { direction: 'in' as const, openedAt: 11 } };
  const onB = { s1: { direction: 'in' as const, openedAt: 12 }, s2: { direction: 'out' as const, openedAt: 9 } };
  const aKeeps = keepFirst(onA.s1, onA.s2, 'a', 'b') ? 's1' : 's2';
  const bKeeps = keepFirst(onB.s1, onB.s2, 'b', 'a') ? 's1' : 's2';
  assert.is(aKeeps, bKeeps);
  assert.is(aKeeps, 's1', 'the socket dialled by the smaller id');
});

test('between two sockets from the same dialler the newer one is kept', () => {
  assert.not.ok(keepFirst({ direction: 'out', openedAt: 1 }, { direction: 'out', openedAt: 2 }, 'a', 'b'));
  assert.ok(keepFirst({ direction: 'in', openedAt: 3 }, { direction: 'in', openedAt: 2 }, 'a', 'b'));
});

test('backoff grows exponentially, is capped and jittered', () => {
  assert.is(backoffDelay(0, 100, 5000, () => 1), 100);
  assert.is(backoffDelay(3, 100, 5000, () => 1), 800);
  assert.is(backoffDelay(20, 100, 5000, () => 1), 5000);
  assert.is(backoffDelay(3, 100, 5000, () => 0), 400, 'jitter down to half');
});

test.run();
