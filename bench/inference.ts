// `mlx-mesh bench inference`: single-process mlx_lm against the mesh with N peers (separate processes,
// optionally pinned one core each), same model, same prompt, greedy, in one run; reports mlx_lm's
// benchmark figures per row and the pipeline ratios (decode, prefill, concurrent streams, memory).
// `--api URL` measures a running cluster as a client would instead.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { defaults } from '../core/defaults.ts';
import { meshError } from '../core/errors.ts';
import { PACKAGE_ROOT, PACKAGE_VERSION } from '../core/paths.ts';
import { classifyModelSpec, resolveModel } from '../peer/model-source.ts';
import { prefillChunkSize } from '../peer/prefill-chunk.ts';
import { resolvePython } from '../peer/python-env.ts';
import { EngineSupervisor } from '../peer/supervisor.ts';
import { dataDirOption, EXIT, parseCommandArgs, SHARED_OPTIONS } from '../src/command.ts';
import { writeRatioChart } from './inference-chart.ts';
import { hopDelta, type HopFigures, otherMs, snapshot, type StageTotals, type StreamStageFigures, streamStages } from './hops.ts';
import { enginePids, peakRssBytes, startPeerProcesses, stopPeerProcesses, waitForCluster } from './peer-processes.ts';
import { type BaselineInfo, type BaselineMemory, type BaselineRun, type BaselineSpec, mlxLmOnce, servedBaseline, type ServedBaseline } from './mlx-lm-baseline.ts';
import { concurrentStreams, type ConcurrentRun, oneStream, type StreamRun } from './streams.ts';

export const usage = `
Usage: mlx-mesh bench inference [options]

Runs the same greedy generation on single-process mlx_lm and on a mesh of N peers on this machine
(each peer a separate "mlx-mesh join" process on loopback), checks the texts are identical, and
reports mlx_lm.benchmark's figures per row (prompt_tps, generation_tps, peak_memory) and the ratios:
  decode     generation tok/s, 1 stream, mesh ÷ mlx_lm
  prefill    time to the first token of the -p prompt, mlx_lm ÷ mesh (above 1: the mesh is faster)
  streams    aggregate tok/s of 4 concurrent streams ÷ 1 stream (mesh), each from its requests'
             start to their end, so it includes the 4 prompts' prefills
  streams, steady   the same while all 4 streams generate (the pipeline's own rate, without that ramp)
  memory     engine peak RSS of the largest peer ÷ the mlx_lm process's peak RSS
mlx_lm stays loaded in its own process and runs one generation before the first mesh trial and one
after each, so every decode and prefill ratio is the median of per-trial ratios, each trial against the
geometric mean of the mlx_lm runs just before and after it: on a shared machine a core's speed drifts by
tens of percent over minutes, and figures taken minutes apart would compare that drift.

Options:
  -p, --prompt-tokens <n>      prompt length in tokens (default 1024)
  -g, --generation-tokens <n>  tokens to generate, at most (default 64; EOS ends a generation earlier)
  -n, --num-trials <n>         measured trials per mesh row, after one warm-up (default 2)
  --peers <list>               mesh sizes, comma-separated (default 1,2)
  --model <id|dir|file.gguf>   model (default: the bundled default model)
  --random <llama-HxL>         a random-weight llama of hidden H and L layers, generated once into
                               <data-dir>/models/random-llama-HxL (e.g. llama-1024x16, ~1.4 GB float32)
  --pin                        Linux: each peer and its engine on its own core (taskset -c i), the
                               mlx_lm baseline on one core, one BLAS thread everywhere. Several
                               processes on one machine share memory bandwidth and caches, so only
                               pinned runs stand in honestly for N machines; unpinned, the peers and
                               the baseline compete for every core.
  --streams <list>             concurrency levels (default 1,4 locally, 1,2,4,8 with --api)
  --api <url>                  benchmark a running cluster as a client would: time to first token,
                               tok/s per stream and aggregate tok/s at each concurrency level
  --blas <spec>                MLX_MESH_BLAS for the engines and mlx_lm (auto, bundled or a library)
  --json                       one JSON object on stdout: {meta, rows, ratios}
  --chart <file.svg>           the ratios as a bar chart
  --data-dir <dir>             where models live (default ${defaults.dataDir})
  --python <path>              the engine's Python (default: the data dir's venv)

Progress goes to stderr. A run on the default model with the defaults takes a few minutes.
`;

const OPTIONS = {
  ...SHARED_OPTIONS,
  'prompt-tokens': { type: 'string', short: 'p', default: '1024' },
  'generation-tokens': { type: 'string', short: 'g', default: '64' },
  'num-trials': { type: 'string', short: 'n', default: '2' },
  peers: { type: 'string', default: '1,2' },
  model: { type: 'string' },
  random: { type: 'string' },
  pin: { type: 'boolean', default: false },
  streams: { type: 'string' },
  api: { type: 'string' },
  blas: { type: 'string' },
  chart: { type: 'string' },
} as const;

export interface Row {
  setup: string;
  /** 0 for mlx_lm. */
  peers: number;
  cores: number[] | null;
  prompt_tokens: number;
  generation_tokens: number;
  prompt_s: number;
  prompt_tps: number;
  generation_tps: number;
  /** mlx_lm: MLX's peak memory in GB; mesh: null (see peak_rss_bytes). */
  peak_memory: number | null;
  /** mlx_lm: the process; mesh: each peer's engine process, by rank. */
  peak_rss_bytes: Array<number | null>;
  same_text: boolean | null;
  /** Only when the texts differ: the mesh's and mlx_lm's, to see where. */
  texts?: { mesh: string; mlx_lm: string };
  streams: Record<string, LevelRun>;
  /** Mesh: per stage, compute inside the engine vs transfer, for the prompt and per decoded token. */
  hops?: Hops;
  trials: Array<Omit<StreamRun, 'text'>>;
}

/** The last trial, split at its first token. */
interface Hops {
  stages: Array<{ rank: number; layers: [number, number] | null }>;
  /** Overlapped prefill: stages compute at once (their compute can add up to more than the wall time), and an
   *  op's round trip includes waiting behind the chunk before it; so nothing is "left over" here. */
  prefill: { wall_ms: number; stages: HopFigures[] };
  /** One token's step is sequential through the stages: wall = engine round trips + link transfers + other
   *  (HTTP, the origin's work, the token's way back). */
  decode_per_token: { wall_ms: number; other_ms: number; stages: HopFigures[] };
}

export interface Ratios {
  peers: number;
  decode: number;
  prefill: number;
  streams: number;
  /** The same while every stream generates (ConcurrentRun.steadyTps ÷ one stream's generation rate):
   *  the pipeline's rate without the ramp of the k prompts' prefills and the streams ending apart. */
  streams_steady: number | null;
  /** null where the engines' peak RSS cannot be read (no /proc). */
  memory: number | null;
  /** The lowest and highest of the trials' own ratios behind each median: how far this machine's drift
   *  moved them (a median whose range spans a goal has not settled whether it is met). */
  range: { decode: [number, number]; prefill: [number, number]; streams: [number, number]; streams_steady: [number, number] | null };
}

const progress = (line: string) => process.stderr.write(`${line}\n`);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function positiveInt(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw meshError('BAD_ARGUMENT', `${flag} must be a whole number ≥ 1, got "${value}"`);
  return n;
}

function intList(value: string, flag: string): number[] {
  return value.split(',').map((v) => positiveInt(v.trim(), flag));
}

/** The mlx-lm directory for --model / --random; a GGUF or the default model is converted once by an engine. */
async function modelDir(spec: string | undefined, random: string | undefined, dataDir: string, python: string): Promise<string> {
  if (classifyModelSpec(random ? undefined : spec) === 'dir') return path.resolve(spec!);
  const engine = new EngineSupervisor({ dataDir, python });
  let dir: string;
  try {
    await engine.start();
    dir = (await resolveModel(random ? undefined : spec, { dataDir, engine, python })).path;
  } finally {
    await engine.stop();
  }
  if (!random) return dir;
  const out = path.join(dataDir, 'models', `random-${random}`);
  if (!fs.existsSync(path.join(out, 'config.json'))) progress(`· generating random-weight ${random} into ${out} (once)`);
  const { stdout } = await promisify(execFile)(python, [path.join(PACKAGE_ROOT, 'bench', 'make_random_model.py'), random, out, dir], {
    maxBuffer: 1 << 20,
  });
  return (JSON.parse(stdout) as { path: string }).path;
}

function baselineRow(info: BaselineInfo, runs: BaselineRun[], memory: BaselineMemory, core: number | null, g: number): Row {
  return {
    setup: 'mlx_lm',
    peers: 0,
    cores: core === null ? null : [core],
    prompt_tokens: info.prompt_tokens,
    generation_tokens: g,
    prompt_s: median(runs.map((r) => r.prompt_s)),
    prompt_tps: median(runs.map((r) => r.prompt_tps)),
    generation_tps: median(runs.map((r) => r.generation_tps)),
    peak_memory: memory.peak_memory,
    peak_rss_bytes: [memory.peak_rss_bytes],
    same_text: true,
    streams: {},
    trials: runs.map((r) => ({ ttftS: r.prompt_s, seconds: 0, promptTokens: info.prompt_tokens, tokens: r.tokens, generationTps: r.generation_tps })),
  };
}

/** A concurrency level; on a local mesh also how each stage's engine spent it (by rank). */
type LevelRun = ConcurrentRun & { stages?: StreamStageFigures[] };

/** k concurrent streams at each level; with the stages' APIs, their engines' figures per level. */
async function measureStreams(api: string, levels: number[], g: number, stageApis?: string[]): Promise<Record<string, LevelRun>> {
  const out: Record<string, LevelRun> = {};
  for (const k of levels) {
    progress(`   ${k} concurrent stream${k > 1 ? 's' : ''} …`);
    const before = stageApis && (await snapshot(stageApis));
    const run: LevelRun = await concurrentStreams(api, k, g);
    if (stageApis && before) run.stages = streamStages(before, await snapshot(stageApis), run.seconds * 1000);
    out[String(k)] = run;
  }
  return out;
}

/** A mesh row, and what its ratios are taken from. */
export interface MeshResult {
  row: Row;
  /** The baseline's runs, one more than the trials: runs i and i + 1 were taken just before and just
   *  after the mesh's trial i. */
  baseRuns: BaselineRun[];
  /** Per trial: aggregate tok/s at the top concurrency level ÷ at the lowest, measured back to back. */
  streamRatios: number[];
  /** Per trial: the same with the steady rates (while every stream generates), where there was one. */
  steadyRatios: number[];
}

async function meshRow(
  peers: number,
  opts: {
    model: string;
    python: string;
    env: NodeJS.ProcessEnv;
    pin: boolean;
    baseline: ServedBaseline;
    g: number;
    n: number;
    levels: number[];
    /** mlx_lm's greedy text with this prefill step size: what the mesh must generate. */
    reference: (step: number) => Promise<string>;
  },
): Promise<MeshResult> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mlx-mesh-bench-'));
  const procs = await startPeerProcesses({ peers, model: opts.model, python: opts.python, pin: opts.pin, env: opts.env, root });
  try {
    progress(`   waiting for ${peers} peer${peers > 1 ? 's' : ''} to load their layers …`);
    const stages = await waitForCluster(procs, 900_000);
    const ids = await Promise.all(procs.map(async (p) => [p, (await (await fetch(`${p.apiUrl}/health`)).json()).peer_id as string] as const));
    const byRank = stages.map((s) => ids.find(([, id]) => id === s.device_id)![0]);
    const apis = byRank.map((p) => p.apiUrl);
    // Ask the peer holding the last stage, as the demo does: with several peers the request crosses every link.
    const api = apis[apis.length - 1];
    const { prompt, prompt_tokens: promptTokens } = opts.baseline.info;
    await oneStream(api, prompt, 4); // warm-up
    const trials: StreamRun[] = [];
    const baseRuns: BaselineRun[] = [];
    const streamTrials: Array<Record<string, LevelRun>> = [];
    let hops: Hops | undefined;
    // mlx_lm before the first trial and after each: every trial is compared with the runs on either side.
    progress(`   mlx_lm …`);
    baseRuns.push(await opts.baseline.trial());
    for (let i = 0; i < opts.n; i++) {
      progress(`   trial ${i + 1}/${opts.n}: the mesh, then mlx_lm …`);
      // Engine totals before, at the first token (the prompt is through) and after: prefill vs decode per stage.
      const before = await snapshot(apis);
      let atFirst: Promise<StageTotals[]> | undefined;
      const t = await oneStream(api, prompt, opts.g, () => (atFirst = snapshot(apis)));
      const [mid, after] = await Promise.all([atFirst ?? snapshot(apis), snapshot(apis)]);
      trials.push(t);
      const steps = Math.max(1, t.tokens - 1);
      const decodeWallMs = ((t.seconds - t.ttftS) * 1000) / steps;
      const decodeHops = hopDelta(mid, after, steps);
      hops = {
        stages: stages.map((s) => ({ rank: s.rank, layers: s.layers })),
        prefill: { wall_ms: t.ttftS * 1000, stages: hopDelta(before, mid) },
        decode_per_token: { wall_ms: decodeWallMs, other_ms: otherMs(decodeWallMs, decodeHops), stages: decodeHops },
      };
      baseRuns.push(await opts.baseline.trial());
    }
    for (let i = 0; i < opts.n; i++) {
      progress(`   concurrent streams, trial ${i + 1}/${opts.n} …`);
      streamTrials.push(await measureStreams(api, opts.levels, opts.g, apis));
    }
    const rss = byRank.map((p) => {
      const peaks = enginePids(p.child.pid!).map(peakRssBytes).filter((b): b is number => b !== null);
      return peaks.length ? Math.max(...peaks) : null;
    });
    // The mesh splits the prompt into chunks by its number of stages; mlx_lm with the same step is the
    // reference. A step as long as the prompt chunks it as mlx_lm's default does: the baseline's own text.
    const step = prefillChunkSize(promptTokens, stages.length);
    const expected = step >= promptTokens - 1 || step === defaults.prefillChunkMax ? baseRuns[0].text : await opts.reference(step);
    const top = String(Math.max(...opts.levels));
    const low = String(Math.min(...opts.levels));
    const row: Row = {
      setup: 'mesh',
      peers,
      cores: opts.pin ? byRank.map((p) => p.core!) : null,
      prompt_tokens: trials[0].promptTokens,
      generation_tokens: opts.g,
      prompt_s: median(trials.map((t) => t.ttftS)),
      prompt_tps: median(trials.map((t) => t.promptTokens / t.ttftS)),
      generation_tps: median(trials.map((t) => t.generationTps)),
      peak_memory: null,
      peak_rss_bytes: rss,
      same_text: trials.every((t) => t.text === expected),
      ...(trials.some((t) => t.text !== expected) ? { texts: { mesh: trials.find((t) => t.text !== expected)!.text, mlx_lm: expected } } : {}),
      streams: Object.fromEntries(opts.levels.map((k) => [String(k), medianRun(streamTrials.map((st) => st[String(k)]))])),
      hops,
      trials: trials.map(({ text: _t, ...t }) => t),
    };
    return {
      row,
      baseRuns,
      streamRatios: streamTrials.map((st) => st[top].aggregateTps / st[low].aggregateTps),
      // Trials whose streams all generated at once for a while (short generations may not).
      steadyRatios: streamTrials.filter((st) => st[top].steadyTps > 0 && st[low].steadyTps > 0).map((st) => st[top].steadyTps / st[low].steadyTps),
    };
  } finally {
    await stopPeerProcesses(procs);
    fs.rmSync(root, { recursive: true, force: true });
  }
}

/** The run with the median aggregate tok/s (the lower middle one of an even count). */
function medianRun(runs: LevelRun[]): LevelRun {
  const sorted = [...runs].sort((a, b) => a.aggregateTps - b.aggregateTps);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

/**
 * Each ratio is the median over trials of that trial's own ratio: the mesh's trial i against the
 * baseline's runs just before and after it, and trial i's concurrency levels against each other.
 */
export function ratiosOf(mesh: MeshResult, basePeakRss: number): Ratios {
  const { row, baseRuns } = mesh;
  // The geometric mean of the baseline runs on either side of trial i: a drift that is steady over the
  // two runs cancels.
  const around = (i: number, f: (r: BaselineRun) => number) => {
    const [before, after] = baseRuns.slice(i, i + 2);
    return after ? Math.sqrt(f(before) * f(after)) : f(before);
  };
  const decode = row.trials.map((t, i) => t.generationTps / around(i, (r) => r.generation_tps));
  const prefill = row.trials.map((t, i) => around(i, (r) => r.prompt_s) / t.ttftS);
  const range = (xs: number[]): [number, number] => [Math.min(...xs), Math.max(...xs)];
  return {
    peers: row.peers,
    decode: median(decode),
    prefill: median(prefill),
    streams: median(mesh.streamRatios),
    streams_steady: mesh.steadyRatios.length ? median(mesh.steadyRatios) : null,
    memory: row.peak_rss_bytes.every((b) => b !== null) ? Math.max(...(row.peak_rss_bytes as number[])) / basePeakRss : null,
    range: { decode: range(decode), prefill: range(prefill), streams: range(mesh.streamRatios), streams_steady: mesh.steadyRatios.length ? range(mesh.steadyRatios) : null },
  };
}

function loadavg(): number[] {
  return os.loadavg().map((x) => Math.round(x * 100) / 100);
}

function table(rows: Row[], ratios: Ratios[]): string {
  const head = ['setup', 'cores', 'prompt tok', 'prompt_tps', 'gen tok/s', 'peak RSS MB', 'same text', ...Object.keys(rows.at(-1)?.streams ?? {}).map((k) => `${k}× agg tok/s`)];
  const body = rows.map((r) => [
    r.peers ? `mesh, ${r.peers} peer${r.peers > 1 ? 's' : ''}` : 'mlx_lm, one process',
    r.cores ? r.cores.join(',') : '-',
    String(r.prompt_tokens),
    r.prompt_tps.toFixed(1),
    r.generation_tps.toFixed(2),
    r.peak_rss_bytes.map((b) => (b === null ? '?' : (b / 2 ** 20).toFixed(0))).join('/'),
    r.same_text ? 'yes' : 'NO',
    ...Object.keys(rows.at(-1)?.streams ?? {}).map((k) => (r.streams[k] ? r.streams[k].aggregateTps.toFixed(2) : '-')),
  ]);
  const rhead = ['ratios (median, trials low–high)', 'decode', 'prefill', `streams`, 'streams, steady', 'memory'];
  const withRange = (v: number, [lo, hi]: [number, number]) => `${v.toFixed(2)} (${lo.toFixed(2)}–${hi.toFixed(2)})`;
  const rbody = ratios.map((x) => [
    `mesh, ${x.peers} peer${x.peers > 1 ? 's' : ''}`,
    withRange(x.decode, x.range.decode),
    withRange(x.prefill, x.range.prefill),
    withRange(x.streams, x.range.streams),
    x.streams_steady === null || !x.range.streams_steady ? '-' : withRange(x.streams_steady, x.range.streams_steady),
    x.memory === null ? '?' : x.memory.toFixed(2),
  ]);
  return `${format([head, ...body])}\n\n${format([rhead, ...rbody])}\n${rows.map(hopTable).join('')}${rows.map(streamsTable).join('')}`;
}

/** Per stage: prefill and per-token decode compute vs engine I/O, bytes out of the engine; the rest is links. */
function hopTable(r: Row): string {
  if (!r.hops) return '';
  const { prefill, decode_per_token: dec } = r.hops;
  const head = ['stage', 'layers', 'prefill compute ms', 'KB in', 'decode compute ms/tok', 'engine I/O ms/tok', 'link ms/tok', 'KB in/tok'];
  const body = r.hops.stages.map((s, i) => [
    String(s.rank),
    s.layers ? s.layers.join('-') : '-',
    prefill.stages[i].compute_ms.toFixed(1),
    (prefill.stages[i].bytes_in / 1024).toFixed(1),
    dec.stages[i].compute_ms.toFixed(2),
    dec.stages[i].engine_io_ms.toFixed(2),
    dec.stages[i].transfer_ms.toFixed(2),
    (dec.stages[i].bytes_in / 1024).toFixed(2),
  ]);
  const rest =
    `prefill ${prefill.wall_ms.toFixed(1)} ms to the first token; decode ${dec.wall_ms.toFixed(2)} ms per token, ` +
    `${dec.other_ms.toFixed(2)} of it outside engines and links (HTTP, the origin, the token's way back)`;
  return `\nmesh, ${r.peers} peer${r.peers > 1 ? 's' : ''}: where the time goes\n${format([head, ...body])}\n${rest}\n`;
}

/** Per concurrency level and stage: the engine's single forwards and batches, and how busy it was. */
function streamsTable(r: Row): string {
  const levels = Object.entries(r.streams).filter(([, run]) => run.stages);
  if (!levels.length) return '';
  const head = ['streams', 'stage', 'single forwards', 'ms per single', 'batches', 'rows per batch', 'ms per batch', 'engine busy'];
  const body = levels.flatMap(([k, run]) =>
    run.stages!.map((s, i) => [
      i ? '' : k,
      String(i),
      String(s.singles),
      s.singles ? s.ms_per_single.toFixed(1) : '-',
      String(s.batches),
      s.batches ? s.rows_per_batch.toFixed(2) : '-',
      s.batches ? s.ms_per_batch.toFixed(1) : '-',
      `${(100 * s.busy).toFixed(0)}%`,
    ]),
  );
  return `\nmesh, ${r.peers} peer${r.peers > 1 ? 's' : ''}: each stage's engine during the streams (the busiest one bounds the aggregate)\n${format([head, ...body])}\n`;
}

function format(lines: string[][]): string {
  const widths = lines[0].map((_, i) => Math.max(...lines.map((l) => (l[i] ?? '').length)));
  return lines.map((l) => l.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ')).join('\n');
}

async function runApi(url: string, levels: number[], g: number, n: number, json: boolean, chart?: string): Promise<number> {
  const api = url.replace(/\/$/, '');
  const load = loadavg();
  const started = Date.now();
  progress(`· warm-up request to ${api}`);
  await oneStream(api, 'Hello', 4);
  const trials: StreamRun[] = [];
  for (let i = 0; i < n; i++) trials.push(await oneStream(api, 'Once upon a time, in a quiet village by the sea,', g));
  const streams = await measureStreams(api, levels, g);
  const one = streams[String(levels[0])];
  const ratios = Object.fromEntries(levels.map((k) => [String(k), streams[String(k)].aggregateTps / one.aggregateTps]));
  const meta = { api, generation_tokens: g, num_trials: n, cpus: os.cpus().length, loadavg_before: load, loadavg_after: loadavg(), node: process.version, mlx_mesh: PACKAGE_VERSION, seconds: (Date.now() - started) / 1000 };
  const single = { ttft_s: median(trials.map((t) => t.ttftS)), generation_tps: median(trials.map((t) => t.generationTps)) };
  if (chart) writeRatioChart(chart, `aggregate tok/s ÷ 1 stream, ${api}`, Object.entries(ratios).map(([k, v]) => ({ label: `${k} streams`, value: v })));
  if (json) {
    process.stdout.write(`${JSON.stringify({ meta, single, streams, ratios }, null, 2)}\n`);
    return EXIT.ok;
  }
  const lines = [['streams', 'mean TTFT s', 'mean tok/s', 'aggregate tok/s', '÷ 1 stream']];
  for (const k of levels) {
    const s = streams[String(k)];
    lines.push([String(k), s.meanTtftS.toFixed(3), s.meanGenerationTps.toFixed(2), s.aggregateTps.toFixed(2), ratios[String(k)].toFixed(2)]);
  }
  process.stdout.write(`${format(lines)}\n\nload ${meta.loadavg_before.join(' ')} → ${meta.loadavg_after.join(' ')} · ${meta.cpus} CPUs · ${meta.seconds.toFixed(0)} s\n`);
  return EXIT.ok;
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, OPTIONS);
  const p = positiveInt(values['prompt-tokens'], '-p');
  const g = positiveInt(values['generation-tokens'], '-g');
  const n = positiveInt(values['num-trials'], '-n');
  const levels = intList(values.streams ?? (values.api ? '1,2,4,8' : '1,4'), '--streams');
  if (values.api) return runApi(values.api, levels, g, n, values.json, values.chart);

  const peerCounts = intList(values.peers, '--peers');
  if (values.pin && process.platform !== 'linux') throw meshError('BAD_ARGUMENT', '--pin needs Linux (taskset)');
  if (values.random && values.model) throw meshError('BAD_ARGUMENT', 'give --model or --random, not both');
  const dataDir = dataDirOption(values);
  const python = resolvePython({ python: values.python, dataDir }).path;
  const env: NodeJS.ProcessEnv = { ...process.env, MLX_MESH_LOG: process.env.MLX_MESH_LOG ?? 'warn' };
  if (values.blas !== undefined) env.MLX_MESH_BLAS = values.blas;
  if (values.pin) Object.assign(env, { OPENBLAS_NUM_THREADS: '1', BLIS_NUM_THREADS: '1' });

  const load = loadavg();
  const started = Date.now();
  const model = await modelDir(values.model, values.random, dataDir, python);
  const baseCore = values.pin ? 0 : null;
  const spec: BaselineSpec = { model, python, env, core: baseCore, promptTokens: p, generationTokens: g };
  progress(`· mlx_lm, one process${values.pin ? ' (core 0)' : ''}: ${model}, -p ${p} -g ${g} -n ${n}; loading and warming up …`);
  const baseline = await servedBaseline(spec);
  const meshes: MeshResult[] = [];
  let memory: BaselineMemory;
  try {
    const references = new Map<number, Promise<string>>();
    const reference = (step: number) => {
      if (!references.has(step)) {
        progress(`   mlx_lm reference with prefill step ${step} …`);
        references.set(step, mlxLmOnce(spec, step));
      }
      return references.get(step)!;
    };
    for (const peers of peerCounts) {
      progress(`· mesh, ${peers} peer${peers > 1 ? 's' : ''}${values.pin ? ' (pinned)' : ''}, each trial beside one of mlx_lm`);
      const result = await meshRow(peers, { model, python, env, pin: values.pin, baseline, g, n, levels, reference });
      if (!result.row.same_text) progress(`   ! the mesh's text differs from mlx_lm's`);
      meshes.push(result);
    }
    memory = await baseline.finish();
  } catch (err) {
    baseline.kill();
    throw err;
  }
  const rows: Row[] = [baselineRow(baseline.info, meshes.flatMap((m) => m.baseRuns), memory, baseCore, g), ...meshes.map((m) => m.row)];
  const ratios = meshes.map((m) => ratiosOf(m, memory.peak_rss_bytes));
  const meta = {
    model,
    random: values.random ?? null,
    prompt_tokens: baseline.info.prompt_tokens,
    generation_tokens: g,
    num_trials: n,
    peers: peerCounts,
    streams: levels,
    pin: values.pin,
    blas: baseline.info.blas,
    malloc: baseline.info.malloc ?? 'system',
    // jemalloc's own settings, e.g. thp:always (huge pages: faster steps, more RSS), for the engines and mlx_lm alike.
    malloc_conf: env.MALLOC_CONF ?? null,
    sched: baseline.info.sched ?? 'normal',
    openblas_threads: env.OPENBLAS_NUM_THREADS ?? null,
    blis_threads: baseline.info.blis_threads ?? env.BLIS_NUM_THREADS ?? null,
    cpus: os.cpus().length,
    cpu_model: os.cpus()[0]?.model ?? null,
    loadavg_before: load,
    loadavg_after: loadavg(),
    versions: { node: process.version, mlx_mesh: PACKAGE_VERSION, ...baseline.info.versions },
    seconds: (Date.now() - started) / 1000,
  };
  if (values.chart) {
    writeRatioChart(
      values.chart,
      `${path.basename(model)}, ${values.pin ? 'pinned, ' : ''}-p ${baseline.info.prompt_tokens} -g ${g}`,
      ratios.flatMap((r) => [
        { label: `${r.peers}p decode, mesh ÷ mlx_lm`, value: r.decode },
        { label: `${r.peers}p prefill, mlx_lm ÷ mesh`, value: r.prefill },
        { label: `${r.peers}p ${Math.max(...levels)} streams ÷ 1 stream`, value: r.streams },
        { label: `${r.peers}p memory, peer ÷ mlx_lm`, value: r.memory ?? NaN, better: 'lower' as const },
      ]),
    );
  }
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ meta, rows, ratios }, null, 2)}\n`);
  } else {
    process.stdout.write(table(rows, ratios));
    process.stdout.write(
      `\n${path.basename(model)} · blas ${meta.blas} · malloc ${meta.malloc} · sched ${meta.sched} · ${meta.cpus} CPUs · load ${load.join(' ')} → ${meta.loadavg_after.join(' ')} · ${meta.seconds.toFixed(0)} s\n`,
    );
  }
  return EXIT.ok;
}
