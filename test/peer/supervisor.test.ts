// The supervisor with the real engine and the golden tiny model: typed ops through a 2-stage
// pipeline, restart of a kill -9'd engine with its layers re-loaded, a hung engine caught by the
// health check, and giving up once the restart budget is spent.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { EngineSupervisor, type EngineState, type EngineSupervisorOptions, type SupervisorEvents } from '../../peer/supervisor.ts';
import { isMeshError } from '../../core/errors.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const STORIES_GGUF = path.resolve(repoRoot, '../shared/models/stories260K.gguf');
const PROMPT_TOKENS = [1, 403, 407, 261, 378];
const GOLDEN_TEXT =
  ', there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, ' +
  'red ball. She wanted to play with it, but it was too high.\nLily';
const GREEDY = { temperature: 0, top_p: 1, seed: null };

const dataDir = process.env.MLX_MESH_DATA_DIR ?? path.join(os.homedir(), '.mlx-mesh');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mlx-mesh-supervisor-'));
const started: EngineSupervisor[] = [];
let modelDir = '';

function supervisor(opts: Partial<EngineSupervisorOptions> = {}): EngineSupervisor {
  const s = new EngineSupervisor({ dataDir, restartDelayMs: 50, ...opts });
  started.push(s);
  return s;
}

function until<T>(emitter: EngineSupervisor, event: keyof SupervisorEvents, pred: (...a: any[]) => boolean = () => true, ms = 30_000): Promise<T[]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${event}`)), ms);
    const on = (...args: any[]) => {
      if (!pred(...args)) return;
      clearTimeout(timer);
      emitter.off(event, on as never);
      resolve(args);
    };
    emitter.on(event, on as never);
  });
}

test.before(async () => {
  const s = supervisor();
  await s.start();
  modelDir = (await s.convert(STORIES_GGUF, path.join(tmp, 'stories260K'))).path;
  await s.stop();
});

test.after(async () => {
  await Promise.all(started.map((s) => s.stop()));
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('states, typed ops and 60 golden tokens through a 2-stage pipeline', async () => {
  const first = supervisor();
  const last = supervisor();
  const states: EngineState[] = [];
  first.on('state', (s: EngineState) => states.push(s));
  await Promise.all([first.start(), last.start()]);
  const info = await first.inspect(modelDir);
  assert.is(info.n_layers, 5);
  const [a, b] = await Promise.all([
    first.load({ model: modelDir, start: 0, end: 3 }),
    last.load({ model: modelDir, start: 3, end: 5 }),
  ]);
  assert.equal([a.first, a.last, b.first, b.last], [true, false, false, true]);
  assert.equal(states, ['starting', 'idle', 'loading', 'ready']);
  assert.equal((await first.tokenize({ text: 'Once upon a time', addBos: true })).tokens, PROMPT_TOKENS);

  const out: number[] = [];
  let chunk = PROMPT_TOKENS;
  let offset = 0;
  let lastHidden;
  for (let i = 0; i < 60; i++) {
    const { hidden } = await first.forward({ request: 'r', offset, tokens: chunk, sample: true, sampling: GREEDY });
    assert.is(hidden!.dtype, 'float32');
    assert.equal(hidden!.shape, [1, chunk.length, 64]);
    const { token } = await last.forward({ request: 'r', offset, hidden, sample: true, sampling: GREEDY });
    out.push(token!);
    lastHidden = hidden;
    offset += chunk.length;
    chunk = [token!];
  }
  assert.is((await last.decode(out)).text, GOLDEN_TEXT);
  try {
    await last.forward({ request: 'r', offset: 3, hidden: lastHidden, sample: false });
    assert.unreachable();
  } catch (err) {
    assert.ok(isMeshError(err, 'BAD_OFFSET'), String(err));
  }
  assert.equal(await first.release('r'), { released: true });
  assert.is((await first.stats()).requests, 0);
  await first.stop();
  await first.stop();
  assert.is(first.state, 'stopped');
});

test('a kill -9 fails the request in flight, restarts the engine and re-loads its layers', async () => {
  const s = supervisor();
  await s.start();
  await s.load({ model: modelDir, start: 0, end: 5 });
  const oldPid = s.pid!;
  const restarted = until(s, 'restart');
  const ready = until(s, 'state', (st) => st === 'ready');
  const inFlight = s.forward({ request: 'x', offset: 0, tokens: PROMPT_TOKENS, sample: true, sampling: GREEDY });
  process.kill(oldPid, 'SIGKILL');
  try {
    await inFlight;
    assert.unreachable('the request in flight must fail');
  } catch (err) {
    assert.ok(isMeshError(err, 'ENGINE_FAILED'), String(err));
  }
  const [info] = await restarted;
  assert.is((info as any).attempt, 1);
  assert.match((info as any).reason, /SIGKILL/);
  await ready;
  assert.is.not(s.pid, oldPid);
  assert.is(s.loaded?.n_layers, 5);
  const { token } = await s.forward({ request: 'x', offset: 0, tokens: PROMPT_TOKENS, sample: true, sampling: GREEDY });
  assert.is((await s.decode([token!])).text, ',');
  await s.stop();
});

test('the detokenizer spec is asked once per model; an ask the engine dies under is asked again, not kept failed', async () => {
  const s = supervisor();
  await s.start();
  await s.load({ model: modelDir, start: 0, end: 0 });
  // Stopped, the engine cannot answer before it is killed: the ask fails with the crash.
  process.kill(s.pid!, 'SIGSTOP');
  const ready = until(s, 'state', (st) => st === 'ready');
  const asked = s.detokSpec();
  process.kill(s.pid!, 'SIGKILL');
  const err = await asked.then(() => null, (e: Error) => e);
  assert.ok(isMeshError(err, 'ENGINE_FAILED'), String(err));
  await ready;
  const spec = await s.detokSpec();
  assert.is(spec.kind, 'spm');
  assert.is(await s.detokSpec(), spec, 'kept once answered');
  assert.is(s.opStats().detok_spec?.count, 1, 'one ask of the restarted engine');
  await s.stop();
});

test('a hung engine fails its health check and is replaced', async () => {
  const s = supervisor({ healthIntervalMs: 200, healthTimeoutMs: 500 });
  await s.start();
  const oldPid = s.pid!;
  const restarted = until(s, 'restart');
  process.kill(oldPid, 'SIGSTOP');
  await restarted;
  assert.is(s.state, 'idle');
  assert.is.not(s.pid, oldPid);
  await s.stop();
});

test('a busy engine that misses a call\'s deadline fails that call and is replaced', async () => {
  // The health check only probes an idle engine; a hung one with calls waiting is caught by their deadlines.
  const s = supervisor({ healthIntervalMs: 60_000, timeouts: { tokenize: 500 } });
  await s.start();
  await s.load({ model: modelDir, start: 0, end: 5 });
  const oldPid = s.pid!;
  const restarted = until(s, 'restart');
  process.kill(oldPid, 'SIGSTOP');
  try {
    await s.tokenize({ text: 'Once upon a time' });
    assert.unreachable('should reject');
  } catch (err) {
    assert.ok(isMeshError(err, 'ENGINE_TIMEOUT'), String(err));
  }
  await restarted;
  await until(s, 'state', (st) => st === 'ready');
  assert.is.not(s.pid, oldPid);
  assert.equal((await s.tokenize({ text: 'Once upon a time', addBos: true })).tokens, PROMPT_TOKENS);
  await s.stop();
});

test('a failed engine is tried again after a cool-down, without layers; each give-up doubles the wait', async () => {
  const s = supervisor({ restartBudget: { maxRestarts: 1, windowMs: 60_000 }, retryAfter: { firstMs: 300, maxMs: 600 } });
  await s.start();
  await s.load({ model: modelDir, start: 0, end: 5 });
  for (let i = 0; i < 2; i++) {
    const next = until(s, 'state', (st) => st === 'ready' || st === 'failed');
    process.kill(s.pid!, 'SIGKILL');
    await next;
  }
  assert.is(s.state, 'failed');
  const failedPid = s.pid;
  // Tried again with a new budget (the try is its first restart): a fresh engine, idle (the plan in
  // force says what to load).
  const idle = until(s, 'state', (st) => st === 'idle');
  const [info] = await until<{ reason: string }>(s, 'restart');
  assert.match(info.reason, /tried again/);
  await idle;
  assert.ok(s.pid && s.pid !== failedPid, 'a new engine process');
  assert.is(s.loaded, undefined, 'no layers until asked');
  await s.load({ model: modelDir, start: 0, end: 5 });
  assert.is(s.state, 'ready');
  // Failing again waits twice as long before the next try.
  const failedAgain = until(s, 'failed');
  process.kill(s.pid!, 'SIGKILL');
  await failedAgain;
  const at = Date.now();
  await until(s, 'restart');
  assert.ok(Date.now() - at >= 500, `the second try waits ~600 ms (${Date.now() - at} ms)`);
  await s.stop();
  assert.is(s.state, 'stopped');
});

test('after the restart budget is spent the supervisor gives up', async () => {
  const s = supervisor({ restartBudget: { maxRestarts: 2, windowMs: 60_000 } });
  await s.start();
  await s.load({ model: modelDir, start: 0, end: 5 });
  const failed = until(s, 'failed');
  let restarts = 0;
  s.on('restart', () => restarts++);
  for (let i = 0; i < 3; i++) {
    const back = until(s, 'state', (st) => st === 'ready' || st === 'failed');
    process.kill(s.pid!, 'SIGKILL');
    await back;
  }
  const [err] = await failed;
  assert.ok(isMeshError(err, 'ENGINE_FAILED'));
  assert.match((err as Error).message, /2 times/);
  assert.is(restarts, 2);
  assert.is(s.state, 'failed');
  try {
    await s.stats();
    assert.unreachable();
  } catch (e) {
    assert.ok(isMeshError(e, 'ENGINE_FAILED'));
  }
  // A load asked of a failed engine is refused and leaves it failed (it once showed 'loading' forever).
  const states: string[] = [];
  s.on('state', (st) => states.push(st));
  try {
    await s.load({ model: modelDir, start: 0, end: 5 });
    assert.unreachable();
  } catch (e) {
    assert.ok(isMeshError(e, 'ENGINE_FAILED'));
  }
  assert.is(s.state, 'failed');
  assert.equal(states, []);
  await s.stop();
  assert.is(s.state, 'stopped');
});

test.run();
