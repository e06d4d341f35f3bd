// A head split between the first and last stages (MLX_MESH_SPLIT_HEAD=1), through real peers and
// engines with the tiny trained model: the last stage sends its part of each step to the origin, the
// origin passes it to the first stage, which finishes the token. Output stays token-identical to
// mlx_lm, alone and batched, and requests end where they should (max_tokens, EOS, a stop string).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { completeOn, convertedStories, createTestMesh, STORIES, type TestMesh, waitFor } from '../helpers/mesh.ts';
import { mlxBatchReference, mlxReference } from '../helpers/models.ts';

let mesh: TestMesh;
const CLOSE = { connection: 'close' };
const was = process.env.MLX_MESH_SPLIT_HEAD;

test.before(async () => {
  process.env.MLX_MESH_SPLIT_HEAD = '1';
  mesh = await createTestMesh(2, { inference: true, model: STORIES });
  const healthy = async () => (await (await fetch(`${mesh.nodes[0].api.url}/distributed/gpu-info`, { headers: CLOSE })).json()).cluster_status === 'healthy';
  await waitFor(healthy, 90_000, 'a healthy cluster');
});

test.after(async () => {
  await mesh?.stop();
  if (was === undefined) delete process.env.MLX_MESH_SPLIT_HEAD;
  else process.env.MLX_MESH_SPLIT_HEAD = was;
});

const convertedDir = () => convertedStories(mesh.nodes[0]);
const complete = (prompt: string, maxTokens: number, extra: Record<string, unknown> = {}, node = 1) => completeOn(mesh.nodes[node], prompt, maxTokens, extra);

const PROMPTS = ['Once upon a time', 'The cat sat on', 'Lily and Tom went to the park. They', 'One day, a big dog'];

test('the plan splits the head between the two stages', () => {
  for (const node of mesh.nodes) assert.is(node.inference!.plan?.meta.splitHead, true);
});

test('one request from either origin is token-identical to mlx_lm, ending at max_tokens or EOS', async () => {
  for (const [node, max] of [[0, 40], [1, 1], [1, 200]] as const) {
    const body = await complete(PROMPTS[0], max, {}, node);
    const ref = mlxReference(convertedDir(), { prompt: PROMPTS[0] }, max);
    assert.is(body.choices[0].text, ref.text, `origin ${node}, max_tokens ${max}`);
    assert.is(body.usage.completion_tokens, ref.tokens.length);
    assert.is(body.choices[0].finish_reason, ref.tokens.length < max ? 'stop' : 'length');
  }
});

test('4 concurrent greedy requests from two origins, batched, each identical to mlx_lm batch_generate', async () => {
  const bodies = await Promise.all(PROMPTS.map((p, i) => complete(p, 40, {}, i % 2)));
  const ref = mlxBatchReference(convertedDir(), PROMPTS, 40);
  bodies.forEach((body, i) => assert.is(body.choices[0].text, ref[i].text, `request ${i}: ${PROMPTS[i]}`));
  assert.ok(mesh.nodes.some((n) => n.inference!.stageStats.largestBatch > 1), 'steps were batched');
});

test('a stop string ends the request there; a seeded sampled request repeats itself', async () => {
  const full = mlxReference(convertedDir(), { prompt: PROMPTS[1] }, 60).text;
  const word = full.split(' ').filter((w) => /^[a-z]{4,}$/.test(w))[1];
  const body = await complete(PROMPTS[1], 60, { stop: [word] });
  assert.is(body.choices[0].text, full.slice(0, full.indexOf(word)));
  assert.is(body.choices[0].finish_reason, 'stop');
  const sampled = () => complete(PROMPTS[2], 30, { temperature: 0.9, seed: 5 });
  const [a, b] = [await sampled(), await sampled()];
  assert.is(a.choices[0].text, b.choices[0].text);
  assert.is.not(a.choices[0].text, mlxReference(convertedDir(), { prompt: PROMPTS[2] }, 30).text);
});

test.run();
