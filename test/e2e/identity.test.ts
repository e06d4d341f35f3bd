// Identity is a claim to prove: a second process with the id of a live peer (a copied data dir) is
// refused with DUPLICATE_ID on both sides and listed in /cluster, and the live link stays; a peer that
// restarted while its old link is dying is accepted; with a secret only a prover gets that far.
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { MeshNode } from '../../src/node.ts';
import { getJson, startTestNode, tempDir, waitFor } from '../helpers/mesh.ts';
import { freePort, spawnCli } from '../helpers/process.ts';

const nodes: MeshNode[] = [];
async function node(opts: Parameters<typeof startTestNode>[0]): Promise<MeshNode> {
  const n = await startTestNode(opts);
  nodes.push(n);
  return n;
}

test.after.each(async () => {
  await Promise.all(nodes.splice(0).map((n) => n.stop()));
});

/** A copy of a data dir: the same peer-id file, as a cloned machine has. */
function cloneDataDir(dir: string): string {
  const copy = tempDir();
  fs.copyFileSync(path.join(dir, 'peer-id'), path.join(copy, 'peer-id'));
  return copy;
}

test('a second process with a live peer\'s id is refused on both sides; the live link and the coordinator stay', async () => {
  const a = await node({ name: 'a' });
  const b = await node({ name: 'b', peers: [`127.0.0.1:${a.peer.port}`] });
  await waitFor(() => a.peer.membership.has(b.peer.id) && a.peer.leadership.coordinator, 20_000, 'a and b linked');
  const before = { ...a.peer.leadership };
  const clone = await node({ name: 'clone', dataDir: cloneDataDir(b.dataDir), peers: [`127.0.0.1:${a.peer.port}`] });
  assert.is(clone.peer.id, b.peer.id);

  const view = await waitFor(async () => {
    const v = await getJson(`${a.api.url}/cluster`);
    return v.refused.some((r: { code: string; from: string }) => r.code === 'DUPLICATE_ID' && r.from.includes(b.peer.id)) ? v : null;
  }, 20_000, 'DUPLICATE_ID listed in a\'s /cluster');
  assert.match(JSON.stringify(view.refused), /data-dir/);
  await waitFor(() => clone.peer.refusals.some((r) => r.code === 'DUPLICATE_ID'), 20_000, 'the clone told why');

  // Redials of the clone keep being refused while b lives; b's link is the one that stays.
  await waitFor(() => (a.peer.refusals.find((r) => r.code === 'DUPLICATE_ID')?.count ?? 0) >= 2, 20_000, 'a second refusal');
  assert.is(a.peer.membership.get(b.peer.id)?.remoteInstance, b.peer.instance);
  assert.ok(b.peer.membership.has(a.peer.id));
  assert.equal(a.peer.leadership, before, 'no new election');
  assert.equal(b.peer.leadership, before);
  // The clone may hold a link for the instant before a's refusal reaches it, never longer.
  await waitFor(() => clone.peer.membership.all().length === 0, 20_000, 'the clone without links');
});

test('with a secret, a clone that cannot prove it is refused before its id is even considered', async () => {
  const a = await node({ name: 'a', secret: 's3cret' });
  const b = await node({ name: 'b', secret: 's3cret', peers: [`127.0.0.1:${a.peer.port}`] });
  await waitFor(() => a.peer.membership.has(b.peer.id), 20_000, 'a and b linked');
  const clone = await node({ name: 'clone', secret: 'guess', dataDir: cloneDataDir(b.dataDir), peers: [`127.0.0.1:${a.peer.port}`] });
  await waitFor(() => a.peer.refusals.some((r) => r.code === 'AUTH_FAILED'), 20_000, 'the refusal');
  assert.is(a.peer.membership.get(b.peer.id)?.remoteInstance, b.peer.instance);
  assert.is(clone.peer.membership.all().length, 0);
});

test('a peer restarted while its old link is dying (frozen process) replaces that link', async () => {
  const env = { MLX_MESH_HEARTBEAT_MS: '250', MLX_MESH_SETTLE_MS: '500', MLX_MESH_LOG: 'warn' };
  const start = async (name: string, dataDir: string, peers: number[]) => {
    const port = await freePort();
    const api = await freePort();
    const args = ['join', '--no-mdns', '--host', '127.0.0.1', '--port', String(port), '--api-port', String(api), '--data-dir', dataDir, '--name', name];
    for (const p of peers) args.push('--peer', `127.0.0.1:${p}`);
    const p = spawnCli(args, env);
    await p.waitForOutput(/API http/, 60_000);
    return { p, port, api };
  };
  const bDir = tempDir();
  const a = await start('a', tempDir(), []);
  const b = await start('b', bDir, [a.port]);
  let again: Awaited<ReturnType<typeof start>> | undefined;
  try {
    const cluster = () => getJson(`http://127.0.0.1:${a.api}/cluster`);
    await waitFor(async () => (await cluster()).peers.length === 1, 20_000, 'a and b linked');
    const bId = (await getJson(`http://127.0.0.1:${b.api}/health`)).peer_id;
    // No FIN, no RST: a's link to b only goes silent. The restart with the same data dir is accepted.
    b.p.child.kill('SIGSTOP');
    again = await start('b', bDir, [a.port]);
    const view = await waitFor(async () => {
      const v = await cluster();
      const p = v.peers.find((x: { id: string; state: string }) => x.id === bId && x.state === 'connected');
      return p && p.connectedFor !== undefined && (await getJson(`http://127.0.0.1:${again!.api}/cluster`)).peers.length === 1 ? v : null;
    }, 30_000, 'the restarted b linked');
    assert.is(view.peers.length, 1);
  } finally {
    b.p.child.kill('SIGKILL');
    await Promise.all([a.p.kill(), again?.p.kill(), b.p.exited]);
  }
});

test.run();
