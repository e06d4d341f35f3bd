// A port in use for a moment (a loopback dial that connected to itself, an ephemeral port) does not stop
// a peer from starting; a port another process holds is still a clear PORT_IN_USE. Real sockets.
import net from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ApiServer } from '../../src/api/server.ts';
import { isMeshError } from '../../core/errors.ts';
import { dial } from '../../transport/dialer.ts';
import { LinkServer } from '../../transport/server.ts';
import { endpoint } from '../helpers/links.ts';

/** A plain TCP server holding a free loopback port, and a way to let it go. */
async function holdPort(): Promise<{ port: number; release: () => Promise<void> }> {
  const blocker = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => blocker.once('listening', r));
  const port = (blocker.address() as net.AddressInfo).port;
  return { port, release: () => new Promise((r) => blocker.close(() => r())) };
}

test('a peer port held for a moment is bound once it frees, and the peer then links', async () => {
  const held = await holdPort();
  const server = new LinkServer({ ...endpoint('server'), host: '127.0.0.1', port: held.port, bindRetryMs: 20_000 });
  server.on('link', (l) => l.start());
  const started = server.start();
  setTimeout(() => void held.release(), 300);
  try {
    await started;
    assert.is(server.port, held.port);
    const link = await dial('127.0.0.1', held.port, endpoint('client'));
    assert.is(link.remote.id, 'server');
    link.terminate();
  } finally {
    await server.stop();
    await held.release().catch(() => {});
  }
});

test('a peer port another process keeps is PORT_IN_USE after the retry window, and nothing is left listening', async () => {
  const held = await holdPort();
  const server = new LinkServer({ ...endpoint('server'), host: '127.0.0.1', port: held.port, bindRetryMs: 400 });
  try {
    const err = await server.start().then(() => null, (e) => e);
    assert.ok(isMeshError(err) && err.code === 'PORT_IN_USE', String(err));
    assert.match(err.message, new RegExp(`peer port ${held.port} is already in use`));
  } finally {
    await server.stop();
    await held.release();
  }
  // Nothing of the failed attempts holds the port: it can be listened on again.
  const again = net.createServer().listen(held.port, '127.0.0.1');
  await new Promise((resolve, reject) => again.once('listening', resolve).once('error', reject));
  await new Promise((r) => again.close(() => r(undefined)));
});

test('an API port held for a moment is bound once it frees', async () => {
  const held = await holdPort();
  const source = {} as ConstructorParameters<typeof ApiServer>[0]['source'];
  const api = new ApiServer({ host: '127.0.0.1', port: held.port, source, bindRetryMs: 20_000 });
  const started = api.start();
  setTimeout(() => void held.release(), 300);
  try {
    await started;
    assert.is(api.port, held.port);
    const res = await fetch(`http://127.0.0.1:${held.port}/no-such-route`);
    assert.is(res.status, 404);
    await res.body?.cancel();
  } finally {
    await api.stop();
    await held.release().catch(() => {});
  }
});

test.run();
