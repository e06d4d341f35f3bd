// The mDNS filtering rules, fed with records shaped like bonjour-service's browsed services (no sockets).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { classifyService, encodeTxt, pickHost, type BrowsedService } from '../../discovery/txt.ts';

const self = { id: 'me', cluster: 'lab', protocol: 1, port: 50051, instance: 'i-me' };

function seen(txt: Record<string, unknown>, extra: Partial<BrowsedService> = {}): BrowsedService {
  return { port: 50052, txt, addresses: ['192.168.1.7'], referer: { address: '192.168.1.7', family: 'IPv4' }, ...extra };
}
const other = { id: 'b', cluster: 'lab', proto: '1', port: '50052', inst: 'i-b' };

test('TXT carries id, cluster, protocol, port and the instance nonce as strings', () => {
  assert.equal(encodeTxt(self), { id: 'me', cluster: 'lab', proto: '1', port: '50051', inst: 'i-me' });
});

test('TXT carries the memory a peer offers (its --memory) when it is known', () => {
  assert.is(encodeTxt({ ...self, memory: 8e9 }).mem, '8000000000');
});

test('a peer of our cluster and protocol is a peer, addressed by the packet source', () => {
  const r = classifyService(seen(other, { addresses: ['10.9.9.9', '192.168.1.7'] }), self);
  assert.equal(r, {
    kind: 'peer',
    peer: { id: 'b', cluster: 'lab', protocol: 1, host: '192.168.1.7', port: 50052, source: 'mdns' },
  });
});

test('our own echo is self; our id from another instance is a duplicate id', () => {
  assert.equal(classifyService(seen({ ...other, id: 'me', inst: 'i-me' }), self), { kind: 'self' });
  assert.equal(classifyService(seen({ ...other, id: 'me', inst: undefined }), self), { kind: 'self' });
  const dup = classifyService(seen({ ...other, id: 'me', inst: 'i-copy' }), self);
  assert.is(dup.kind, 'ignored');
  assert.is(dup.kind === 'ignored' && dup.reason, 'duplicate-id');
});

test('another cluster or protocol version is ignored with the reason', () => {
  const cluster = classifyService(seen({ ...other, cluster: 'prod' }), self);
  assert.equal(cluster, {
    kind: 'ignored',
    reason: 'other-cluster',
    peer: { id: 'b', cluster: 'prod', protocol: 1, host: '192.168.1.7', port: 50052, source: 'mdns' },
  });
  const proto = classifyService(seen({ ...other, proto: '2' }), self);
  assert.is(proto.kind === 'ignored' && proto.reason, 'other-protocol');
  // Cluster is the deliberate setting, so it is the reason reported when both differ.
  const both = classifyService(seen({ ...other, proto: '2', cluster: 'x' }), self);
  assert.is(both.kind === 'ignored' && both.reason, 'other-cluster');
});

test('records missing id, cluster, protocol or any port are malformed', () => {
  for (const txt of [
    { ...other, id: undefined },
    { ...other, cluster: undefined },
    { ...other, proto: 'one' },
    {},
  ]) {
    const r = classifyService(seen(txt), self);
    assert.is(r.kind === 'ignored' && r.reason, 'malformed', JSON.stringify(txt));
  }
  const noPort = classifyService(seen({ ...other, port: undefined }, { port: undefined }), self);
  assert.is(noPort.kind === 'ignored' && noPort.reason, 'malformed');
});

test('TXT keys are case-insensitive and the TXT port stands in for a missing SRV port', () => {
  const r = classifyService(seen({ ID: 'b', Cluster: 'lab', PROTO: '1', port: '6000' }, { port: undefined }), self);
  assert.is(r.kind, 'peer');
  assert.is(r.kind === 'peer' && r.peer.port, 6000);
});

test('host: IPv4 packet source, else the first advertised IPv4 address', () => {
  assert.is(pickHost({ referer: { address: '10.0.0.2' }, addresses: ['10.0.0.3'] }), '10.0.0.2');
  assert.is(pickHost({ referer: { address: 'fe80::1' }, addresses: ['fe80::1', '10.0.0.3'] }), '10.0.0.3');
  assert.is(pickHost({ addresses: [] }), undefined);
});

test.run();
