// How a stage groups decode steps into engine batches. The engine here only records what it was asked
// and answers when the test says so: these tests are about the stage's scheduling, and the real engine's
// batched forwards are checked against mlx_lm in test/e2e/pipeline.test.ts.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Stage, type StageContext } from '../../peer/stage.ts';
import type { ForwardArgs } from '../../peer/supervisor.ts';
import type { Message, MessageOf } from '../../transport/messages.ts';

type Plan = MessageOf<'plan'>;

function plan(stages: number): Plan {
  return {
    type: 'plan',
    term: 1,
    version: 1,
    model: 'm',
    stages: Array.from({ length: stages }, (_, i) => ({ id: `p${i}`, rank: i, layers: [i, i + 1] as [number, number] })),
    excluded: [],
    meta: { name: 'm', nLayers: stages, contextLength: 4096, eosTokenIds: [] },
  };
}

/** Stage 0 of a plan of `stages`, on an engine whose calls wait until the test releases them. */
function stage0(stages: number) {
  const calls: Array<{ requests: string[]; done: () => void }> = [];
  const delivered: Message[] = [];
  const hidden = { dtype: 'float32' as const, shape: [1, 1, 2], data: new Uint8Array(8) };
  const engine: StageContext['engine'] = {
    forward: (args: ForwardArgs) => new Promise((resolve) => calls.push({ requests: [args.request], done: () => resolve({ hidden }) })),
    forwardBatch: (items: ForwardArgs[]) =>
      new Promise((resolve) => calls.push({ requests: items.map((i) => i.request), done: () => resolve({ results: items.map(() => ({ hidden })) }) })),
    release: async () => ({ released: true }),
  };
  const p = plan(stages);
  const stage = new Stage({ selfId: 'p0', selfName: 'p0', planFor: () => p, engine, deliver: async (_to, msg) => void delivered.push(msg) }, { batchWaitMs: 0 });
  const step = (request: string, offset = 10) =>
    stage.forward({ type: 'forward', request, origin: 'o', planVersion: 1, step: 1, offset, tokens: [7], sample: true, sampling: { temperature: 0, topP: 1, seed: null } });
  return { stage, calls, delivered, step };
}

const tick = () => new Promise((r) => setImmediate(r));

async function drain(calls: Array<{ requests: string[]; done: () => void }>, upTo: number): Promise<string[][]> {
  const seen: string[][] = [];
  for (let i = 0; i < upTo; i++) {
    await tick();
    await tick();
    const call = calls[i];
    if (!call) break;
    seen.push(call.requests);
    call.done();
  }
  return seen;
}

test('two stages: four requests step in two groups of two, so both stages have work', async () => {
  const { calls, step } = stage0(2);
  for (const r of ['a', 'b', 'c', 'd']) step(r);
  const batches = await drain(calls, 4);
  assert.equal(batches, [['a', 'b'], ['c', 'd']]);
});

test('one stage: the four requests step as one batch (nothing to overlap with)', async () => {
  const { calls, step } = stage0(1);
  for (const r of ['a', 'b', 'c', 'd']) step(r);
  assert.equal(await drain(calls, 4), [['a', 'b', 'c', 'd']]);
});

test('a group stays together: steps that come back interleaved still go with their last batch-mates', async () => {
  const { calls, step } = stage0(2);
  for (const r of ['a', 'b', 'c', 'd']) step(r);
  assert.equal(await drain(calls, 1), [['a', 'b']]); // c and d now run
  // Their next steps arrive c, a, d, b while the engine runs c and d.
  for (const r of ['c', 'a', 'd', 'b']) step(r, 11);
  const batches = await drain(calls, 4);
  assert.equal(batches.slice(1), [['c', 'd'], ['c', 'd'], ['a', 'b']]);
});

test('a released request no longer counts: three left on two stages step as two and one', async () => {
  const { stage, calls, step } = stage0(2);
  for (const r of ['a', 'b', 'c', 'd']) step(r);
  await drain(calls, 2);
  await stage.release('d');
  for (const r of ['a', 'b', 'c']) step(r, 11);
  const batches = await drain(calls, 4);
  assert.equal(batches.slice(2), [['a', 'b'], ['c']]);
});

/** Stage 0 of two stages on an engine that answers each call `ms` later by itself; the calls' requests in order. */
function timedStage0(ms: number) {
  const calls: string[][] = [];
  const hidden = { dtype: 'float32' as const, shape: [1, 1, 2], data: new Uint8Array(8) };
  const later = <T>(value: T) => new Promise<T>((resolve) => setTimeout(() => resolve(value), ms));
  const engine: StageContext['engine'] = {
    forward: (args: ForwardArgs) => (calls.push([args.request]), later({ hidden })),
    forwardBatch: (items: ForwardArgs[]) => (calls.push(items.map((i) => i.request)), later({ results: items.map(() => ({ hidden })) })),
    release: async () => ({ released: true }),
  };
  const p = plan(2);
  const stage = new Stage({ selfId: 'p0', selfName: 'p0', planFor: () => p, engine, deliver: async () => {} }, { batchWaitMs: 2 });
  const step = (request: string, offset = 10) =>
    stage.forward({ type: 'forward', request, origin: 'o', planVersion: 1, step: 1, offset, tokens: [7], sample: true, sampling: { temperature: 0, topP: 1, seed: null } });
  return { stage, calls, step };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('two lone requests join: a step alone waits for the lone one that ran after it, and they batch', async () => {
  const { calls, step } = timedStage0(30);
  for (const r of ['a', 'b', 'c']) step(r); // [a, b] then [c]: c came out of its prefill alone
  await sleep(80);
  step('d'); // and d after it, alone: three groups on two stages
  await sleep(50);
  assert.equal(calls, [['a', 'b'], ['c'], ['d']]);
  step('c', 11); // the engine is idle, but c waits for d, which ran just after it last time
  await sleep(10);
  step('d', 11);
  await sleep(50);
  assert.equal(calls.slice(3), [['c', 'd']]);
});

test('a lone step stops waiting for a partner that does not come, and never waits when the groups are no more than the stages', async () => {
  const { stage, calls, step } = timedStage0(30);
  for (const r of ['a', 'b', 'c']) step(r);
  await sleep(80);
  step('d');
  await sleep(50);
  step('c', 11); // d does not come back: c waits for it, at most 1.5 steps, then steps alone
  await sleep(10);
  assert.equal(calls.length, 3, 'c waits for d');
  await sleep(80);
  assert.equal(calls.slice(3), [['c']]);
  step('c', 12); // and does not wait for d again
  await sleep(5);
  assert.equal(calls.slice(4), [['c']]);
  await sleep(40);
  await stage.release('a');
  await stage.release('b'); // {c} and {d}: two groups on two stages are already as few as can be
  step('d', 11);
  await sleep(5);
  assert.equal(calls.slice(5), [['d']]);
});

test.run();
