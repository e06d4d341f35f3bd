// Long generations: does a token cost the same at the end of a long answer as at its start?
//
//   node --import tsx bench/long-generation.ts [--json] [--model PATH] [--peers N] [--max-tokens N] [--text-tokens N] [--window N]
//
// (a) mesh: one greedy generation of --max-tokens through an N-peer local mesh (in this process);
//     per-token time = the mean gap between streamed pieces in the first and the last --window pieces
//     (the first 20 pieces are warm-up and skipped).
// (b) mlx_lm: the same generation in single-process mlx_lm (bench/long_generation_baseline.py), the
//     same windows: its growth is the model's own (attention over a longer context). The mesh's own
//     per-token cost is (a) − (b); goal: at the end within 10% of the start.
// (c) text path: the origin's detokenizing alone, at 100 tokens and at --text-tokens: the peer's own
//     streaming detokenizer (peer/detokenizer.ts, one token), the engine's (`detok_add`, one token: the
//     path of tokenizers mlx-lm decodes naively) and decoding the whole sequence (`decode`, what the
//     origin did per token before either).
// The model's context bounds --max-tokens: the tiny stories260K model (the default here) has 2048.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { defaults } from '../core/defaults.ts';
import { createDetokenizer } from '../peer/detokenizer.ts';
import { resolvePython } from '../peer/python-env.ts';
import { EngineSupervisor } from '../peer/supervisor.ts';
import { startLocalMesh, waitUntilReady } from '../src/local-mesh.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const STORIES = path.resolve(ROOT, '../shared/models/stories260K.gguf');

const { values } = parseArgs({
  options: {
    json: { type: 'boolean' },
    model: { type: 'string', default: STORIES },
    peers: { type: 'string', default: '2' },
    'max-tokens': { type: 'string', default: '2000' },
    'text-tokens': { type: 'string', default: '4000' },
    window: { type: 'string', default: '200' },
  },
});
const maxTokens = Number(values['max-tokens']);
const textTokens = Number(values['text-tokens']);
const PROMPT = 'Once upon a time';
const windowSize = Number(values.window);
const python = resolvePython({ dataDir: defaults.dataDir }).path;
const say = (line: string) => values.json || process.stderr.write(`${line}\n`);
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mlx-mesh-bench-long-'));

async function meshRun() {
  const nodes = await startLocalMesh({ peers: Number(values.peers), root, namePrefix: 'long', model: values.model!, python });
  try {
    await waitUntilReady(nodes, 300_000, (r) => say(`  waiting: ${r}`));
    const inference = nodes[0].inference!;
    const tokens = await inference.tokenize({ text: PROMPT });
    const stamps: number[] = [];
    const started = performance.now();
    const result = await inference.generate(
      { tokens, maxTokens, sampling: { temperature: 0, topP: 1, seed: null }, stop: [] },
      () => stamps.push(performance.now()),
    );
    const seconds = (performance.now() - started) / 1000;
    return {
      peers: Number(values.peers),
      tokens: result.completionTokens,
      finish: result.finishReason,
      seconds: Number(seconds.toFixed(1)),
      ...windows(stamps.slice(1).map((t, i) => t - stamps[i])),
    };
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
  }
}

/** Mean gap in the first and the last window, after 20 warm-up pieces. */
function windows(gaps: number[]): { pieces: number; startMs: number; endMs: number; endOverStart: number } {
  const usable = gaps.slice(20);
  if (usable.length < 2 * windowSize) throw new Error(`only ${usable.length} pieces: lower --window or raise --max-tokens`);
  const startMs = mean(usable.slice(0, windowSize));
  const endMs = mean(usable.slice(-windowSize));
  const r = (x: number) => Number(x.toFixed(2));
  return { pieces: gaps.length + 1, startMs: r(startMs), endMs: r(endMs), endOverStart: Number((endMs / startMs).toFixed(3)) };
}

function mlxLmRun(modelDir: string): ReturnType<typeof windows> {
  const out = execFileSync(python, [path.join(ROOT, 'bench/long_generation_baseline.py'), modelDir, PROMPT, String(maxTokens)], {
    encoding: 'utf8',
    maxBuffer: 64 * 2 ** 20,
  });
  return windows(JSON.parse(out.trim().split('\n').at(-1)!).gaps_ms);
}

async function engineRun(modelDir: string): Promise<Record<string, number>> {
  const engine = new EngineSupervisor({ dataDir: defaults.dataDir, python });
  try {
    await engine.start();
    await engine.load({ model: modelDir, start: 0, end: 0 });
    const base = (await engine.tokenize({ text: 'Once upon a time, there was a little girl named Lily. She loved to play outside.', addBos: false })).tokens;
    const sequence = Array.from({ length: textTokens }, (_, i) => base[i % base.length]);
    const timeIt = async (fn: () => Promise<unknown>, n = 30) => {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) await fn();
      return (performance.now() - t0) / n;
    };
    const spec = await engine.detokSpec();
    /** The peer's own detokenizer, ms per token: 2000 tokens after `length − 1`, timed together. */
    const local = (length: number) => {
      const detok = createDetokenizer(spec);
      if (!detok) return NaN; // a naive tokenizer: only the engine detokenizes it
      for (let i = 0; i < length - 1; i++) detok.add(sequence[i % sequence.length]);
      const n = 2000;
      const t0 = performance.now();
      for (let i = 0; i < n; i++) detok.add(sequence[(length - 1 + i) % sequence.length]);
      return (performance.now() - t0) / n;
    };
    const at = async (length: number) => {
      await engine.detokOpen('bench');
      await engine.detokAdd('bench', sequence.slice(0, length - 1));
      let i = length - 1;
      const add = await timeIt(() => engine.detokAdd('bench', [sequence[i++ % sequence.length]]));
      await engine.detokClose('bench');
      const decode = await timeIt(() => engine.decode(sequence.slice(0, length)));
      return { add, decode, local: local(length) };
    };
    const short = await at(100);
    const long = await at(textTokens);
    return {
      peerDetokMsAt100: Number(short.local.toFixed(4)),
      peerDetokMsAtMax: Number(long.local.toFixed(4)),
      detokAddMsAt100: Number(short.add.toFixed(3)),
      detokAddMsAtMax: Number(long.add.toFixed(3)),
      decodeAllMsAt100: Number(short.decode.toFixed(3)),
      decodeAllMsAtMax: Number(long.decode.toFixed(3)),
      detokGrowth: Number((long.add / short.add).toFixed(2)),
      decodeAllGrowth: Number((long.decode / short.decode).toFixed(2)),
    };
  } finally {
    await engine.stop();
  }
}

/** The converted directory of a GGUF model, as the mesh's first peer left it in its data dir. */
function convertedDir(model: string): string {
  if (!model.endsWith('.gguf')) return model;
  const dir = path.join(root, 'peer-0', 'models');
  const name = path.basename(model, '.gguf');
  const sub = fs.readdirSync(dir).find((d) => d.startsWith(`${name}-`));
  if (!sub) throw new Error(`no converted copy of ${model} in ${dir}: run the mesh part first`);
  return path.join(dir, sub);
}

say(`load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
try {
  const mesh = await meshRun();
  say(`(a) mesh: ${JSON.stringify(mesh)}`);
  const mlxLm = mlxLmRun(convertedDir(values.model!));
  say(`(b) mlx_lm: ${JSON.stringify(mlxLm)}`);
  const own = { startMs: Number((mesh.startMs - mlxLm.startMs).toFixed(2)), endMs: Number((mesh.endMs - mlxLm.endMs).toFixed(2)) };
  say(`    the mesh's own per-token cost (a − b): start ${own.startMs} ms, end ${own.endMs} ms`);
  const text = await engineRun(convertedDir(values.model!));
  say(`(c) text path: ${JSON.stringify(text)}`);
  if (values.json) process.stdout.write(`${JSON.stringify({ loadavg: os.loadavg(), mesh, mlxLm, own, text })}\n`);
} finally {
  fs.rmSync(root, { recursive: true, force: true });
}
