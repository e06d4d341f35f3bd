import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parsePeerAddress, StaticDiscovery } from '../../discovery/static.ts';
import type { DiscoveredPeer } from '../../discovery/discovery.ts';
import { isMeshError } from '../../core/errors.ts';

const DEFAULT = 50051;

function rejects(value: string, pattern: RegExp): void {
  try {
    parsePeerAddress(value, DEFAULT);
  } catch (err) {
    assert.ok(isMeshError(err, 'BAD_ARGUMENT'), `${value}: ${String(err)}`);
    assert.match((err as Error).message, pattern);
    assert.match((err as Error).message, /expected host, host:port or \[ipv6\]:port/);
    return;
  }
  assert.unreachable(`"${value}" was accepted`);
}

test('accepts host, host:port, IPv4 and bracketed IPv6', () => {
  assert.equal(parsePeerAddress('mac-studio.local', DEFAULT), { host: 'mac-studio.local', port: DEFAULT });
  assert.equal(parsePeerAddress('mac-studio:6000', DEFAULT), { host: 'mac-studio', port: 6000 });
  assert.equal(parsePeerAddress('192.168.1.20:50052', DEFAULT), { host: '192.168.1.20', port: 50052 });
  assert.equal(parsePeerAddress('10.0.0.7', 7000), { host: '10.0.0.7', port: 7000 });
  assert.equal(parsePeerAddress('[::1]:50060', DEFAULT), { host: '::1', port: 50060 });
  assert.equal(parsePeerAddress('[fe80::1%en0]', DEFAULT), { host: 'fe80::1%en0', port: DEFAULT });
  assert.equal(parsePeerAddress('  host-1:1  ', DEFAULT), { host: 'host-1', port: 1 });
  assert.equal(parsePeerAddress('h:65535', DEFAULT).port, 65535);
});

test('rejects bad values with the reason in the message', () => {
  rejects('', /empty address/);
  rejects('ws://host:50051', /leave out the scheme/);
  rejects('host:', /port "" is not a number/);
  rejects('host:abc', /port "abc" is not a number/);
  rejects('host:0', /outside 1-65535/);
  rejects('host:70000', /outside 1-65535/);
  rejects(':50051', /missing host/);
  rejects('::1', /brackets: \[::1\]:50051/);
  rejects('fe80::1:5005', /brackets: \[fe80::1:5005\]/);
  rejects('fe80::1:50051', /too many colons \(IPv6 addresses go in brackets\)/);
  rejects('a:b:c', /too many colons/);
  rejects('[::1', /unbalanced brackets/);
  rejects('[not-v6]:1', /is not an IPv6 address/);
  rejects('[::1]:x', /port "x" is not a number/);
  rejects('300.1.1.1:1', /not a valid host name or IPv4 address/);
  rejects('-bad-:1', /not a valid host name/);
  rejects('host name:1', /not a host name or address/);
  rejects('user@host', /not a host name or address/);
});

test('constructor validates every --peer before anything starts', () => {
  assert.throws(() => new StaticDiscovery({ peers: ['ok:1', 'bad:port'], defaultPort: DEFAULT }), /bad:port/);
});

test('emits each distinct peer once per start, with no id', async () => {
  const d = new StaticDiscovery({ peers: ['a:1', 'b', 'A:1', '[::1]:2', 'a:1'], defaultPort: DEFAULT });
  const seen: DiscoveredPeer[] = [];
  d.on('peer', (p) => seen.push(p));
  await d.start();
  await d.start(); // idempotent: no second round
  assert.equal(seen, [
    { host: 'a', port: 1, source: 'static' },
    { host: 'b', port: DEFAULT, source: 'static' },
    { host: '::1', port: 2, source: 'static' },
  ]);
  await d.stop();
  await d.stop();
  await d.start(); // a restart announces them again
  assert.is(seen.length, 6);
  await d.stop();
});

test('an empty list starts and stops quietly', async () => {
  const d = new StaticDiscovery({ peers: [], defaultPort: DEFAULT });
  let events = 0;
  d.on('peer', () => events++);
  await d.start();
  await d.stop();
  assert.is(events, 0);
});

test.run();
