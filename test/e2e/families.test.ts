// Families beyond llama through a real 2-peer mesh: gemma3_text (sliding and global layers, a scaled
// embedding) and an mlx-lm 4-bit qwen3, token-identical to single-process mlx_lm on the same random-weight
// checkpoint. The full matrix (every family, float and 4-bit, 1-3 stages) is in peer/engine/tests/test_families.py.
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createTestMesh, getJson, tempDir, waitFor } from '../helpers/mesh.ts';
import { mlxReference, tinyModel } from '../helpers/models.ts';

// A chat request: the chat template decides the special tokens, the same for the API and mlx_lm.
const messages = [{ role: 'user', content: 'Once upon a time, in a small village by the sea, there lived' }];
const MAX = 12;

async function chat(url: string) {
  const res = await fetch(`${url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ messages, max_tokens: MAX, temperature: 0 }) });
  return { status: res.status, body: await res.json() };
}

for (const [arch, quant] of [['gemma3_text', undefined], ['qwen3', { bits: 4 }]] as const) {
  test(`${arch}${quant ? ` ${quant.bits}-bit` : ''} through 2 peers equals single-process mlx_lm`, async () => {
    const model = await tinyModel(arch, quant);
    const mesh = await createTestMesh(2, { inference: true, model });
    try {
      const info = await waitFor(async () => {
        const v = await getJson(`${mesh.nodes[0].api.url}/distributed/gpu-info`);
        return v.cluster_status === 'healthy' ? v : null;
      }, 120_000, 'a healthy cluster');
      assert.is(info.devices.filter((d: { layers: unknown }) => d.layers).length, 2, 'both peers hold layers');
      const ref = mlxReference(model, { messages }, MAX);
      assert.ok(new Set(ref.tokens).size > 1, 'a reference that varies');
      const { status, body } = await chat(mesh.nodes[1].api.url);
      assert.is(status, 200);
      assert.is(body.usage.prompt_tokens, ref.prompt.length, 'the same prompt');
      // The streaming detokenizer drops the answer's leading space as mlx_lm's does; tokenizer.decode keeps it.
      assert.is(body.choices[0].message.content, ref.text);
      assert.is(body.usage.completion_tokens, ref.tokens.length);
    } finally {
      await mesh.stop();
      fs.rmSync(path.dirname(model), { recursive: true, force: true });
    }
  });
}

test('an architecture the engine does not run exactly is refused at plan time with UNSUPPORTED_MODEL', async () => {
  const dir = tempDir('mlx-mesh-unsupported-');
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ model_type: 'starcoder2', num_hidden_layers: 2, hidden_size: 8 }));
  const mesh = await createTestMesh(1, { inference: true, model: dir });
  try {
    const { status, body } = (await waitFor(async () => {
      const r = await chat(mesh.nodes[0].api.url);
      return /UNSUPPORTED_MODEL/.test(r.body.error?.message ?? '') ? r : null;
    }, 60_000, 'the refusal'))!;
    assert.is(status, 503);
    assert.match(body.error.message, /starcoder2/);
    assert.match(body.error.message, /gemma3_text.*llama.*qwen3_moe/);
  } finally {
    await mesh.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
