import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type ModelShape, planLayers } from '../../peer/planner.ts';
import { isMeshError } from '../../transport/errors.ts';

const GiB = 2 ** 30;
const model = (layers: number, layerGiB: number, embedGiB = 0, headGiB = 0): ModelShape => ({
  layerBytes: Array(layers).fill(layerGiB * GiB),
  embedBytes: embedGiB * GiB,
  headBytes: headGiB * GiB,
});

const ranges = (p: ReturnType<typeof planLayers>) => p.stages.map((s) => s.layers);

test('equal machines get equal contiguous shares covering every layer once', () => {
  const p = planLayers(model(32, 0.5), [
    { id: 'a', usableBytes: 48 * GiB },
    { id: 'b', usableBytes: 48 * GiB },
  ]);
  assert.equal(ranges(p), [[0, 16], [16, 32]]);
  assert.equal(p.stages.map((s) => [s.id, s.rank]), [['a', 0], ['b', 1]]);
});

test('shares follow memory: a 64 GiB Mac takes twice the layers of a 32 GiB one', () => {
  const p = planLayers(model(30, 0.5), [
    { id: 'big', usableBytes: 64 * GiB },
    { id: 'small', usableBytes: 32 * GiB },
  ]);
  assert.equal(ranges(p), [[0, 20], [20, 30]]);
});

test('every participating peer gets at least one layer', () => {
  const p = planLayers(model(5, 0.001), [
    { id: 'a', usableBytes: 100 * GiB },
    { id: 'b', usableBytes: 1 * GiB },
    { id: 'c', usableBytes: 1 * GiB },
  ]);
  assert.equal(ranges(p), [[0, 3], [3, 4], [4, 5]]);
});

test('a peer too small for one layer is left out with a reason', () => {
  const p = planLayers(model(4, 2), [
    { id: 'a', usableBytes: 20 * GiB },
    { id: 'tiny', usableBytes: 1 * GiB },
  ]);
  assert.equal(ranges(p), [[0, 4]]);
  assert.is(p.excluded[0].id, 'tiny');
  assert.match(p.excluded[0].reason, /less than one layer/);
});

test('more peers than layers: the smallest stay out', () => {
  const p = planLayers(model(2, 0.1), [
    { id: 'a', usableBytes: 8 * GiB },
    { id: 'b', usableBytes: 2 * GiB },
    { id: 'c', usableBytes: 4 * GiB },
  ]);
  assert.equal(p.stages.map((s) => s.id), ['a', 'c']);
  assert.match(p.excluded.find((e) => e.id === 'b')!.reason, /only 2 layers/);
});

test('the embedding and head count against the first and last stage', () => {
  // 4 layers of 1 GiB, a 3 GiB embedding: proportional split would give a 2 layers (5 GiB) > 4 GiB.
  const p = planLayers(model(4, 1, 3, 0), [
    { id: 'a', usableBytes: 4.5 * GiB },
    { id: 'b', usableBytes: 4.5 * GiB },
  ]);
  assert.equal(ranges(p), [[0, 1], [1, 4]]);
});

test('a cluster that cannot hold the model gets a clear MODEL_TOO_LARGE', () => {
  try {
    planLayers(model(80, 1.75), [
      { id: 'a', usableBytes: 48 * GiB },
      { id: 'b', usableBytes: 48 * GiB },
    ]);
    assert.unreachable();
  } catch (err) {
    assert.ok(isMeshError(err, 'MODEL_TOO_LARGE'));
    assert.match((err as Error).message, /needs 140\.00 GiB but the cluster has 96\.00 GiB/);
  }
});

test.run();
