// Elections under real network faults: three peer processes in network namespaces on one bridge (root).
// C's link down: A and B carry on with their coordinator; back up, one coordinator within a deadline and
// at most one new term for the cut and the heal together. A–C cut while A–B and B–C stay up (a
// blackhole route each way): terms stop moving, one coordinator, the peer that cannot reach it says so
// (degraded); the cluster keeps serving through the peers that follow the coordinator, the degraded
// one answers with a 503 naming it; healed, everyone follows one coordinator again and serves.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BIN } from '../helpers/process.ts';
import { createNetwork, type TestNetwork } from '../helpers/netns.ts';
import { STORIES, STORIES_GREEDY, TEST_PYTHON, tempDir, waitFor } from '../helpers/mesh.ts';

const PORT = 50051;
const API = 8100;
// The peer component at debug level: its `coordinator` lines are what a failure message shows.
const ENV = { ...process.env, MLX_MESH_HEARTBEAT_MS: '250', MLX_MESH_SETTLE_MS: '500', MLX_MESH_LOG: 'warn,peer' };

interface View {
  term: number;
  coordinator: string | null;
  cluster_status: string;
  self: { id: string };
  peers: Array<{ id: string; state: string }>;
}

async function view(address: string): Promise<View | null> {
  try {
    const res = await fetch(`http://${address}:${API}/cluster`, { signal: AbortSignal.timeout(3000) });
    return (await res.json()) as View;
  } catch {
    return null;
  }
}

async function startCluster(net: TestNetwork) {
  const [a, b, c] = net.namespaces;
  const logs: string[] = [];
  for (const [i, ns] of net.namespaces.entries()) {
    const args = [BIN, 'join', '--no-mdns', '--host', ns.address, '--port', String(PORT), '--api-host', ns.address, '--api-port', String(API), '--data-dir', tempDir(), '--name', 'abc'[i], '--model', STORIES, '--python', TEST_PYTHON, '--insecure-api'];
    // Each peer is told of the others, so links come back by themselves after a cut.
    for (const other of net.namespaces) if (other !== ns) args.push('--peer', `${other.address}:${PORT}`);
    const child = net.run(ns.name, process.execPath, args, { env: ENV, stdio: ['ignore', 'ignore', 'pipe'] });
    child.on('error', () => {});
    child.stderr!.on('data', (d: Buffer) => {
      for (const line of d.toString().split('\n')) if (/coordinator|cannot reach/.test(line)) logs.push(line);
    });
    // Start in order, so ages are a < b < c.
    await waitFor(() => view(ns.address), 60_000, `peer ${'abc'[i]} up`);
  }
  const addrs = [a, b, c].map((x) => x.address);
  const all = async () => Promise.all(addrs.map(view));
  await waitFor(async () => {
    const vs = await all();
    return vs.every((v) => v && v.peers.length === 2 && v.coordinator && v.coordinator === vs[0]!.coordinator);
  }, 60_000, 'three linked peers agreeing');
  return { all, a, b, c, logs };
}

const terms = (vs: Array<View | null>) => vs.map((v) => v && `${v.self.id.slice(0, 8)}:${v.term}/${v.coordinator?.slice(0, 8) ?? '-'}`).join(' ');

/** A greedy completion through the peer at `address`: its status and OpenAI-shaped body, or a timeout. */
async function complete(address: string): Promise<{ status: number; body: any }> {
  const res = await fetch(`http://${address}:${API}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: 'Once upon a time', max_tokens: 60, temperature: 0 }),
    signal: AbortSignal.timeout(60_000), // far beyond a 60-token answer of this model: a hang, not a slow answer
  });
  return { status: res.status, body: await res.json() };
}

/** Waits until the peer at `address` serves the golden text (503 while the plan loads). */
async function serves(address: string, what: string): Promise<void> {
  const r = (await waitFor(async () => {
    const x = await complete(address);
    return x.status === 503 ? null : x;
  }, 60_000, what))!;
  assert.is(r.status, 200, `${what}: ${JSON.stringify(r.body)}`);
  assert.is(r.body.choices[0].text, STORIES_GREEDY, what);
}

/** Waits until no peer's term or coordinator has moved for `quietMs`; returns the views then. */
async function settled(all: () => Promise<Array<View | null>>, quietMs: number, timeoutMs: number) {
  const key = (vs: Array<View | null>) => JSON.stringify(vs.map((v) => v && [v.term, v.coordinator]));
  let last = key(await all());
  let since = Date.now();
  const end = Date.now() + timeoutMs;
  for (;;) {
    await new Promise((r) => setTimeout(r, 200));
    const vs = await all();
    const k = key(vs);
    if (k !== last) (last = k), (since = Date.now());
    else if (Date.now() - since >= quietMs) return vs;
    if (Date.now() > end) throw new Error(`terms still moving after ${timeoutMs} ms: ${k}`);
  }
}

test('C cut off (link down) and restored: A and B keep their coordinator; one coordinator after, at most one new term', async () => {
  const net = await createNetwork(3);
  try {
    const { all, a, b, c, logs } = await startCluster(net);
    const before = await settled(all, 2000, 30_000);
    const term0 = Math.max(...before.map((v) => v!.term));
    const leader = before[0]!.coordinator;
    net.cut(c.name);
    const ab = async () => Promise.all([view(a.address), view(b.address)]); // c cannot answer while cut
    await waitFor(async () => (await ab()).every((v) => v?.peers.length === 1), 20_000, 'c gone from a and b');
    const during = await settled(ab, 3000, 30_000);
    assert.ok(during.every((v) => v!.coordinator === leader), `a and b carry on with ${leader}: ${terms(during)}\n${logs.join('\n')}`);
    net.restore(c.name);
    const t0 = Date.now();
    const healed = await waitFor(async () => {
      const vs = await all();
      return vs.every((x) => x && x.peers.length === 2 && x.coordinator && x.coordinator === vs[0]!.coordinator) ? vs : null;
    }, 30_000, 'one coordinator after the heal');
    const took = Date.now() - t0;
    const after = await settled(all, 3000, 30_000);
    const why = `${terms(before)} → ${terms(after)} (one coordinator ${took} ms after the link came back)\n${logs.join('\n')}`;
    assert.ok(after.every((v) => v!.coordinator === healed![0]!.coordinator), why);
    assert.ok(Math.max(...after.map((v) => v!.term)) <= term0 + 1, `at most one new term: ${why}`);
    assert.is(after[0]!.coordinator, leader, `the connected side's coordinator stays: ${why}`);
    console.log(`  heal: one coordinator after ${took} ms; ${terms(before)} → ${terms(after)}`);
  } finally {
    await net.teardown();
  }
});

test('A–C cut, A–B and B–C up: terms stop moving, one coordinator, it keeps serving; the peer that cannot reach it is degraded and says so', async () => {
  const net = await createNetwork(3);
  try {
    const { all, a, b, c } = await startCluster(net);
    const before = await all();
    net.ip(a.name, 'route', 'add', 'blackhole', `${c.address}/32`);
    net.ip(c.name, 'route', 'add', 'blackhole', `${a.address}/32`);
    // a and c lose their link to each other (missed heartbeats); the terms must then settle.
    await waitFor(async () => (await view(a.address))?.peers.length === 1 && (await view(c.address))?.peers.length === 1, 20_000, 'the a–c link gone');
    const vs = await settled(all, 5000, 30_000);
    const coordinators = new Set(vs.map((v) => v!.coordinator).filter(Boolean));
    assert.is(coordinators.size, 1, JSON.stringify(vs.map((v) => [v!.self.id, v!.coordinator, v!.term])));
    const leader = [...coordinators][0];
    for (const v of vs) {
      assert.ok(v!.coordinator === leader || v!.cluster_status === 'degraded', `${v!.self.id}: ${v!.coordinator} ${v!.cluster_status}`);
    }
    assert.is(vs[1]!.coordinator, leader, 'b, linked to both, follows the coordinator');
    assert.ok(Math.max(...vs.map((v) => v!.term)) <= Math.max(...before.map((v) => v!.term)) + 1, 'at most one new term');
    // It keeps serving: through the peers that follow the coordinator (on a plan without the degraded
    // one), while the degraded peer answers at once with an OpenAI-shaped error naming the coordinator.
    const peers = [a, b, c];
    const degraded = peers.filter((_, i) => vs[i]!.coordinator !== leader);
    for (const x of peers.filter((y) => !degraded.includes(y))) await serves(x.address, `a request to ${x.name}`);
    for (const x of degraded) {
      const t0 = Date.now();
      const r = await complete(x.address);
      console.log(`  A–C cut: the degraded peer answered ${r.status} in ${Date.now() - t0} ms`);
      assert.is(r.status, 503, JSON.stringify(r.body));
      assert.is(r.body.error.code, 'cluster_not_ready');
      assert.match(r.body.error.message, `no link to the coordinator`);
      assert.match(r.body.error.message, leader!);
    }
    // Healed: everyone follows one coordinator again.
    net.ip(a.name, 'route', 'del', 'blackhole', `${c.address}/32`);
    net.ip(c.name, 'route', 'del', 'blackhole', `${a.address}/32`);
    await waitFor(async () => {
      const v = await all();
      return v.every((x) => x && x.peers.length === 2 && x.coordinator && x.coordinator === v[0]!.coordinator);
    }, 30_000, 'one coordinator after the heal');
    for (const x of degraded) await serves(x.address, `a request to ${x.name} after the heal`);
  } finally {
    await net.teardown();
  }
});

test.run();
