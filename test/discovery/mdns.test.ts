// Real mDNS between processes, each in its own network namespace on a private bridge (see
// test/helpers/netns.ts): nothing is sent on the host's interfaces. Needs root and iproute2.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createNetwork, type TestNetwork } from '../helpers/netns.ts';
import { startMdnsNode, type MdnsNode } from '../helpers/mdns-proc.ts';

let net: TestNetwork;
const nodes: MdnsNode[] = [];
const spawnNode = (ns: number, args: string[]) => {
  const node = startMdnsNode(net, net.namespaces[ns].name, args);
  nodes.push(node);
  return node;
};

test.before(async () => {
  net = await createNetwork(3);
});

// A failed test must not leave its processes answering in the next one.
test.after.each(async () => {
  await Promise.all(nodes.splice(0).map((n) => n.kill()));
});

test.after(async () => {
  await net?.teardown();
});

test('peers of one cluster see each other; another cluster is only ignored; a goodbye is a down', async () => {
  const [A, B] = net.namespaces;
  // a names its NIC explicitly (the multi-NIC option); b and c use the default-route interface.
  const a = spawnNode(0, ['--id', 'a', '--cluster', 'lab', '--port', '50051', '--interface', A.address]);
  const b = spawnNode(1, ['--id', 'b', '--cluster', 'lab', '--port', '50052']);
  const c = spawnNode(2, ['--id', 'c', '--cluster', 'other', '--port', '50053']);

  const bAtA = await a.waitFor((e) => e.event === 'peer' && e.peer.id === 'b');
  assert.equal(bAtA.peer, { id: 'b', cluster: 'lab', protocol: 1, host: B.address, port: 50052, source: 'mdns' });
  const aAtB = await b.waitFor((e) => e.event === 'peer' && e.peer.id === 'a');
  assert.equal(aAtB.peer, { id: 'a', cluster: 'lab', protocol: 1, host: A.address, port: 50051, source: 'mdns' });

  for (const [node, id] of [[a, 'c'], [b, 'c'], [c, 'a'], [c, 'b']] as const) {
    const ignored = await node.waitFor((e) => e.event === 'ignored' && e.peer.id === id);
    assert.is(ignored.reason, 'other-cluster');
    assert.is(ignored.peer.cluster, id === 'c' ? 'other' : 'lab');
  }
  assert.not.ok(a.events.some((e) => e.event === 'peer' && e.peer.id === 'c'), 'a reported c as a peer');
  assert.not.ok(b.events.some((e) => e.event === 'peer' && e.peer.id === 'c'), 'b reported c as a peer');
  assert.not.ok(c.events.some((e) => e.event === 'peer'), 'c reported a peer of another cluster');
  // Announcements and re-queries repeat; a peer is still reported once while nothing changes.
  assert.is(a.events.filter((e) => e.event === 'peer').length, 1);

  await b.stop(); // resolves after b printed 'stopped', i.e. after its goodbye was sent
  assert.equal(await a.waitFor((e) => e.event === 'down'), { event: 'down', id: 'b' });
  await a.stop();
  // c had a and b only as ignored, so their goodbyes are not a 'down' there. To know c has read those
  // goodbyes, a peer of c's own cluster announces itself after them: once c reports it, c has processed
  // every earlier packet on the segment.
  const d = spawnNode(0, ['--id', 'd', '--cluster', 'other', '--port', '50054']);
  await c.waitFor((e) => e.event === 'peer' && e.peer.id === 'd');
  assert.not.ok(c.events.some((e) => e.event === 'down'), 'c reported a down for a peer it ignored');
  await Promise.all([c.stop(), d.stop()]);
  for (const n of [a, b, c, d]) assert.is(n.exitCode, 0, n.stderr());
});

test('a peer answering from a new address is reported again with that address', async () => {
  const [A] = net.namespaces;
  const a = spawnNode(0, ['--id', 'a', '--cluster', 'lab', '--port', '50051']);
  const b = spawnNode(1, ['--id', 'b', '--cluster', 'lab', '--port', '50052', '--query-interval', '500']);
  await b.waitFor((e) => e.event === 'peer' && e.peer.id === 'a' && e.peer.host === A.address);
  // Renumber a's NIC, as a DHCP change would; its SRV and TXT stay the same, only the source address moves.
  const moved = `${net.prefix}.77`;
  const renumber = (from: string, to: string) => {
    // Deleting a primary address also drops its secondaries, so delete first, then add.
    net.ip(A.name, 'addr', 'del', `${from}/25`, 'dev', 'eth0');
    net.ip(A.name, 'addr', 'add', `${to}/25`, 'dev', 'eth0');
    net.ip(A.name, 'route', 'replace', 'default', 'via', `${net.prefix}.126`);
    net.ip(A.name, 'route', 'replace', '224.0.0.0/4', 'dev', 'eth0');
  };
  // Renumber a's NIC, as a DHCP change would; its SRV and TXT stay the same, only the source address moves.
  renumber(A.address, moved);
  try {
    const again = await b.waitFor((e) => e.event === 'peer' && e.peer.host === moved);
    assert.equal(again.peer, { id: 'a', cluster: 'lab', protocol: 1, host: moved, port: 50051, source: 'mdns' });
    await Promise.all([a.stop(), b.stop()]);
  } finally {
    renumber(moved, A.address);
  }
});

test('a copied peer id is reported as duplicate-id on both machines', async () => {
  const x = spawnNode(0, ['--id', 'same', '--cluster', 'lab', '--port', '50051']);
  const copy = spawnNode(1, ['--id', 'same', '--cluster', 'lab', '--port', '50051']);
  for (const [node, other] of [[x, net.namespaces[1]], [copy, net.namespaces[0]]] as const) {
    const e = await node.waitFor((ev) => ev.event === 'ignored');
    assert.is(e.reason, 'duplicate-id');
    assert.is(e.peer.host, other.address);
  }
  await Promise.all([x.stop(), copy.stop()]);
  assert.not.ok([...x.events, ...copy.events].some((e) => e.event === 'peer'));
});

test('a busy mDNS port fails start() with EADDRINUSE', async () => {
  const n = spawnNode(2, ['--id', 'busy', '--occupy']);
  const e = await n.waitFor((ev) => ev.event === 'start-failed' || ev.event === 'started');
  assert.equal(e.event, 'start-failed');
  assert.is(e.code, 'EADDRINUSE');
  await n.exited;
  assert.is(n.exitCode, 1);
});

test.run();
