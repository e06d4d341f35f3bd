// A stage's engine lost mid-request while its peer stays up, with real processes: two peers on the tiny
// model, a long greedy stream from the coordinator, kill -9 of one engine process (the remote stage's,
// then the origin's own). The supervisor restarts it and re-loads its layers; the request waits for
// that and replays its tokens, so the client sees one stream with exactly the undisturbed text. Also a
// non-streaming request, concurrent streams and a sampled one, and the give-ups: an engine past its restart
// budget (5 crashes in 3 minutes) or whose re-load fails (its converted model moved away) ends the
// stream with an error event naming the device and the cause. Before a kill the budget could not take,
// other tests restart that peer's process (a fresh budget).
// MLX_MESH_REPLAY_CYCLES=10 node test/run.mjs replay   is the soak (default 2 cycles of each kill).
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { alive, children, type CliPeer, healthy, startPeer, streamCompletion } from '../helpers/cli-peers.ts';
import { getJson, STORIES_GREEDY, waitFor } from '../helpers/mesh.ts';

const CYCLES = Number(process.env.MLX_MESH_REPLAY_CYCLES ?? 2);
const REQUEST = { prompt: 'Once upon a time', max_tokens: 600, temperature: 0 };

const procs: CliPeer[] = [];
/** Every engine process seen, to check none outlives its peer. */
const engines = new Set<number>();
let reference = '';

/** The peer's one engine process (after a restart, the new one). */
async function engineOf(x: CliPeer, not?: number): Promise<number> {
  const pid = await waitFor(() => {
    const c = children(x.p.child.pid!);
    return c.length === 1 && c[0] !== not ? c[0] : 0;
  }, 60_000, `one engine process of ${x.name}`);
  engines.add(pid);
  return pid;
}

/** When each peer's engine was killed, by name: its supervisor restarts it 5 times in 3 minutes, then gives up. */
const kills = new Map<string, number[]>();
const BUDGET = { restarts: 5, windowMs: 3 * 60_000 };

const recentKills = (x: CliPeer) => (kills.get(x.name) ?? []).filter((t) => Date.now() - t < BUDGET.windowMs).length;

/** kill -9 of `x`'s engine; resolves once it is gone. */
async function killEngine(x: CliPeer): Promise<number> {
  const pid = await engineOf(x);
  process.kill(pid, 'SIGKILL');
  kills.set(x.name, [...(kills.get(x.name) ?? []), Date.now()]);
  await waitFor(() => !alive(pid), 15_000, `engine ${pid} gone`);
  return pid;
}

/** Restarts `x`'s peer process (same ports and data dir): its engine starts with a fresh restart budget. */
async function restartPeer(x: CliPeer): Promise<void> {
  await x.p.kill('SIGTERM');
  const other = procs.find((y) => y !== x)!;
  procs[procs.indexOf(x)] = await startPeer(x.name, [other.port], [], x);
  kills.delete(x.name);
  await healthy(procs, 2);
}

/** The peer `name` as it runs now, with room in its engine's restart budget for `crashes` more. */
async function withBudget(name: string, crashes = 1): Promise<CliPeer> {
  const x = procs.find((y) => y.name === name)!;
  if (recentKills(x) + crashes > BUDGET.restarts) await restartPeer(x);
  await healthy(procs, 2);
  return procs.find((y) => y.name === name)!;
}

test.before(async () => {
  const a = await startPeer('a', []);
  procs.push(a);
  procs.push(await startPeer('b', [a.port]));
  await healthy(procs, 2);
  const res = await fetch(`http://127.0.0.1:${a.api}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(REQUEST),
  });
  reference = (await res.json()).choices[0].text;
  assert.ok(reference.startsWith(STORIES_GREEDY), `the golden greedy text: ${reference.slice(0, 80)}`);
  assert.ok(reference.length > 1000, 'a long answer');
});

test.after(async () => {
  await Promise.all(procs.map((x) => x.p.kill('SIGTERM')));
});

const origin = () => procs.find((x) => x.name === 'a')!;

test(`kill -9 of a stage's engine mid-stream, the remote one and the origin's own: the undisturbed text (${CYCLES} cycles each)`, async () => {
  for (let cycle = 0; cycle < CYCLES; cycle++) {
    for (const [name, what] of [['b', 'remote'], ['a', 'origin']] as const) {
      const target = await withBudget(name);
      let killed = 0;
      const got = await streamCompletion(origin(), REQUEST, 20, async () => {
        killed = await killEngine(target);
      });
      assert.is(got.error, null, `${what} cycle ${cycle}: no error event`);
      assert.is(got.text, reference, `${what} cycle ${cycle}: exactly the undisturbed text`);
      assert.is(got.finishReason, 'length');
      const fresh = await engineOf(target, killed);
      console.log(`${what} engine kill, cycle ${cycle}: the stream stalled at most ${got.stallMs} ms after the kill and ended ${got.ms} ms after it; engine ${killed} -> ${fresh}`);
    }
  }
});

test('three concurrent streams through an engine that crashes: every one goes on to its end', async () => {
  const [a, b] = [origin(), await withBudget('b')];
  const never = async () => {};
  const all = await Promise.all([
    streamCompletion(a, REQUEST, 20, () => killEngine(b).then(() => {})),
    streamCompletion(a, REQUEST, Infinity, never),
    streamCompletion(a, REQUEST, Infinity, never),
  ]);
  for (const [i, got] of all.entries()) {
    assert.is(got.error, null, `stream ${i}: no error event`);
    assert.is(got.finishReason, 'length', `stream ${i} ran to max_tokens`);
    // Batched steps may round differently from a lone request's, so only the golden start is exact.
    assert.ok(got.text.startsWith(STORIES_GREEDY), `stream ${i}: the golden text`);
  }
});

test('a non-streaming request through an engine that crashes mid-request gets the undisturbed text', async () => {
  const [a, b] = [origin(), await withBudget('b')];
  const pending = fetch(`http://127.0.0.1:${a.api}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(REQUEST),
  });
  // Strike once the request is well under way: its trace on the origin has 20 tokens.
  await waitFor(async () => {
    const running = (await getJson(`http://127.0.0.1:${a.api}/debug/requests`)).requests.find((r: { state: string }) => r.state === 'running');
    return running && (await getJson(`http://127.0.0.1:${a.api}/debug/requests/${running.id}`)).steps.length >= 20;
  }, 60_000, '20 tokens of the request');
  await killEngine(b);
  const res = await pending;
  assert.is(res.status, 200);
  const body = await res.json();
  assert.is(body.choices[0].text, reference);
  assert.is(body.usage.completion_tokens, REQUEST.max_tokens);
});

test('a sampled stream (temperature > 0) through an engine that crashes still ends in a completion', async () => {
  const [a, b] = [origin(), await withBudget('b')];
  const got = await streamCompletion(a, { ...REQUEST, temperature: 0.9, seed: 7 }, 20, () => killEngine(b).then(() => {}));
  assert.is(got.error, null, 'no error event');
  assert.ok(got.finishReason === 'length' || got.finishReason === 'stop', `a finish reason: ${got.finishReason}`);
  assert.ok(got.text.length > 100, 'text on both sides of the crash');
});

/** Streams from the origin and strikes `b` after 20 chunks; also times when the origin shows b `failed`. */
async function strikeUntilFailed(b: CliPeer, strike: () => Promise<unknown>) {
  const a = origin();
  let failedAt = 0;
  let watching = true;
  const watch = (async () => {
    while (watching && !failedAt) {
      const dev = (await getJson(`http://127.0.0.1:${a.api}/distributed/gpu-info`)).devices.find((d: { device_id: string }) => d.device_id === b.id);
      if (dev?.status === 'failed') failedAt = Date.now();
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  const got = await streamCompletion(a, REQUEST, 20, () => strike().then(() => {}));
  const endedAt = Date.now();
  await waitFor(() => failedAt, 10_000, 'the device shown failed');
  watching = false;
  await watch;
  assert.ok(got.error, 'an error event');
  assert.is(got.error!.code, 'engine_failed');
  assert.ok(got.error!.message.includes(b.id), `it names the device: ${got.error!.message}`);
  assert.ok(got.text.length > 0 && reference.startsWith(got.text), 'the text before the error is the undisturbed text');
  // gpu-info is polled every 50 ms: the error event may come first (a negative figure).
  const afterGiveUp = endedAt - failedAt;
  assert.ok(afterGiveUp < 10_000, `the stream ends soon after the give-up (${afterGiveUp} ms)`);
  return { ...got, afterGiveUp };
}

test('an engine past its restart budget ends the stream with an error event naming the device and the cause; the survivor serves alone until it is tried again', async () => {
  const b = await withBudget('b', BUDGET.restarts + 1);
  // Spend the budget but one restart, each time waiting for the layers to be back.
  for (let i = recentKills(b); i < BUDGET.restarts; i++) {
    const killed = await killEngine(b);
    await engineOf(b, killed);
    await healthy(procs, 2);
  }
  const got = await strikeUntilFailed(b, () => killEngine(b));
  assert.match(got.error!.message, /crashed 5 times/, `and the cause: ${got.error!.message}`);
  console.log(`engine past its restart budget: error event ${got.ms} ms after the kill, ${got.afterGiveUp} ms after gpu-info showed the device failed: ${got.error!.message}`);
  // The coordinator plans without the failed engine: a, which can hold the tiny model, takes every
  // layer and serves the undisturbed text; b stays listed, failed and excluded with the cause.
  const a = origin();
  const info = await waitFor(async () => {
    const g = await getJson(`http://127.0.0.1:${a.api}/distributed/gpu-info`);
    const dev = (id: string) => g.devices.find((d: { device_id: string }) => d.device_id === id);
    return dev(a.id)?.status === 'healthy' && dev(a.id)?.layers?.[0] === 0 && !dev(b.id)?.layers ? g : null;
  }, 60_000, 'a plan of a alone');
  assert.is(info.devices.find((d: { device_id: string }) => d.device_id === b.id).status, 'failed');
  const cluster = await getJson(`http://127.0.0.1:${a.api}/cluster`);
  const excluded = (cluster.plan?.excluded ?? []).find((e: { id: string }) => e.id === b.id);
  assert.ok(excluded && /engine failed: .*crashed 5 times/.test(excluded.reason), `b excluded with the cause: ${JSON.stringify(cluster.plan?.excluded)}`);
  const res = await fetch(`http://127.0.0.1:${a.api}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(REQUEST),
  });
  assert.is(res.status, 200);
  assert.is((await res.json()).choices[0].text, reference, 'the survivor alone gives the undisturbed text');
  // b's own API says why it cannot serve, and where to go.
  const atB = await fetch(`http://127.0.0.1:${b.api}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(REQUEST),
  });
  assert.is(atB.status, 503);
  const why = (await atB.json()).error.message;
  assert.match(why, /engine failed .*crashed 5 times.*another peer/, why);
  // A minute after it gave up, b's supervisor tries the engine again; working, it is planned back in.
  const back = await waitFor(async () => {
    const g = await getJson(`http://127.0.0.1:${a.api}/distributed/gpu-info`);
    return g.cluster_status === 'healthy' && g.devices.find((d: { device_id: string }) => d.device_id === b.id)?.layers ? g : null;
  }, 180_000, 'b tried again and planned back in');
  assert.is(back.devices.filter((d: { layers: unknown }) => d.layers).length, 2);
  const again = await fetch(`http://127.0.0.1:${b.api}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(REQUEST),
  });
  assert.is((await again.json()).choices[0].text, reference, 'b serves the undisturbed text again');
});

test('an engine that cannot re-load its layers ends the stream with an error event naming the device and the cause', async () => {
  const b = await withBudget('b');
  // The layers' files move away (a test-only act; a user deleting the model cache does the same): the
  // supervisor restarts the engine, its re-load is refused, and the device cannot serve again by itself.
  const models = path.join(b.dataDir, 'models');
  const converted = fs.readdirSync(models).find((n) => n.startsWith('stories260K') && !n.endsWith('.moved'))!;
  let killed = 0;
  const got = await strikeUntilFailed(b, async () => {
    fs.renameSync(path.join(models, converted), path.join(models, `${converted}.moved`));
    killed = await killEngine(b);
  });
  assert.match(got.error!.message, /re-load/, `and the cause: ${got.error!.message}`);
  console.log(`engine that cannot re-load: error event ${got.ms} ms after the kill, ${got.afterGiveUp} ms after gpu-info showed the device failed: ${got.error!.message}`);
  await engineOf(b, killed); // the restarted engine stays up without layers (and must end with its peer)
});

test('no engine process outlives its peer', async () => {
  await Promise.all(procs.map((x) => x.p.kill('SIGTERM')));
  assert.ok(engines.size >= 11 + 2 * CYCLES, `engines seen: ${engines.size}`);
  await waitFor(() => [...engines].every((pid) => !alive(pid)), 15_000, 'every engine gone');
});

test.run();
