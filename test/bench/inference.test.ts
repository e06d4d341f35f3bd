// `mlx-mesh bench inference` as a user runs it, at a tiny size: the JSON's shape, every ratio a finite
// number, the mesh's greedy text equal to mlx_lm's. Speed is the benchmark's business, never asserted here.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createTestMesh, getJson, STORIES, TEST_PYTHON, tempDir, waitFor } from '../helpers/mesh.ts';
import { BIN, ROOT } from '../helpers/process.ts';
import { type MeshResult, ratiosOf } from '../../bench/inference.ts';
import { steadyRate } from '../../bench/streams.ts';

function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: ROOT, timeout: 280_000, maxBuffer: 16 << 20, env: { ...process.env, MLX_MESH_LOG: 'warn' } }, (err, out, errOut) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out, err: errOut }),
    );
  });
}

const finite = (x: unknown) => typeof x === 'number' && Number.isFinite(x);

test('ratios: the median of the trials\' own ratios, with their lowest and highest', () => {
  const trial = (generationTps: number, ttftS: number) => ({ generationTps, ttftS, seconds: 1, promptTokens: 8, tokens: 8 });
  const base = (generation_tps: number, prompt_s: number) => ({ generation_tps, prompt_s }) as MeshResult['baseRuns'][number];
  const mesh = {
    row: { peers: 2, trials: [trial(8, 1), trial(10, 2), trial(9, 4)], peak_rss_bytes: [50, 60] },
    baseRuns: [base(10, 2), base(10, 2), base(10, 2), base(10, 2)],
    streamRatios: [2.5, 3.1, 2.8],
    steadyRatios: [3.2, 2.9, 3],
  } as unknown as MeshResult;
  const r = ratiosOf(mesh, 100);
  assert.equal([r.decode, r.prefill, r.streams, r.streams_steady, r.memory], [0.9, 1, 2.8, 3, 0.6]);
  assert.equal(r.range, { decode: [0.8, 1], prefill: [0.5, 2], streams: [2.5, 3.1], streams_steady: [2.9, 3.2] });
  // No trial whose streams all generated at once: no steady ratio rather than a made-up one.
  assert.is(ratiosOf({ ...mesh, steadyRatios: [] }, 100).streams_steady, null);
});

test('steady rate: tokens while every stream generates, from the last first text to the first end', () => {
  // Two streams of 5 tokens, a piece every 100 ms; the second starts 200 ms late. Both generate from
  // 200 to 400 ms: pieces at 300 and 400 of each are in that window (4 tokens in 0.2 s).
  const a = [0, 100, 200, 300, 400];
  const b = [200, 300, 400, 500, 600];
  assert.is(steadyRate([a, b], [5, 5]), 20);
  // One stream: its own rate after its first piece.
  assert.is(steadyRate([a], [5]), 10);
  // A stream with half as many pieces as tokens (a piece held back) counts two tokens a piece.
  assert.is(steadyRate([a, b.filter((_, i) => i % 2 === 0)], [5, 6]), (2 + 2) / 0.2);
  // Never all at once: 0.
  assert.is(steadyRate([[0, 100], [200, 300]], [2, 2]), 0);
});

test('ratios: each trial against the geometric mean of the mlx_lm runs just before and after it', () => {
  const trial = (generationTps: number, ttftS: number) => ({ generationTps, ttftS, seconds: 1, promptTokens: 8, tokens: 8 });
  const base = (generation_tps: number, prompt_s: number) => ({ generation_tps, prompt_s }) as MeshResult['baseRuns'][number];
  // The machine slows down steadily: mlx_lm 16 → 4 tok/s; the mesh's trial in between, at 8, keeps pace.
  const mesh = {
    row: { peers: 2, trials: [trial(8, 2)], peak_rss_bytes: [1, 1] },
    baseRuns: [base(16, 1), base(4, 4)],
    streamRatios: [3],
    steadyRatios: [3],
  } as unknown as MeshResult;
  const r = ratiosOf(mesh, 2);
  assert.ok(Math.abs(r.decode - 1) < 1e-12 && Math.abs(r.prefill - 1) < 1e-12, JSON.stringify(r));
});

test('bench inference: mlx_lm and 1-2 peer meshes, identical text, finite ratios, a chart', async () => {
  const chart = path.join(tempDir(), 'ratios.svg');
  const r = await cli(['bench', 'inference', '--model', STORIES, '--python', TEST_PYTHON, '-p', '16', '-g', '8', '-n', '1', '--peers', '1,2', '--json', '--chart', chart]);
  assert.is(r.code, 0, r.err);
  assert.match(r.err, /mesh, 2 peers/, 'progress on stderr');
  const out = JSON.parse(r.out);
  assert.ok(out.meta.cpus >= 1 && out.meta.loadavg_before.length === 3 && out.meta.loadavg_after.length === 3);
  assert.type(out.meta.blas, 'string');
  assert.type(out.meta.sched, 'string');
  if (out.meta.blas.startsWith('libblis')) assert.is(out.meta.blis_threads, process.env.BLIS_NUM_THREADS ?? '1', 'the BLIS threads mlx_lm and the engines ran with');
  assert.is(out.meta.malloc_conf, process.env.MALLOC_CONF ?? null, 'the MALLOC_CONF the engines and mlx_lm ran with');
  assert.type(out.meta.versions.mlx, 'string');
  assert.equal(out.rows.map((x: { setup: string; peers: number }) => `${x.setup}:${x.peers}`), ['mlx_lm:0', 'mesh:1', 'mesh:2']);
  for (const row of out.rows) {
    assert.ok(row.prompt_tokens > 1 && row.prompt_tokens <= 16, `prompt tokens ${row.prompt_tokens}`);
    for (const k of ['prompt_s', 'prompt_tps', 'generation_tps']) assert.ok(finite(row[k]) && row[k] > 0, `${row.setup} ${row.peers} ${k}`);
    assert.is(row.same_text, true, `${row.setup} with ${row.peers} peers generates mlx_lm's text`);
    assert.is(row.peak_rss_bytes.length, Math.max(1, row.peers));
  }
  assert.equal(Object.keys(out.rows[2].streams), ['1', '4']);
  // Each stage's engine during each level: one stream never batches; four on two stages batch at most two.
  const levels = out.rows[2].streams;
  for (const st of levels['1'].stages) assert.ok(st.singles > 0 && st.batches === 0 && st.busy > 0 && st.busy <= 1.5, JSON.stringify(st));
  assert.is(levels['4'].stages.length, 2);
  for (const st of levels['4'].stages) {
    assert.ok(st.singles + st.batches > 0 && finite(st.busy) && st.busy > 0, JSON.stringify(st));
    if (st.batches) assert.ok(st.rows_per_batch > 1 && st.rows_per_batch <= 2 && st.ms_per_batch > 0, JSON.stringify(st));
  }
  // Per stage, from each peer's /metrics: the engines computed, and hidden states left stage 0 for stage 1.
  const hops = out.rows[2].hops;
  assert.is(hops.stages.length, 2);
  for (const phase of [hops.prefill, hops.decode_per_token]) {
    assert.ok(finite(phase.wall_ms) && phase.wall_ms > 0);
    for (const st of phase.stages) assert.ok(st.forwards > 0 && st.compute_ms > 0 && st.bytes_to_engine > 0, JSON.stringify(st));
  }
  assert.ok(hops.prefill.stages[0].bytes_from_engine > hops.prefill.stages[1].bytes_from_engine, 'stage 0 sends hidden states, the last stage a token');
  assert.ok(hops.decode_per_token.stages[1].bytes_in > 0 && hops.decode_per_token.stages[1].hops_in > 0, 'stage 1 receives a step over its link');
  assert.ok(finite(hops.decode_per_token.other_ms));
  assert.equal(out.ratios.map((x: { peers: number }) => x.peers), [1, 2]);
  for (const ratios of out.ratios) {
    for (const k of ['decode', 'prefill', 'streams', 'memory']) assert.ok(finite(ratios[k]) && ratios[k] > 0, `${k}: ${ratios[k]}`);
    assert.ok(ratios.streams_steady === null || (finite(ratios.streams_steady) && ratios.streams_steady > 0), `streams_steady: ${ratios.streams_steady}`);
    // Each median lies within the range of the trials' own ratios it was taken from.
    for (const k of ['decode', 'prefill', 'streams']) {
      const [lo, hi] = ratios.range[k];
      assert.ok(finite(lo) && finite(hi) && lo <= ratios[k] && ratios[k] <= hi, `${k}: ${ratios[k]} in [${lo}, ${hi}]`);
    }
  }
  const svg = fs.readFileSync(chart, 'utf8');
  assert.match(svg, /^<svg /);
  assert.match(svg, /2p decode, mesh ÷ mlx_lm/);
});

test('bench inference --api: a running cluster measured as a client, concurrency ratios finite', async () => {
  const mesh = await createTestMesh(1, { inference: true, model: STORIES });
  try {
    const api = mesh.nodes[0].api.url;
    await waitFor(async () => (await getJson(`${api}/distributed/gpu-info`)).cluster_status === 'healthy', 60_000);
    const r = await cli(['bench', 'inference', '--api', api, '-g', '6', '-n', '1', '--streams', '1,2', '--json']);
    assert.is(r.code, 0, r.err);
    const out = JSON.parse(r.out);
    assert.equal(Object.keys(out.streams), ['1', '2']);
    assert.ok(finite(out.single.ttft_s) && finite(out.single.generation_tps));
    for (const k of ['1', '2']) assert.ok(finite(out.ratios[k]) && out.streams[k].tokens > 0, k);
  } finally {
    await mesh.stop();
  }
});

test('bench inference refuses bad numbers with a usage error', async () => {
  const r = await cli(['bench', 'inference', '-p', 'x']);
  assert.is(r.code, 2, r.err);
  assert.match(r.err, /-p must be a whole number/);
});

test.run();
