// The peer's streaming detokenizer against mlx-lm's in the real engine, token by token: the same text
// released at the same token, for the golden text and for random token sequences that split characters
// across tokens, start with spaces, hold a lone space, and mix in byte and special tokens. Both kinds
// mlx-lm streams itself: SentencePiece (the stories model) and byte-level BPE (the default model). A
// tokenizer mlx-lm decodes naively gets no local detokenizer (its streams stay in the engine).
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createDetokenizer, type DetokSpec } from '../../peer/detokenizer.ts';
import { EngineSupervisor } from '../../peer/supervisor.ts';
import { STORIES, STORIES_GREEDY, TEST_PYTHON, tempDir } from '../helpers/mesh.ts';
import { defaultModelDir, naiveTokenizerCopy } from '../helpers/models.ts';

const tmp = tempDir('mlx-mesh-detok-');
const engine = new EngineSupervisor({ dataDir: tmp, python: TEST_PYTHON });
let stories = '';

test.before(async () => {
  await engine.start();
  stories = (await engine.convert(STORIES, path.join(tmp, 'stories260K'))).path;
});

test.after(async () => {
  await engine.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** A small deterministic generator, so a failure names a sequence that can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Feeds the tokens to the engine's stream and to ours, one at a time; every piece must match. */
async function compare(spec: DetokSpec, tokens: number[], label: string): Promise<string> {
  const ours = createDetokenizer(spec)!;
  const stream = `cmp-${label}`;
  await engine.detokOpen(stream);
  let text = '';
  for (const [i, t] of tokens.entries()) {
    const want = (await engine.detokAdd(stream, [t])).text;
    assert.is(ours.add(t), want, `${label}: the text after token ${i} (${t}) of [${tokens.join(',')}]`);
    text += want;
  }
  const rest = (await engine.detokClose(stream)).text;
  assert.is(ours.finalize(), rest, `${label}: the flushed rest of [${tokens.join(',')}]`);
  return text + rest;
}

/** Random sequences drawn from `pools` (each a list of ids), one pool per token picked at random. */
async function fuzz(spec: DetokSpec, pools: number[][], runs: number, length: number, seed: number): Promise<void> {
  const rand = rng(seed);
  for (let r = 0; r < runs; r++) {
    const tokens = Array.from({ length }, () => {
      const pool = pools[Math.floor(rand() * pools.length)];
      return pool[Math.floor(rand() * pool.length)];
    });
    await compare(spec, tokens, `run ${r}`);
  }
}

function idsWhere(pieces: Array<string | Uint8Array>, keep: (p: string | Uint8Array) => boolean): number[] {
  return pieces.flatMap((p, i) => (keep(p) ? [i] : []));
}

test('SentencePiece (the stories model): the golden text and random sequences, piece for piece', async () => {
  await engine.load({ model: stories, start: 0, end: 0 });
  const spec = await engine.detokSpec();
  assert.is(spec.kind, 'spm');
  if (spec.kind !== 'spm') return;
  const prompt = (await engine.tokenize({ text: 'Once upon a time', addBos: true })).tokens;
  const golden = (await engine.tokenize({ text: `Once upon a time${STORIES_GREEDY}`, addBos: true })).tokens.slice(prompt.length);
  assert.is(await compare(spec, golden, 'golden'), STORIES_GREEDY);

  const all = spec.pieces.map((_, i) => i);
  const bytes = idsWhere(spec.pieces, (p) => (p as Uint8Array).length === 1 && (p as Uint8Array)[0] >= 0x80);
  const spaced = idsWhere(spec.pieces, (p) => Buffer.from(p as Uint8Array).toString('utf8').startsWith('\u2581'));
  assert.ok(bytes.length > 50, 'the vocabulary has byte pieces (<0x80> and up)');
  await fuzz(spec, [all, bytes, bytes, spaced], 120, 24, 1);
});

test('byte-level BPE (the default model): random sequences with split characters, lone spaces and special tokens', async () => {
  await engine.load({ model: await defaultModelDir(), start: 0, end: 0 });
  const spec = await engine.detokSpec();
  assert.is(spec.kind, 'bpe');
  if (spec.kind !== 'bpe') return;
  assert.is(spec.pieces.length, 49152);
  const all = spec.pieces.map((_, i) => i);
  // One character standing for a byte of a multi-byte character (lead or continuation byte).
  const partial = idsWhere(spec.pieces, (p) => [...(p as string)].length === 1 && (p as string).codePointAt(0)! >= 0x80 && (p as string) !== '\u0120');
  const space = idsWhere(spec.pieces, (p) => p === '\u0120');
  const spaced = idsWhere(spec.pieces, (p) => (p as string).startsWith('\u0120'));
  const special = all.slice(0, 17);
  assert.is(space.length, 1);
  assert.ok(partial.length > 60);
  await fuzz(spec, [all, partial, partial, space, spaced, special], 150, 24, 2);
  // A text that starts with a space, and one that ends with a held lone space.
  await compare(spec, [space[0], spaced[10], space[0]], 'spaces');
  // A byte-order mark at the start is text, as in Python (a TextDecoder would drop it by default).
  const bom = ['\u00ef', '\u00bb', '\u00bf'].map((c) => spec.pieces.indexOf(c));
  const the = (await engine.tokenize({ text: ' the' })).tokens;
  assert.is(await compare(spec, [...bom, ...the], 'bom'), '\ufeff the');
  const polite = (await engine.tokenize({ text: ' Grüße, 世界! 🙂 ok' })).tokens;
  assert.is(await compare(spec, polite, 'unicode'), 'Grüße, 世界! 🙂 ok');
});

test('a tokenizer mlx-lm detokenizes naively keeps its streams in the engine', async () => {
  const naive = naiveTokenizerCopy(stories);
  await engine.load({ model: naive, start: 0, end: 0 });
  const spec = await engine.detokSpec();
  assert.is(spec.kind, 'naive');
  assert.is(createDetokenizer(spec), null);
});

test.run();
