// Several real peers in one process on 127.0.0.1: they link, gossip, elect and recover.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { byAge } from '../../peer/election.ts';
import type { MeshNode } from '../../src/node.ts';
import { createTestMesh, getJson, startTestNode, tempDir, waitFor } from '../helpers/mesh.ts';

/** Who the rules say should coordinate: the longest-running peer, then the smallest id. */
const oldest = (nodes: MeshNode[]) => [...nodes].sort((a, b) => byAge(a.peer, b.peer))[0].peer.id;

const gpuInfo = (node: { api: { url: string } }) => getJson(`${node.api.url}/distributed/gpu-info`);

test('peers that only know the first one form a full mesh with one coordinator', async () => {
  const mesh = await createTestMesh(4);
  try {
    await waitFor(async () => {
      const views = await Promise.all(mesh.nodes.map(gpuInfo));
      return views.every((v) => v.world_size === 4 && v.coordinator === oldest(mesh.nodes) && v.cluster_status === 'healthy');
    }, 10_000, 'a 4-peer cluster');
    for (const n of mesh.nodes) assert.is(n.peer.membership.all().length, 3, 'a link to each other peer');
    const v = await gpuInfo(mesh.nodes[2]);
    assert.equal(v.devices.map((d: { rank: number }) => d.rank), [0, 1, 2, 3]);
    assert.is(v.devices[0].role, 'coordinator');
    assert.is(v.devices[0].device_id, v.coordinator);
    assert.ok(v.devices.slice(1).every((d: { role: string }) => d.role === 'worker'));
    assert.is(v.term, 1);
  } finally {
    await mesh.stop();
  }
});

test('/metrics speaks Prometheus text: world size, term, role, status and link RTT', async () => {
  const mesh = await createTestMesh(2);
  try {
    await waitFor(async () => (await gpuInfo(mesh.nodes[1])).cluster_status === 'healthy');
    await waitFor(() => mesh.nodes[1].peer.membership.all()[0]?.rttMs !== null, 5000, 'an RTT sample');
    const text = await (await fetch(`${mesh.nodes[1].api.url}/metrics`)).text();
    assert.match(text, /^# HELP mlx_mesh_world_size /m);
    assert.match(text, /^mlx_mesh_world_size 2$/m);
    assert.match(text, /^mlx_mesh_term 1$/m);
    assert.match(text, /^mlx_mesh_is_coordinator 0$/m);
    assert.match(text, /^mlx_mesh_cluster_status\{status="healthy"\} 1$/m);
    assert.match(text, new RegExp(`^mlx_mesh_link_rtt_seconds\\{peer="${mesh.nodes[0].peer.id}"\\} [0-9.e-]+$`, 'm'));
  } finally {
    await mesh.stop();
  }
});

test('two peers dialling each other at once keep exactly one link, the same on both sides', async () => {
  const { default: net } = await import('node:net');
  // Reserve two ports so each can name the other before either starts.
  const ports = await Promise.all(
    [0, 1].map(
      () =>
        new Promise<number>((resolve) => {
          const s = net.createServer().listen(0, '127.0.0.1', () => {
            const p = (s.address() as { port: number }).port;
            s.close(() => resolve(p));
          });
        }),
    ),
  );
  const [a, b] = await Promise.all([
    startTestNode({ name: 'a', port: ports[0], peers: [`127.0.0.1:${ports[1]}`] }),
    startTestNode({ name: 'b', port: ports[1], peers: [`127.0.0.1:${ports[0]}`] }),
  ]);
  try {
    // Both dials may succeed at first; the tie-break must leave exactly one open socket, seen from both ends.
    const oneSocket = () => {
      const la = a.peer.membership.all();
      const lb = b.peer.membership.all();
      return la.length === 1 && lb.length === 1 && la[0].isOpen && lb[0].isOpen && la[0].direction !== lb[0].direction;
    };
    await waitFor(oneSocket, 10_000, 'one shared socket');
    // …and it stays that way: a duplicate that survived would close this one within a few heartbeats.
    const first = a.peer.membership.all()[0];
    await waitFor(async () => (await gpuInfo(a)).cluster_status !== 'forming', 10_000, 'an elected coordinator');
    assert.ok(oneSocket() && a.peer.membership.all()[0] === first, 'the same link is still the only one');
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});

test('a peer that leaves is gone from every view at once; the coordinator is replaced with a higher term', async () => {
  const mesh = await createTestMesh(3);
  try {
    const first = mesh.nodes.find((n) => n.peer.id === oldest(mesh.nodes))!;
    const [second, third] = mesh.nodes.filter((n) => n !== first).sort((a, b) => byAge(a.peer, b.peer));
    await waitFor(async () => (await gpuInfo(third)).world_size === 3 && third.peer.leadership.coordinator === first.peer.id);
    const before = third.peer.leadership.term;
    const t0 = Date.now();
    await first.stop();
    const v = await waitFor(async () => {
      const [x, y] = await Promise.all([gpuInfo(second), gpuInfo(third)]);
      return x.coordinator === second.peer.id && y.coordinator === second.peer.id && x.world_size === 2 ? y : null;
    }, 5000, 'a new coordinator');
    assert.ok(Date.now() - t0 < 3000, `agreed in ${Date.now() - t0} ms`);
    assert.ok(v.term > before, 'a higher term');
    assert.is((await getJson(`${second.api.url}/health`)).role, 'coordinator');
    // The ids the request path checks stages against are the live view's, the one that left gone.
    const ids = [...second.peer.liveIds()].sort();
    assert.equal(ids, second.peer.live().map((p) => p.id).sort());
    assert.ok(!ids.includes(first.peer.id) && ids.includes(third.peer.id), 'the peer that left is not live');
  } finally {
    await mesh.stop();
  }
});

test('a second process with the same peer id is reported, not merged', async () => {
  const dataDir = tempDir();
  const mesh = await createTestMesh(1, { dataDir });
  try {
    const twin = await mesh.add({ name: 'twin' });
    const cluster = await waitFor(async () => {
      const c = await getJson(`${mesh.nodes[0].api.url}/cluster`);
      return c.refused.some((r: { code: string }) => r.code === 'DUPLICATE_ID') ? c : null;
    }, 5000, 'a duplicate-id report');
    assert.is(cluster.peers.length, 0, 'the twin is not a member');
    assert.match(cluster.refused[0].message, /--data-dir/);
    assert.is(twin.peer.membership.all().length, 0);
  } finally {
    await mesh.stop();
  }
});

test('with --secret, only peers that know it join; the others are refused and reported', async () => {
  const mesh = await createTestMesh(2, { secret: 'open sesame' });
  try {
    await waitFor(async () => (await gpuInfo(mesh.nodes[1])).world_size === 2, 5000, 'the two with the secret');
    const outsider = await mesh.add({ name: 'outsider', secret: undefined });
    const guesser = await mesh.add({ name: 'guesser', secret: 'open barley' });
    const c = await waitFor(async () => {
      const v = await getJson(`${mesh.nodes[0].api.url}/cluster`);
      return v.refused.filter((r: { code: string }) => r.code === 'AUTH_FAILED').length >= 2 ? v : null;
    }, 5000, 'two refusals');
    assert.is(c.peers.length, 1);
    assert.is(outsider.peer.membership.all().length, 0);
    assert.is(guesser.peer.membership.all().length, 0);
  } finally {
    await mesh.stop();
  }
});

test('peers of another cluster stay apart', async () => {
  const mesh = await createTestMesh(1);
  try {
    const other = await mesh.add({ cluster: 'other' });
    // The refusal is the evidence that the two met: after it, neither may count the other.
    await waitFor(async () => {
      const c = await getJson(`${other.api.url}/cluster`);
      return c.refused.some((r: { code: string }) => r.code === 'CLUSTER_MISMATCH');
    }, 10_000, 'a CLUSTER_MISMATCH refusal');
    assert.is((await gpuInfo(mesh.nodes[0])).world_size, 1);
    assert.is((await gpuInfo(other)).world_size, 1);
  } finally {
    await mesh.stop();
  }
});

test.run();
