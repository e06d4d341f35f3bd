import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FramePool } from '../../transport/frame-pool.ts';

test('a returned frame buffer is reused for the next frame of about its size, never for a much smaller one', () => {
  const pool = new FramePool();
  const a = pool.take(1000);
  assert.is(a.length, 1000);
  pool.give(a);
  const b = pool.take(900);
  assert.is(b.length, 900);
  assert.is(b.buffer, a.buffer, 'reused');
  pool.give(b);
  assert.is.not(pool.take(100).buffer, a.buffer, 'a 1000-byte buffer is not kept busy for 100 bytes');
});

test('buffers the pool did not hand out are never taken in, and only a few idle ones are kept', () => {
  const pool = new FramePool();
  const foreign = Buffer.alloc(1000);
  pool.give(foreign);
  assert.is.not(pool.take(1000).buffer, foreign.buffer);
  const taken = [pool.take(500), pool.take(500), pool.take(500)];
  for (const t of taken) pool.give(t);
  const again = [pool.take(500), pool.take(500), pool.take(500)];
  const reused = again.filter((x) => taken.some((t) => t.buffer === x.buffer));
  assert.is(reused.length, 2);
});

test.run();
