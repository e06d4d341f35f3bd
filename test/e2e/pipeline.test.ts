// Pipeline throughput features on real engines with the tiny trained model (stories260K), checked
// against single-process mlx_lm: overlapped prefill (small chunks, so stages work at once).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { prefillChunkSize } from '../../peer/prefill-chunk.ts';
import { createTestMesh, getJson, STORIES, TEST_PYTHON, type TestMesh, waitFor } from '../helpers/mesh.ts';
import { ROOT } from '../helpers/process.ts';

const STORY =
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. ' +
  'She wanted to play with it, but it was too high. Lily asked her mom for help. Her mom smiled and said yes. ';

let mesh: TestMesh;

test.before(async () => {
  mesh = await createTestMesh(2, { inference: true, model: STORIES });
  await waitFor(async () => (await getJson(`${mesh.nodes[0].api.url}/distributed/gpu-info`)).cluster_status === 'healthy', 90_000, 'a healthy cluster');
});

test.after(async () => {
  await mesh?.stop();
});

function convertedDir(): string {
  const dir = path.join(mesh.nodes[0].dataDir, 'models');
  return path.join(dir, fs.readdirSync(dir).find((d) => d.startsWith('stories260K-'))!);
}

function reference(spec: unknown, maxTokens: number, prefillStep?: number): any {
  const args = [path.join(ROOT, 'test/helpers/mlx_reference.py'), convertedDir(), JSON.stringify(spec), String(maxTokens)];
  if (prefillStep) args.push(String(prefillStep));
  return JSON.parse(execFileSync(TEST_PYTHON, args, { encoding: 'utf8' }));
}

async function complete(prompt: string, maxTokens: number, extra: Record<string, unknown> = {}) {
  const res = await fetch(`${mesh.nodes[1].api.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt, max_tokens: maxTokens, temperature: 0, ...extra }),
  });
  assert.is(res.status, 200, await res.clone().text());
  return (await res.json()) as any;
}

test('overlapped prefill: a long prompt in small chunks is token-identical to mlx_lm with that step size', async () => {
  const prompt = STORY + STORY + STORY;
  const body = await complete(prompt, 40);
  const promptTokens = body.usage.prompt_tokens;
  const chunk = prefillChunkSize(promptTokens, 2);
  assert.ok(chunk < promptTokens - 1, `the prompt (${promptTokens} tokens) is split (chunk ${chunk})`);
  const ref = reference({ prompt }, 40, chunk);
  assert.is(ref.prompt.length, promptTokens);
  assert.is(body.choices[0].text, ref.text);
});

test.run();
