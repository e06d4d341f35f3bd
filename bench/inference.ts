// Inference benchmark: where the time of one greedy chat generation goes, from plain mlx_lm to a
// 3-peer mesh, on the same model, prompt and settings in one run.
//
//   node --import tsx bench/inference.ts [--json] [--runs N] [--max-tokens N] [--model DIR] [--blas SPEC] [--only b,c,...]
//
// Rows: (a) single-process mlx_lm stream_generate, (b) one engine process driven through the
// supervisor (no mesh), (c) a 1-peer mesh through the HTTP API, (d) 2 peers, (e) 3 peers on loopback.
// Each row: one unmeasured warm-up generation, then --runs measured ones (median reported).
// prefill = time to the first generated token; decode = tokens/s after the first token.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { promisify } from 'node:util';
import { EngineSupervisor } from '../peer/supervisor.ts';
import { resolvePython } from '../peer/python-env.ts';
import { defaults } from '../core/defaults.ts';
import { startLocalMesh, waitUntilReady } from '../src/local-mesh.ts';
import type { MeshNode } from '../src/node.ts';
import { streamCompletion } from '../src/commands/generate.ts';
import { ENGINE_DIR } from '../core/paths.ts';
import fs from 'node:fs';
import os from 'node:os';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DEFAULT_MODEL = path.join(defaults.dataDir, 'models', 'SmolLM2-135M-Instruct.Q4_1-b179c9523d0e');
const PROMPT = 'In two sentences, why would someone run one language model across several computers?';
const MESSAGES = [{ role: 'user', content: PROMPT }];

interface Run {
  prefillS: number;
  decodeTps: number;
  tokens: number;
  text: string;
}

interface Row {
  key: string;
  label: string;
  runs: Run[];
  prefillS: number;
  decodeTps: number;
  tokens: number;
  sameText: boolean | null;
  prefillRatio: number | null;
  decodeRatio: number | null;
}

const { values } = parseArgs({
  options: {
    json: { type: 'boolean' },
    runs: { type: 'string', default: '2' },
    'max-tokens': { type: 'string', default: '32' },
    model: { type: 'string', default: DEFAULT_MODEL },
    blas: { type: 'string' },
    only: { type: 'string' },
  },
});
const runs = Number(values.runs);
const maxTokens = Number(values['max-tokens']);
const model = path.resolve(values.model!);
// The engines inherit this; the mlx_lm baseline loads the same library, so rows stay comparable.
if (values.blas !== undefined) process.env.MLX_MESH_BLAS = values.blas;
const python = resolvePython({ dataDir: defaults.dataDir }).path;
const progress = (line: string) => process.stderr.write(`${line}\n`);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function measure(times: number, once: () => Promise<Run>): Promise<Run[]> {
  await once(); // warm-up: first-call costs are reported by the first row's prefill, not here
  const out: Run[] = [];
  for (let i = 0; i < times; i++) out.push(await once());
  return out;
}

async function mlxLm(): Promise<Run[]> {
  const env = { ...process.env, PYTHONPATH: ENGINE_DIR };
  const script = path.join(ROOT, 'bench', 'mlx_lm_baseline.py');
  const { stdout } = await promisify(execFile)(python, [script, model, JSON.stringify(MESSAGES), String(maxTokens), String(runs)], {
    env,
    maxBuffer: 16 << 20,
  });
  const res = JSON.parse(stdout) as { runs: Array<{ prefill_s: number; decode_tps: number; tokens: number; text: string }> };
  return res.runs.map((r) => ({ prefillS: r.prefill_s, decodeTps: r.decode_tps, tokens: r.tokens, text: r.text }));
}

async function engineOnly(): Promise<Run[]> {
  const engine = new EngineSupervisor({ dataDir: defaults.dataDir, python });
  try {
    const hello = await engine.start();
    progress(`   engine blas: ${hello.blas ?? '?'}`);
    const loaded = await engine.load({ model, start: 0, end: Number.MAX_SAFE_INTEGER }).catch(async () => {
      const info = await engine.inspect(model);
      return engine.load({ model, start: 0, end: info.n_layers });
    });
    void loaded;
    const info = await engine.inspect(model);
    const { tokens: prompt } = await engine.tokenize({ messages: MESSAGES });
    const greedy = { temperature: 0, top_p: 1 };
    let n = 0;
    return await measure(runs, async () => {
      const request = `bench-${n++}`;
      const started = performance.now();
      await engine.forward({ request, offset: 0, tokens: prompt.slice(0, -1), sample: false, sampling: greedy });
      let offset = prompt.length - 1;
      let token = (await engine.forward({ request, offset, tokens: prompt.slice(-1), sample: true, sampling: greedy })).token!;
      offset += 1;
      const first = performance.now();
      const out: number[] = [];
      let last = first;
      while (!info.eos_token_ids.includes(token)) {
        out.push(token);
        last = performance.now();
        if (out.length >= maxTokens) break;
        token = (await engine.forward({ request, offset, tokens: [token], sample: true, sampling: greedy })).token!;
        offset += 1;
      }
      await engine.release(request);
      const text = (await engine.decode(out)).text;
      const decodeS = (last - first) / 1000;
      return { prefillS: (first - started) / 1000, decodeTps: out.length > 1 ? (out.length - 1) / decodeS : 0, tokens: out.length, text };
    });
  } finally {
    await engine.stop();
  }
}

async function mesh(n: number): Promise<Run[]> {
  let nodes: MeshNode[] = [];
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mlx-mesh-bench-'));
  try {
    nodes = await startLocalMesh({ peers: n, root, namePrefix: 'bench', model, python });
    await waitUntilReady(nodes, 120_000);
    // Ask the last peer, as the demo does: with n > 1 its request crosses the links both ways.
    const api = nodes[n - 1].api.url;
    return await measure(runs, async () => {
      const r = await streamCompletion(api, { prompt: PROMPT, maxTokens, temperature: 0 }, () => {});
      const decodeS = r.seconds - (r.firstTokenSeconds ?? 0);
      return {
        prefillS: r.firstTokenSeconds ?? 0,
        decodeTps: r.completionTokens > 1 ? (r.completionTokens - 1) / decodeS : 0,
        tokens: r.completionTokens,
        text: r.text,
      };
    });
  } finally {
    await Promise.all(nodes.map((x) => x.stop()));
    fs.rmSync(root, { recursive: true, force: true });
  }
}

const plan: Array<[string, string, () => Promise<Run[]>]> = [
  ['a', 'mlx_lm, one process', mlxLm],
  ['b', 'engine via supervisor', engineOnly],
  ['c', 'mesh, 1 peer (HTTP)', () => mesh(1)],
  ['d', 'mesh, 2 peers', () => mesh(2)],
  ['e', 'mesh, 3 peers', () => mesh(3)],
];

// --only b,d: a subset (ratios need (a), so it always runs).
const only = values.only ? new Set(['a', ...values.only.split(',')]) : null;
const rows: Row[] = [];
const startedAt = Date.now();
const load0 = os.loadavg()[0];
for (const [key, label, fn] of plan) {
  if (only && !only.has(key)) continue;
  progress(`(${key}) ${label} …`);
  const rs = await fn();
  rows.push({
    key,
    label,
    runs: rs,
    prefillS: median(rs.map((r) => r.prefillS)),
    decodeTps: median(rs.map((r) => r.decodeTps)),
    tokens: rs[0].tokens,
    sameText: null,
    prefillRatio: null,
    decodeRatio: null,
  });
}
const base = rows[0];
for (const r of rows) {
  r.sameText = r.runs.every((x) => x.text === base.runs[0].text);
  r.prefillRatio = r.prefillS / base.prefillS;
  r.decodeRatio = r.decodeTps / base.decodeTps;
}
const meta = {
  model,
  promptChars: PROMPT.length,
  maxTokens,
  runs,
  blas: process.env.MLX_MESH_BLAS || (process.platform === 'linux' ? 'auto' : 'bundled'),
  cpus: os.cpus().length,
  loadavgBefore: load0,
  loadavgAfter: os.loadavg()[0],
  seconds: (Date.now() - startedAt) / 1000,
};

if (values.json) {
  process.stdout.write(`${JSON.stringify({ meta, rows }, null, 2)}\n`);
} else {
  const head = ['', 'setup', 'prefill s', '× (a)', 'decode tok/s', '× (a)', 'tokens', 'same text'];
  const body = rows.map((r) => [
    `(${r.key})`,
    r.label,
    r.prefillS.toFixed(3),
    r.prefillRatio!.toFixed(2),
    r.decodeTps.toFixed(1),
    r.decodeRatio!.toFixed(2),
    String(r.tokens),
    r.sameText ? 'yes' : 'NO',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  process.stdout.write(`${line(head)}\n${body.map(line).join('\n')}\n`);
  process.stdout.write(
    `\nblas ${meta.blas} · ${meta.cpus} CPUs · load ${meta.loadavgBefore.toFixed(2)} → ${meta.loadavgAfter.toFixed(2)} · ` +
      `${runs} runs/row (median) · max ${maxTokens} tokens · ${meta.seconds.toFixed(0)} s\n`,
  );
}
