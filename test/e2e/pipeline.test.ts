// Pipeline throughput features on real engines with the tiny trained model (stories260K), checked
// against single-process mlx_lm: overlapped prefill (small chunks, so stages work at once) and batched
// decode (concurrent requests' steps as one forward per stage; joining and leaving at any step).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { prefillChunkSize } from '../../peer/prefill-chunk.ts';
import { completeOn, convertedStories, createTestMesh, STORIES, type TestMesh, waitFor } from '../helpers/mesh.ts';
import { mlxBatchReference, mlxReference } from '../helpers/models.ts';

const STORY =
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. ' +
  'She wanted to play with it, but it was too high. Lily asked her mom for help. Her mom smiled and said yes. ';

let mesh: TestMesh;

// Every request on a connection of its own: the reference runs synchronously for seconds, and a
// kept-alive connection the server times out meanwhile would reset the next request (ECONNRESET).
const CLOSE = { connection: 'close' };

test.before(async () => {
  mesh = await createTestMesh(2, { inference: true, model: STORIES });
  const healthy = async () => (await (await fetch(`${mesh.nodes[0].api.url}/distributed/gpu-info`, { headers: CLOSE })).json()).cluster_status === 'healthy';
  await waitFor(healthy, 90_000, 'a healthy cluster');
});

test.after(async () => {
  await mesh?.stop();
});

const convertedDir = () => convertedStories(mesh.nodes[0]);
const complete = (prompt: string, maxTokens: number, extra: Record<string, unknown> = {}, node = 1) => completeOn(mesh.nodes[node], prompt, maxTokens, extra);

test('overlapped prefill: a long prompt in small chunks is token-identical to mlx_lm with that step size', async () => {
  const prompt = STORY + STORY + STORY;
  const body = await complete(prompt, 40);
  const promptTokens = body.usage.prompt_tokens;
  const chunk = prefillChunkSize(promptTokens, 2);
  assert.ok(chunk < promptTokens - 1, `the prompt (${promptTokens} tokens) is split (chunk ${chunk})`);
  const ref = mlxReference(convertedDir(), { prompt }, 40, chunk);
  assert.is(ref.prompt.length, promptTokens);
  assert.is(body.choices[0].text, ref.text);
});

const PROMPTS = ['Once upon a time', 'The cat sat on', 'Lily and Tom went to the park. They', 'One day, a big dog'];

function stageStats() {
  return mesh.nodes.map((n) => ({ ...n.inference!.stageStats }));
}

function engineStats() {
  return Promise.all(mesh.nodes.map((n) => n.inference!.engine.stats()));
}

test('4 concurrent greedy requests, batched at each stage in two groups, each identical to mlx_lm batch_generate of the 4', async () => {
  const before = stageStats();
  // Two origins: requests from different peers share the stages' batches.
  const bodies = await Promise.all(PROMPTS.map((p, i) => complete(p, 40, {}, i % 2)));
  const ref = mlxBatchReference(convertedDir(), PROMPTS, 40);
  bodies.forEach((body, i) => assert.is(body.choices[0].text, ref[i].text, `request ${i}: ${PROMPTS[i]}`));
  const after = stageStats();
  assert.ok(
    after.some((s, i) => s.batches > before[i].batches && s.largestBatch > 1),
    `steps were batched: ${JSON.stringify(after)}`,
  );
  // Pipeline groups: 4 requests on 2 stages step in batches of at most 2, so both stages have work.
  assert.ok(after.every((s) => s.largestBatch <= 2), `no batch above ceil(4 / 2): ${JSON.stringify(after)}`);
});

test('requests leaving early (stop string, client abort) and joining late do not disturb the others; memory is released', async () => {
  const idle = await engineStats();
  const solo = (prompt: string) => mlxReference(convertedDir(), { prompt }, 60);
  const long = complete(PROMPTS[0], 60);
  // Leaves early at a stop string.
  const stopped = complete(PROMPTS[1], 60, { stop: ['happy'] });
  // Leaves early: the client goes away mid-stream.
  const abort = new AbortController();
  const aborted = fetch(`${mesh.nodes[0].api.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...CLOSE },
    body: JSON.stringify({ prompt: PROMPTS[2], max_tokens: 60, temperature: 0, stream: true }),
    signal: abort.signal,
  }).then(async (res) => {
    const reader = res.body!.getReader();
    await reader.read();
    await reader.read();
    abort.abort();
  });
  await aborted.catch(() => {});
  // Joins while the others run.
  const late = complete(PROMPTS[3], 30);
  const [longBody, stoppedBody, lateBody] = await Promise.all([long, stopped, late]);
  assert.is(longBody.choices[0].text, solo(PROMPTS[0]).text);
  assert.is(lateBody.choices[0].text, solo(PROMPTS[3]).text.slice(0, lateBody.choices[0].text.length));
  assert.is(lateBody.usage.completion_tokens, 30);
  const full = solo(PROMPTS[1]).text;
  assert.ok(full.includes('happy'), full);
  assert.is(stoppedBody.choices[0].text, full.slice(0, full.indexOf('happy')));
  assert.is(stoppedBody.choices[0].finish_reason, 'stop');
  // Every request's KV cache is gone: engine memory is back to where it was.
  await waitFor(async () => {
    const now = await engineStats();
    return now.every((s, i) => s.requests === 0 && s.active_memory <= idle[i].active_memory) && now;
  }, 30_000, 'engine memory back to its idle level');
});

test.run();
