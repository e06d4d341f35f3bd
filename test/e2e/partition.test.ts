// Elections under real network faults: three peer processes in network namespaces on one bridge (root).
// A–C cut while A–B and B–C stay up (a blackhole route each way): terms stop moving, one coordinator,
// the peer that cannot reach it says so (degraded); healed, everyone follows one coordinator again.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BIN } from '../helpers/process.ts';
import { createNetwork, type TestNetwork } from '../helpers/netns.ts';
import { TEST_PYTHON, tempDir, waitFor } from '../helpers/mesh.ts';

const PORT = 50051;
const API = 8100;
const ENV = { ...process.env, MLX_MESH_HEARTBEAT_MS: '250', MLX_MESH_SETTLE_MS: '500', MLX_MESH_LOG: 'warn' };

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
  for (const [i, ns] of net.namespaces.entries()) {
    const args = [BIN, 'join', '--no-mdns', '--host', ns.address, '--port', String(PORT), '--api-host', ns.address, '--api-port', String(API), '--data-dir', tempDir(), '--name', 'abc'[i], '--python', TEST_PYTHON, '--insecure-api'];
    // Each peer is told of the others, so links come back by themselves after a cut.
    for (const other of net.namespaces) if (other !== ns) args.push('--peer', `${other.address}:${PORT}`);
    const child = net.run(ns.name, process.execPath, args, { env: ENV, stdio: ['ignore', 'ignore', 'ignore'] });
    child.on('error', () => {});
    // Start in order, so ages are a < b < c.
    await waitFor(() => view(ns.address), 60_000, `peer ${'abc'[i]} up`);
  }
  const addrs = [a, b, c].map((x) => x.address);
  const all = async () => Promise.all(addrs.map(view));
  await waitFor(async () => {
    const vs = await all();
    return vs.every((v) => v && v.peers.length === 2 && v.coordinator && v.coordinator === vs[0]!.coordinator);
  }, 60_000, 'three linked peers agreeing');
  return { all, a, b, c };
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

test('A–C cut, A–B and B–C up: terms stop moving, one coordinator, the peer that cannot reach it is degraded', async () => {
  const net = await createNetwork(3);
  try {
    const { all, a, c } = await startCluster(net);
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
    // Healed: everyone follows one coordinator again.
    net.ip(a.name, 'route', 'del', 'blackhole', `${c.address}/32`);
    net.ip(c.name, 'route', 'del', 'blackhole', `${a.address}/32`);
    await waitFor(async () => {
      const v = await all();
      return v.every((x) => x && x.peers.length === 2 && x.coordinator && x.coordinator === v[0]!.coordinator);
    }, 30_000, 'one coordinator after the heal');
  } finally {
    await net.teardown();
  }
});

test.run();
