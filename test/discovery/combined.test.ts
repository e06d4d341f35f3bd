// One Discovery over several sources: events forwarded, start all-or-nothing, stop idempotent.
import { EventEmitter } from 'node:events';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CombinedDiscovery, createDiscovery } from '../../discovery/combined.ts';
import { MdnsDiscovery } from '../../discovery/mdns.ts';
import { StaticDiscovery } from '../../discovery/static.ts';
import type { Discovery } from '../../discovery/discovery.ts';

class FakeSource extends EventEmitter implements Discovery {
  starts = 0;
  stops = 0;
  constructor(private readonly failWith?: Error) {
    super();
  }
  async start() {
    this.starts++;
    if (this.failWith) throw this.failWith;
  }
  async stop() {
    this.stops++;
  }
}

test('forwards peer, down, ignored and error from every source', async () => {
  const a = new FakeSource();
  const b = new FakeSource();
  const d = new CombinedDiscovery([a, b]);
  const events: string[] = [];
  for (const e of ['peer', 'down', 'ignored', 'error']) d.on(e, (v) => events.push(`${e}:${JSON.stringify(v)}`));
  a.emit('peer', { host: 'h', port: 1, source: 'static' });
  b.emit('down', { id: 'x' });
  b.emit('ignored', { peer: { host: 'h', port: 2, source: 'mdns' }, reason: 'other-cluster' });
  a.emit('error', 'boom');
  assert.equal(events, [
    'peer:{"host":"h","port":1,"source":"static"}',
    'down:{"id":"x"}',
    'ignored:{"peer":{"host":"h","port":2,"source":"mdns"},"reason":"other-cluster"}',
    'error:"boom"',
  ]);
});

test('start and stop are idempotent', async () => {
  const a = new FakeSource();
  const d = new CombinedDiscovery([a]);
  await Promise.all([d.start(), d.start()]);
  assert.is(a.starts, 1);
  await Promise.all([d.stop(), d.stop()]);
  await d.stop();
  assert.is(a.stops, 1);
  await d.start();
  assert.is(a.starts, 2);
  await d.stop();
});

test('a source failing to start stops the others and rejects', async () => {
  const ok = new FakeSource();
  const failing = new FakeSource(Object.assign(new Error('bind failed'), { code: 'EADDRINUSE' }));
  const d = new CombinedDiscovery([ok, failing]);
  try {
    await d.start();
    assert.unreachable('start resolved');
  } catch (err) {
    assert.is((err as { code?: string }).code, 'EADDRINUSE');
  }
  assert.is(ok.stops, 1);
  assert.is(failing.stops, 1);
});

test('createDiscovery: --peer list plus mDNS, or --peer only with mdns: false', () => {
  const mdns = { id: 'x', port: 1, cluster: 'c', protocol: 1, serviceType: 'mlx-mesh' };
  const both = createDiscovery({ peers: ['a:1'], defaultPort: 50051, mdns });
  assert.equal(both.sources.map((s) => s.constructor), [StaticDiscovery, MdnsDiscovery]);
  const noMdns = createDiscovery({ peers: ['a:1'], defaultPort: 50051, mdns: false });
  assert.equal(noMdns.sources.map((s) => s.constructor), [StaticDiscovery]);
  assert.is(createDiscovery({ defaultPort: 50051, mdns: false }).sources.length, 0);
  assert.throws(() => createDiscovery({ peers: ['a:b:c:'], defaultPort: 50051, mdns: false }), /--peer "a:b:c:"/);
});

test.run();
