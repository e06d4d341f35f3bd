// `mlx-mesh bench weights` as a user runs it, at a tiny size: the JSON's shape, every figure a finite
// number, exactly the checkpoint's tensors sent. Speed is the benchmark's business, never asserted here.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { runCli } from '../helpers/process.ts';

const finite = (x: unknown) => typeof x === 'number' && Number.isFinite(x) && x > 0;

test('bench weights: file copy, source index and mesh fetch MB/s, and their ratio', async () => {
  const r = await runCli(['bench', 'weights', '--mb', '4', '--json'], { env: { MLX_MESH_LOG: 'warn' } });
  assert.is(r.code, 0, r.err);
  assert.match(r.err, /fetching every tensor over the link/, 'progress on stderr');
  const out = JSON.parse(r.out);
  assert.is(out.meta.loadavg.length, 3);
  for (const k of ['copy_mbps', 'index_mbps', 'fetch_mbps']) assert.ok(finite(out[k]), `${k}: ${out[k]}`);
  assert.ok(finite(out.ratios.fetch_vs_copy));
  // Every tensor once, plus the two metadata files (config and tokenizer), nothing more.
  assert.ok(out.sent_bytes < out.meta.bytes && out.sent_bytes > 0.99 * out.meta.bytes - 4096, `${out.sent_bytes} of ${out.meta.bytes}`);
});

test('bench weights refuses a chunk over the source limit', async () => {
  const r = await runCli(['bench', 'weights', '--chunk', '64']);
  assert.is(r.code, 2, r.err);
  assert.match(r.err, /--chunk between 0 and 16 MiB/);
});

test.run();
