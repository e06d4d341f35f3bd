// The default model (SmolLM2-135M-Instruct, fetched from PyPI once) split over 2 peers: chat
// completions, streamed and not, are token-identical to single-process mlx_lm and read as English.
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { prefillChunkSize } from '../../peer/prefill-chunk.ts';
import { createTestMesh, getJson, type TestMesh, waitFor } from '../helpers/mesh.ts';
import { defaultModelDir, mlxBatchReference, mlxReference } from '../helpers/models.ts';

const messages = [{ role: 'user', content: 'What is the capital of France? Answer in one sentence.' }];
const MAX = 24;
let modelDir = '';
let mesh: TestMesh | null = null;

test.before(async () => {
  // The shared data dir keeps the download and conversion across runs.
  modelDir = await defaultModelDir();
  mesh = await createTestMesh(2, { inference: true, model: modelDir });
  await waitFor(async () => (await getJson(`${mesh!.nodes[0].api.url}/distributed/gpu-info`)).cluster_status === 'healthy', 120_000, 'a healthy cluster');
});

test.after(async () => {
  await mesh?.stop();
});

/** mlx_lm with the prefill step size the 2-stage mesh uses for this prompt (overlapped prefill). */
const reference = (promptTokens: number) => mlxReference(modelDir, { messages }, MAX, prefillChunkSize(promptTokens, 2));

test('the layers are split across both peers', async () => {
  const info = await getJson(`${mesh!.nodes[1].api.url}/distributed/gpu-info`);
  assert.equal(info.devices.map((d: { layers: number[] }) => d.layers), [[0, 15], [15, 30]]);
  assert.match(info.model, /SmolLM2-135M-Instruct/);
  // A model directory, not a GGUF: nothing was converted.
  assert.equal(info.devices.map((d: { gguf_weights: string }) => d.gguf_weights), [null, null]);
});

test('chat completion, non-stream and stream, equals single-process mlx_lm and is readable', async () => {
  const url = `${mesh!.nodes[1].api.url}/v1/chat/completions`;
  const body = { messages, max_tokens: MAX, temperature: 0 };
  const plain = await (await fetch(url, { method: 'POST', body: JSON.stringify(body) })).json();
  // Both requests before the reference: it blocks this process (which hosts the peers) for seconds, and a
  // kept-alive socket idle past the server's 5 s would be reset under the next request.
  const res = await fetch(url, { method: 'POST', body: JSON.stringify({ ...body, stream: true }) });
  const events = (await res.text()).split('\n\n').filter((e) => e.startsWith('data: ') && e !== 'data: [DONE]');
  const ref = reference(plain.usage.prompt_tokens);
  const text = plain.choices[0].message.content;
  assert.is(text, ref.text);
  assert.is(plain.usage.completion_tokens, ref.tokens.length, 'token for token');
  assert.is(plain.usage.prompt_tokens, ref.prompt.length, 'the same chat template');
  assert.match(text, /Paris/);
  assert.not.match(text, /\uFFFD/);

  const chunks = events.map((e) => JSON.parse(e.slice(6)));
  assert.equal(chunks[0].choices[0].delta, { role: 'assistant', content: '' });
  const streamed = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
  assert.is(streamed, ref.text);
  assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk'));
});

test('4 concurrent greedy requests step in batches through rows_gemm, each identical to mlx_lm batch_generate of the 4', async () => {
  // The engines run one BLAS thread (test/run.mjs), so rows_gemm takes every 2-8-row product of this
  // model's 576-wide matrices; the reference loads it the same way.
  const info = await getJson(`${mesh!.nodes[0].api.url}/distributed/gpu-info`);
  assert.ok(
    process.env.MLX_MESH_ROWS_GEMM === '0' || info.devices.every((d: { blas: string }) => d.blas.endsWith('+ rows_gemm')),
    `rows_gemm in front of the BLAS: ${JSON.stringify(info.devices.map((d: { blas: string }) => d.blas))}`,
  );
  // /v1/completions starts a text prompt with BOS, which SmolLM2's tokenizer does not add itself: the
  // reference is given the same tokens.
  const prompts = ['The capital of France is', 'Once upon a time, a small robot', 'The three primary colors are', 'To bake bread, first'];
  const stats = () => mesh!.nodes.map((n) => ({ ...n.inference!.stageStats }));
  const before = stats();
  const bodies = await Promise.all(
    prompts.map(async (prompt, i) => {
      const res = await fetch(`${mesh!.nodes[i % 2].api.url}/v1/completions`, {
        method: 'POST',
        headers: { connection: 'close' },
        body: JSON.stringify({ prompt, max_tokens: 12, temperature: 0 }),
      });
      assert.is(res.status, 200);
      return (await res.json()) as { choices: Array<{ text: string }>; usage: { prompt_tokens: number } };
    }),
  );
  const after = stats();
  assert.ok(
    after.some((s, i) => s.batches > before[i].batches && s.largestBatch > 1),
    `steps were batched: ${JSON.stringify(after)}`,
  );
  const ref = mlxBatchReference(modelDir, prompts, 12);
  bodies.forEach((body, i) => assert.is(body.choices[0].text, ref[i].text, `request ${i}: ${prompts[i]}`));
  // Tokenized as mlx_lm tokenizes: SmolLM2's tokenizer adds no BOS, and neither does the mesh.
  bodies.forEach((body, i) => assert.is(body.usage.prompt_tokens, ref[i].prompt.length, `request ${i}: prompt tokens`));
});

test('--gguf-weights quantized keeps the Q4_1 tensors as MLX 4-bit: reported, and equal to mlx_lm on that conversion', async () => {
  const q = await createTestMesh(2, { inference: true, ggufWeights: 'quantized' });
  try {
    const info = await waitFor(async () => {
      const v = await getJson(`${q.nodes[0].api.url}/distributed/gpu-info`);
      return v.cluster_status === 'healthy' ? v : null;
    }, 120_000, 'a healthy quantized cluster');
    assert.equal(info.devices.map((d: { gguf_weights: string }) => d.gguf_weights), ['quantized', 'quantized']);
    const url = `${q.nodes[0].api.url}/v1/chat/completions`;
    const plain = await (await fetch(url, { method: 'POST', body: JSON.stringify({ messages, max_tokens: MAX, temperature: 0 }) })).json();
    // Each test peer converts into its own data dir.
    const ref = mlxReference(path.join(q.nodes[0].dataDir, 'models', `${path.basename(modelDir)}-quantized`), { messages }, MAX);
    assert.is(plain.choices[0].message.content, ref.text);
    assert.match(ref.text, /Paris/);
  } finally {
    await q.stop();
  }
});

test.run();
