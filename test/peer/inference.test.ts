// The inference wiring on one real peer: the origin's streaming text (detokenized by the peer, or by its
// engine for a naive tokenizer), and what a user sees when the
// engine cannot get its layers back.
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createTestMesh, getJson, STORIES, waitFor } from '../helpers/mesh.ts';
import { naiveTokenizerCopy } from '../helpers/models.ts';

const GOLDEN =
  ', there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily';

test('a re-load that fails after an engine crash shows as failed with the reason, not as loading forever', async () => {
  const mesh = await createTestMesh(1, { inference: true, model: STORIES });
  try {
    const node = mesh.nodes[0];
    const url = node.api.url;
    await waitFor(async () => (await getJson(`${url}/distributed/gpu-info`)).cluster_status === 'healthy', 60_000, 'a healthy peer');
    // Move the converted model away, then crash the engine: the supervisor's re-load cannot find it.
    const models = path.join(node.dataDir, 'models');
    const dir = fs.readdirSync(models).find((d) => d.startsWith('stories260K-'))!;
    fs.renameSync(path.join(models, dir), path.join(models, `${dir}.moved`));
    const pid = node.inference!.engine.pid!;
    process.kill(pid, 'SIGKILL');
    const device = await waitFor(async () => {
      const v = await getJson(`${url}/distributed/gpu-info`);
      return v.devices[0].status === 'failed' ? v.devices[0] : null;
    }, 30_000, 'the device shown as failed');
    assert.is(device.device_id, node.peer.id);
    const res = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'Once upon a time', max_tokens: 5 }),
    });
    assert.is(res.status, 503);
    const { error } = await res.json();
    assert.match(error.message, /could not re-load its layers after an engine restart/);
    assert.not.match(error.message, /waiting for/);
    assert.is(node.inference!.engine.state, 'idle', 'the engine itself runs on, without layers');
  } finally {
    await mesh.stop();
  }
});

/** Greedy text, a stop string and an abort on a one-peer mesh of `model`; returns the peer's engine
 *  supervisor's stats after the abort (the engine's detokenizer streams left open). */
async function textPaths(model: string, onMesh?: (dataDir: string) => void) {
  const mesh = await createTestMesh(1, { inference: true, model });
  try {
    const inference = mesh.nodes[0].inference!;
    await waitFor(() => inference.isReady(), 60_000, 'a ready peer');
    onMesh?.(mesh.nodes[0].dataDir);
    const tokens = await inference.tokenize({ text: 'Once upon a time' });
    const greedy = { temperature: 0, topP: 1, seed: null };
    const pieces: string[] = [];
    const full = await inference.generate({ tokens, maxTokens: 60, sampling: greedy, stop: [] }, (t) => pieces.push(t));
    assert.is(full.text, GOLDEN);
    assert.is(pieces.join(''), GOLDEN);
    assert.ok(pieces.length > 20, 'streamed in many pieces');
    const stopped = await inference.generate({ tokens, maxTokens: 60, sampling: greedy, stop: ['Lily.'] }, () => {});
    assert.is(stopped.text, ', there was a little girl named ');
    assert.is(stopped.finishReason, 'stop');
    const abort = new AbortController();
    const aborted = inference.generate({ tokens, maxTokens: 500, sampling: greedy, stop: [], signal: abort.signal }, () => abort.abort());
    const err = await aborted.then(() => null, (e: Error) => e);
    assert.match(String(err?.message), /went away/);
    await waitFor(async () => (await inference.engine.stats()).detokenizers === 0, 10_000, 'no detokenizer left open');
    return inference.engine.opStats();
  } finally {
    await mesh.stop();
  }
}

let naiveModel = '';

test('text streams through the peer\'s own detokenizer (SentencePiece): no engine op per token', async () => {
  const ops = await textPaths(STORIES, (dataDir) => {
    // A copy of the converted model whose tokenizer mlx-lm detokenizes naively, for the next test.
    const models = path.join(dataDir, 'models');
    naiveModel = naiveTokenizerCopy(path.join(models, fs.readdirSync(models).find((d) => d.startsWith('stories260K-'))!));
  });
  assert.is(ops.detok_add, undefined, 'no detok_add op reached the engine');
  assert.is(ops.detok_spec?.count, 1, 'the token map was asked for once');
});

test('with a tokenizer only mlx-lm decodes (naive), the streams live in the engine and are all freed', async () => {
  const ops = await textPaths(naiveModel);
  assert.ok((ops.detok_add?.count ?? 0) >= 60, 'detok_add ops reached the engine');
});

test.run();
