import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makePlan, type ModelShape, planLayers, samePipeline } from '../../peer/planner.ts';
import type { PeerInfo } from '../../transport/messages.ts';
import { isMeshError } from '../../core/errors.ts';

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

test('a tied head is the embedding: the last stage holds it too', () => {
  const peers = [
    { id: 'a', usableBytes: 5 * GiB },
    { id: 'b', usableBytes: 3 * GiB },
  ];
  assert.equal(ranges(planLayers(model(4, 1, 3, 0), peers)), [[0, 2], [2, 4]]);
  try {
    planLayers({ ...model(4, 1, 3, 0), tied: true }, peers);
    assert.unreachable();
  } catch (err) {
    assert.ok(isMeshError(err, 'MODEL_TOO_LARGE'));
    assert.match((err as Error).message, /would need 5\.00 GiB but has 3\.00 GiB/);
  }
});

// The default model's shape, in MiB: 30 layers of 14 and a tied 112 MiB embedding that is also the head.
const MiB = 2 ** 20;
const smolLike: ModelShape = { layerBytes: Array(30).fill(14 * MiB), embedBytes: 112 * MiB, headBytes: 0, tied: true };
const roomy = [
  { id: 'a', usableBytes: 8 * GiB },
  { id: 'b', usableBytes: 8 * GiB },
];
const work = (m: ModelShape, [start, end]: [number, number], headShare: number) =>
  m.layerBytes.slice(start, end).reduce((a, b) => a + b, 0) + (end === m.layerBytes.length ? headShare * (m.tied ? m.embedBytes : m.headBytes) : 0);

test('head work share 1: the last stage gets fewer layers, so both stages read as many bytes per token', () => {
  const p = planLayers(smolLike, roomy, { headWorkShare: 1 });
  assert.equal(ranges(p), [[0, 19], [19, 30]]);
  assert.is(work(smolLike, p.stages[0].layers, 1), work(smolLike, p.stages[1].layers, 1));
});

test('head work share 0 splits layers evenly; a share between moves part of the way', () => {
  assert.equal(ranges(planLayers(smolLike, roomy, { headWorkShare: 0 })), [[0, 15], [15, 30]]);
  assert.equal(ranges(planLayers(smolLike, roomy, { headWorkShare: 0.5 })), [[0, 17], [17, 30]]);
});

test('an untied head counts as work, the embedding (one row per token) does not', () => {
  const p = planLayers(model(8, 1, 2, 2), roomy, { headWorkShare: 1 });
  // 8 layers + a 2 GiB head = 10 units of work: 5 layers, then 3 layers and the head.
  assert.equal(ranges(p), [[0, 5], [5, 8]]);
});

test('memory wins over work balance: the first stage takes no more layers than fit', () => {
  // Balanced work wants 19 layers first (19 × 14 + the 112 MiB embedding = 378 MiB); 340 MiB holds 16.
  const p = planLayers(smolLike, [
    { id: 'a', usableBytes: 340 * MiB },
    { id: 'b', usableBytes: 340 * MiB },
  ], { headWorkShare: 1 });
  assert.equal(ranges(p), [[0, 16], [16, 30]]);
});

test('work shares follow memory shares with the head counted: three peers, one twice the others', () => {
  const p = planLayers(model(12, 1, 0, 4), [
    { id: 'a', usableBytes: 40 * GiB },
    { id: 'b', usableBytes: 20 * GiB },
    { id: 'c', usableBytes: 20 * GiB },
  ], { headWorkShare: 1 });
  // 16 units of work, shared 8 : 4 : 4; the last stage would hold only its head, but keeps one layer.
  assert.equal(ranges(p), [[0, 8], [8, 11], [11, 12]]);
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

const peerInfo = (id: string, startedAt: number, usableMemory: number): PeerInfo => ({
  id,
  name: id,
  hostname: id,
  startedAt,
  port: 1,
  apiPort: 1,
  addresses: [],
  capabilities: { platform: 'darwin', arch: 'arm64', totalMemory: 2 * usableMemory, freeMemory: 0, usableMemory },
});

test('the plan message: the coordinator is rank 0, then peers by age; shares follow reported memory', () => {
  const live = [peerInfo('young', 300, 16 * GiB), peerInfo('coord', 200, 16 * GiB), peerInfo('old', 100, 32 * GiB)];
  const facts = { n_layers: 8, layer_bytes: Array(8).fill(GiB), embed_bytes: 0, head_bytes: 0, context_length: 4096, eos_token_ids: [2] };
  const msg = makePlan({ selfId: 'coord', term: 3, version: 7, spec: 'default', name: 'm', model: facts, live });
  assert.equal(msg.stages.map((s) => [s.id, s.rank, s.layers]), [['coord', 0, [0, 2]], ['old', 1, [2, 6]], ['young', 2, [6, 8]]]);
  assert.equal([msg.term, msg.version, msg.meta.contextLength, msg.meta.eosTokenIds], [3, 7, 4096, [2]]);
  const again = makePlan({ selfId: 'coord', term: 4, version: 8, spec: 'default', name: 'm', model: facts, live: [...live].reverse() });
  assert.ok(samePipeline(msg, again), 'same peers in any order, another term and version: the same stages');
  const tiny = { ...peerInfo('tiny', 400, 0.1 * GiB) };
  const withTiny = makePlan({ selfId: 'coord', term: 3, version: 8, spec: 'default', name: 'm', model: facts, live: [...live, tiny] });
  assert.ok(samePipeline(msg, withTiny), 'a peer left out changes no stage');
  assert.equal(withTiny.excluded.map((e) => e.id), ['tiny']);
  const fewer = makePlan({ selfId: 'coord', term: 3, version: 8, spec: 'default', name: 'm', model: facts, live: live.slice(1) });
  assert.not.ok(samePipeline(msg, fewer), 'a peer left');
  assert.not.ok(samePipeline(msg, { ...msg, model: 'other.gguf' }), 'another model');
});

test('MLX_MESH_SPLIT_HEAD=1: the plan splits the head when half of it fits beside the embedding, else keeps it whole', () => {
  const was = process.env.MLX_MESH_SPLIT_HEAD;
  process.env.MLX_MESH_SPLIT_HEAD = '1';
  try {
    // Untied: a 2 GiB embedding and a 2 GiB head beside two 2 GiB layers.
    const facts = { n_layers: 2, layer_bytes: [2 * GiB, 2 * GiB], embed_bytes: 2 * GiB, head_bytes: 2 * GiB, context_length: 4096, eos_token_ids: [2] };
    const plan = (gib: number) =>
      makePlan({ selfId: 'a', term: 1, version: 1, spec: 'default', name: 'm', model: facts, live: [peerInfo('a', 1, gib * GiB), peerInfo('b', 2, gib * GiB)] });
    const roomy = plan(16);
    assert.is(roomy.meta.splitHead, true);
    assert.equal(roomy.stages.map((s) => s.layers), [[0, 1], [1, 2]]);
    // 4.5 GiB each: split, the first stage needs 2 + 1 + 2 = 5 GiB; whole, each stage needs 4.
    const tight = plan(4.5);
    assert.is(tight.meta.splitHead, false);
    assert.equal(tight.stages.map((s) => s.layers), [[0, 1], [1, 2]]);
    assert.not.ok(samePipeline(roomy, { ...roomy, meta: { ...roomy.meta, splitHead: false } }), 'a split head is another pipeline');
    const alone = makePlan({ selfId: 'a', term: 1, version: 1, spec: 'default', name: 'm', model: facts, live: [peerInfo('a', 1, 16 * GiB)] });
    assert.is(alone.meta.splitHead, false, 'one stage holds the whole head');
  } finally {
    if (was === undefined) delete process.env.MLX_MESH_SPLIT_HEAD;
    else process.env.MLX_MESH_SPLIT_HEAD = was;
  }
});

test.run();
