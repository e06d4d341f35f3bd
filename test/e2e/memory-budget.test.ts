// A model bigger than either peer's --memory: split across two peers offering 0.6 × its size each, both
// load (the engine's resident memory grows by no more than its share: only its tensors are read), and the
// output equals single-process mlx_lm. One such peer alone is refused with MODEL_TOO_LARGE and the figures.
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { formatBytes } from '../../core/size.ts';
import { createTestMesh, getJson, waitFor } from '../helpers/mesh.ts';
import { mlxReference, tinyModel } from '../helpers/models.ts';

const messages = [{ role: 'user', content: 'Tell me a story about the sea.' }];
const MAX = 8;
let model = '';
let size = 0;

test.before(async () => {
  // ~130 MiB of float32, most of it the embedding and the untied head, which land on different peers.
  model = await tinyModel('llama', {
    config: { hidden_size: 256, intermediate_size: 1024, num_hidden_layers: 8, layer_types: null, sliding_window: null, tie_word_embeddings: false },
  });
  size = fs.readdirSync(model).filter((f) => f.endsWith('.safetensors')).reduce((a, f) => a + fs.statSync(path.join(model, f)).size, 0);
});

test.after(() => {
  fs.rmSync(path.dirname(model), { recursive: true, force: true });
});

async function chat(url: string) {
  const res = await fetch(`${url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ messages, max_tokens: MAX, temperature: 0 }) });
  return { status: res.status, body: await res.json() };
}

test('two peers with --memory 0.6 × the model both load within their share, token-identical to mlx_lm', async () => {
  const budget = Math.floor(0.6 * size);
  const mesh = await createTestMesh(2, { inference: true, model, usableMemoryBytes: budget });
  try {
    const info = await waitFor(async () => {
      const v = await getJson(`${mesh.nodes[0].api.url}/distributed/gpu-info`);
      return v.cluster_status === 'healthy' && v.devices.every((d: { peak_rss_bytes: unknown }) => d.peak_rss_bytes) ? v : null;
    }, 120_000, 'a healthy cluster with both peers loaded');
    for (const d of info.devices) {
      assert.ok(d.layers, `${d.name} holds layers`);
      assert.is(d.memory_budget_bytes, budget);
      const grew = d.peak_rss_bytes - d.rss_before_load_bytes;
      console.log(
        `${d.name}: layers ${d.layers.join('-')} of a ${formatBytes(size)} model, budget ${formatBytes(budget)}, ` +
          `engine RSS ${formatBytes(d.rss_before_load_bytes)} before loading, peak ${formatBytes(d.peak_rss_bytes)} (+${formatBytes(grew)}), MLX ${formatBytes(d.memory_bytes)}`,
      );
      assert.ok(grew <= budget, `${d.name}: loading grew the engine by ${formatBytes(grew)}, more than its ${formatBytes(budget)} share`);
      assert.ok(d.memory_bytes <= budget, `${d.name}: MLX holds ${formatBytes(d.memory_bytes)}`);
    }
    // The engines' peaks once loaded (the tokenizer, loaded after the layers, is engine overhead).
    const ready = await Promise.all(mesh.nodes.map((n) => n.inference!.engine.stats()));
    const ref = mlxReference(model, { messages }, MAX);
    const { status, body } = await chat(mesh.nodes[1].api.url);
    assert.is(status, 200);
    assert.is(body.choices[0].message.content, ref.text);
    assert.is(body.usage.completion_tokens, ref.tokens.length);
    // Running its range (prefill and decode) keeps each engine within its share too: what loading the
    // layers added plus what running them added.
    for (const [i, node] of mesh.nodes.entries()) {
      const d = info.devices.find((x: { device_id: string }) => x.device_id === node.peer.id);
      const { peak_rss_bytes: after } = await node.inference!.engine.stats();
      const total = d.peak_rss_bytes - d.rss_before_load_bytes + (after - ready[i].peak_rss_bytes);
      console.log(
        `${d.name}: engine peak RSS ${formatBytes(ready[i].peak_rss_bytes)} once loaded (with the tokenizer), ${formatBytes(after)} after a generation; layers and running them: ${formatBytes(total)}`,
      );
      assert.ok(total <= budget, `${d.name}: the layers and running them took ${formatBytes(total)}, more than its ${formatBytes(budget)} share`);
    }
  } finally {
    await mesh.stop();
  }
});

test('one peer with --memory 0.6 × the model is refused with MODEL_TOO_LARGE and the figures', async () => {
  const mesh = await createTestMesh(1, { inference: true, model, usableMemoryBytes: Math.floor(0.6 * size) });
  try {
    const { status, body } = (await waitFor(async () => {
      const r = await chat(mesh.nodes[0].api.url);
      return /MODEL_TOO_LARGE/.test(r.body.error?.message ?? '') ? r : null;
    }, 60_000, 'the refusal'))!;
    assert.is(status, 503);
    assert.match(body.error.message, /needs \d+\.\d MiB but the cluster has \d+\.\d MiB usable across 1 peer/);
  } finally {
    await mesh.stop();
  }
});

test.run();
