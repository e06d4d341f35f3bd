// The engine client against the real Python engine: hello, error replies that leave the engine
// serving, a killed engine rejecting what was pending, a missing interpreter, and the polite stop.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { EngineClient } from '../../peer/engine-client.ts';
import { defaults, ENGINE_PROTOCOL } from '../../core/defaults.ts';
import { isMeshError } from '../../core/errors.ts';
import { STORIES } from '../helpers/mesh.ts';

const dataDir = defaults.dataDir;
const started: EngineClient[] = [];

function client(opts: Partial<ConstructorParameters<typeof EngineClient>[0]> = {}): EngineClient {
  const c = new EngineClient({ dataDir, ...opts });
  started.push(c);
  return c;
}

test.after(async () => {
  await Promise.all(started.map((c) => c.stop()));
});

test('hello reports protocol, versions and the backend', async () => {
  const engine = client();
  const hello = await engine.start();
  assert.is(hello.protocol, ENGINE_PROTOCOL);
  assert.is(hello.backend, 'cpu');
  assert.is(hello.pid, engine.pid);
  assert.match(hello.mlx, /^\d+\.\d+/);
  assert.is(await engine.start(), hello, 'start() is idempotent');
  await engine.stop();
  assert.is(engine.running, false);
});

test('a bad op gets an error reply and the engine keeps serving', async () => {
  const engine = client();
  await engine.start();
  try {
    await engine.request('no-such-op');
    assert.unreachable('should reject');
  } catch (err) {
    assert.ok(isMeshError(err, 'ENGINE_ERROR'), String(err));
    assert.is((err as any).details.engineCode, 'BAD_REQUEST');
  }
  try {
    await engine.request('forward', { request: 'r', offset: 0, tokens: [1], sample: true });
    assert.unreachable('should reject');
  } catch (err) {
    assert.is((err as any).details.engineCode, 'NOT_LOADED');
  }
  const stats = await engine.request<{ requests: number }>('stats');
  assert.is(stats.requests, 0);
  await engine.stop();
});

test('tensors of every size cross the engine and come back bit-exact, several in flight', async () => {
  const engine = client();
  await engine.start();
  const sizes = [16, 8 << 10, 1 << 20, 16 << 20];
  const sent = sizes.map((n) => {
    const data = new Uint8Array(n);
    for (let i = 0; i < n; i += 4096) data[i] = (i >> 12) & 0xff;
    data[n - 1] = 0x5a;
    return { dtype: 'uint8', shape: [1, n], data };
  });
  const back = await Promise.all(sent.map((hidden) => engine.request<{ hidden: typeof hidden }>('echo', { hidden })));
  for (const [i, { hidden }] of back.entries()) {
    assert.equal(hidden.shape, sent[i].shape);
    assert.equal(Buffer.compare(Buffer.from(hidden.data), Buffer.from(sent[i].data)), 0, `${sizes[i]} bytes`);
  }
  await engine.stop();
});

test('killing the engine rejects every pending request with ENGINE_FAILED', async () => {
  const engine = client();
  await engine.start();
  const exits: unknown[] = [];
  engine.on('exit', (e) => exits.push(e));
  // The first request keeps the engine busy for a while (a GGUF conversion), so the others queue
  // behind it: none can have been answered when the engine dies.
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'mlx-mesh-kill-'));
  const pending = [
    engine.request('convert', { gguf: STORIES, out_dir: out }),
    ...Array.from({ length: 4 }, () => engine.request('stats')),
  ];
  engine.kill('SIGKILL');
  const results = await Promise.allSettled(pending);
  const rejected = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
  assert.is(rejected.length, 5);
  for (const r of rejected) assert.ok(isMeshError(r.reason, 'ENGINE_FAILED'), String(r.reason));
  await engine.waitExit();
  assert.equal(exits, [{ code: null, signal: 'SIGKILL' }]);
  try {
    await engine.request('stats');
    assert.unreachable('should reject');
  } catch (err) {
    assert.ok(isMeshError(err, 'ENGINE_FAILED'));
    assert.match((err as Error).message, /SIGKILL/);
  }
});

test('stop() escalates to SIGKILL when the engine does not answer shutdown', async () => {
  const engine = client({ stopGraceMs: 200 });
  await engine.start();
  // A stopped process ignores both the shutdown request and SIGTERM until it is continued.
  process.kill(engine.pid!, 'SIGSTOP');
  const t0 = Date.now();
  await engine.stop();
  assert.ok(Date.now() - t0 < 5000);
  assert.equal(await engine.waitExit(), { code: null, signal: 'SIGKILL' });
});

/** Rejects with a clear failure instead of hanging the test run when a call never ends. */
function settleWithin<T>(p: Promise<T>, ms: number, what: string): Promise<PromiseSettledResult<T>> {
  let timer: NodeJS.Timeout;
  const hang = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} never ended`)), ms)));
  return Promise.race([Promise.allSettled([p]).then(([r]) => r), hang]).finally(() => clearTimeout(timer));
}

test('a frame the engine cannot decode fails the call it belongs to; the calls around it are answered', async () => {
  const engine = client();
  await engine.start();
  // A frame that is not valid CBOR: a lone UTF-16 surrogate written as it is, which is not UTF-8. The
  // codec's own writer would write U+FFFD for it; the Map beside it sends the frame through cbor-x,
  // which writes surrogates unchanged. The engine cannot decode the frame and answers with `id: null`.
  const bad = { text: 'Once upon \ud800 a time', odd: new Map([[1, 2]]) };
  const calls = [engine.request('stats'), engine.request('tokenize', bad), engine.request('stats')];
  const [before, failed, after] = await Promise.all(calls.map((c, i) => settleWithin(c, 30_000, `call ${i}`)));
  assert.is(before.status, 'fulfilled');
  assert.is(after.status, 'fulfilled');
  assert.is(failed.status, 'rejected');
  const err = (failed as PromiseRejectedResult).reason;
  assert.ok(isMeshError(err, 'BAD_FRAME'), String(err));
  assert.match(err.message, /tokenize/);
  assert.is(engine.pendingCount, 0);
  await engine.stop();
});

test('a call the engine does not answer times out with an error naming the op and the limit', async () => {
  const engine = client({ timeouts: { stats: 400 } });
  await engine.start();
  const timeouts: string[] = [];
  engine.on('timeout', (op: string) => timeouts.push(op));
  process.kill(engine.pid!, 'SIGSTOP');
  try {
    const r = await settleWithin(engine.request('stats'), 30_000, 'stats');
    assert.is(r.status, 'rejected');
    const err = (r as PromiseRejectedResult).reason;
    assert.ok(isMeshError(err, 'ENGINE_TIMEOUT'), String(err));
    assert.match(err.message, /stats/);
    assert.match(err.message, /400 ms/);
    assert.equal(timeouts, ['stats']);
    assert.is(engine.pendingCount, 0);
  } finally {
    process.kill(engine.pid!, 'SIGCONT');
  }
  // Once it runs again, its late reply to the abandoned call is dropped and new calls are answered.
  assert.is((await engine.request<{ requests: number }>('stats', {}, { timeoutMs: 30_000 })).requests, 0);
  await engine.stop();
});

test('every op the client sends has a default deadline: seconds for quick ops, minutes for loads', () => {
  for (const op of ['hello', 'tokenize', 'decode', 'stats', 'release', 'shutdown', 'inspect']) {
    assert.ok(defaults.engineTimeoutsMs[op] >= 5_000 && defaults.engineTimeoutsMs[op] <= 120_000, op);
  }
  for (const op of ['load', 'convert', 'download']) assert.ok(defaults.engineTimeoutsMs[op] >= 5 * 60_000, op);
  assert.ok(defaults.engineTimeoutsMs.forward > 0);
});

test('a missing interpreter is PYTHON_NOT_FOUND and names the fix', async () => {
  const engine = client({ python: '/nonexistent/bin/python3' });
  try {
    await engine.start();
    assert.unreachable('should reject');
  } catch (err) {
    assert.ok(isMeshError(err, 'PYTHON_NOT_FOUND'), String(err));
    assert.match((err as Error).message, /mlx-mesh setup/);
  }
});

test('an interpreter without mlx is ENGINE_FAILED with the setup hint and its stderr', async () => {
  // The venv's interpreter with a PYTHONPATH entry whose `mlx` package cannot be imported: the same
  // failure as a venv built without MLX, on every machine (a system Python may or may not have MLX).
  const broken = fs.mkdtempSync(path.join(os.tmpdir(), 'mlx-mesh-nomlx-'));
  fs.mkdirSync(path.join(broken, 'mlx'));
  fs.writeFileSync(path.join(broken, 'mlx', '__init__.py'), "raise ImportError('No module named mlx.core', name='mlx.core')\n");
  const engine = client({ env: { ...process.env, PYTHONPATH: broken } });
  try {
    await engine.start();
    assert.unreachable('should reject');
  } catch (err) {
    assert.ok(isMeshError(err, 'ENGINE_FAILED'), String(err));
    assert.match((err as Error).message, /mlx-mesh setup/);
    assert.match((err as Error).message, /cannot import mlx\.core/);
  } finally {
    await engine.stop();
    fs.rmSync(broken, { recursive: true, force: true });
  }
});

test.run();
