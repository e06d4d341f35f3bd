// `demo` and `generate` as a user runs them: real processes, the tiny model, exit codes and output.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createTestMesh, getJson, STORIES, TEST_PYTHON, tempDir, waitFor } from '../helpers/mesh.ts';
import { runCli } from '../helpers/process.ts';

const cli = (args: string[]) => runCli(args, { env: { MLX_MESH_LOG: 'warn' }, timeoutMs: 180_000 });

test('demo: 3 peers, the table, a streamed answer computed by all of them, throughput, exit 0', async () => {
  const r = await cli(['demo', '--peers', '3', '--model', STORIES, '--python', TEST_PYTHON, '--data-dir', tempDir(), '--prompt', 'Once upon a time', '--max-tokens', '30']);
  assert.is(r.code, 0, r.err);
  assert.match(r.out, /cluster healthy, 3 device\(s\)/);
  assert.match(r.out, /0 +coordinator +demo-0 .* healthy +0-\d/);
  assert.match(r.out, /2 +worker +demo-2 .* healthy +\d-4/);
  assert.match(r.out, /, there was a little girl named Lily\./);
  assert.match(r.out, /30 tokens in [\d.]+ s · first token [\d.]+ s · [\d.]+ tok\/s decoding/);
});

test('generate streams an answer from a running mesh and reports tokens/s', async () => {
  const mesh = await createTestMesh(2, { inference: true, model: STORIES });
  try {
    const api = mesh.nodes[1].api.url;
    await waitFor(async () => (await getJson(`${api}/distributed/gpu-info`)).cluster_status === 'healthy', 60_000);
    const r = await cli(['generate', 'Once upon a time', '--raw', '--max-tokens', '12', '--api', api]);
    assert.is(r.code, 0, r.err);
    assert.match(r.out, /^, there was a little girl named Lily\./);
    assert.match(r.out, /12 tokens in/);
    const chat = await cli(['generate', 'hello', '--api', api]);
    assert.is(chat.code, 1, 'the tiny model has no chat template');
    assert.match(chat.err, /chat template: use \/v1\/completions/);
  } finally {
    await mesh.stop();
  }
});

test.run();
