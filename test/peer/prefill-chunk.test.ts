import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { defaults } from '../../core/defaults.ts';
import { prefillChunkSize } from '../../peer/prefill-chunk.ts';

test('one stage: mlx_lm’s own step size, whatever the prompt', () => {
  assert.is(prefillChunkSize(10, 1), defaults.prefillChunkMax);
  assert.is(prefillChunkSize(100_000, 1), defaults.prefillChunkMax);
});

test('several stages: about prompt ÷ (2 × stages), so every stage has chunks to overlap', () => {
  // 1,001 tokens: 1,000 chunked (the last one is sampled alone) → 4 chunks of 250 over 2 stages.
  assert.is(prefillChunkSize(1001, 2), 250);
  assert.is(prefillChunkSize(1001, 4), 125);
  const n = 1001;
  const chunk = prefillChunkSize(n, 2);
  assert.is(Math.ceil((n - 1) / chunk), 4);
});

test('bounded: never below the minimum nor above the maximum', () => {
  assert.is(prefillChunkSize(2, 2), defaults.prefillChunkMin);
  assert.is(prefillChunkSize(50, 3), defaults.prefillChunkMin);
  assert.is(prefillChunkSize(40_001, 2), defaults.prefillChunkMax);
  assert.is(prefillChunkSize(1001, 2, { chunksPerStage: 4, min: 8, max: 200 }), 125);
  assert.is(prefillChunkSize(1001, 2, { chunksPerStage: 1, min: 8, max: 64 }), 64);
});

test.run();
