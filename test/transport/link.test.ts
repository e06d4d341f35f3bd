// Real ws sockets on 127.0.0.1: handshake, refusals, bad frames, heartbeat, send window.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import WebSocket from 'ws';
import { decodeMessage, encodeMessage, encodeRaw } from '../../transport/codec.ts';
import { CloseCode } from '../../transport/close-codes.ts';
import { dial } from '../../transport/dialer.ts';
import { PROTOCOL_VERSION } from '../../core/defaults.ts';
import type { MeshError } from '../../core/errors.ts';
import type { LinkClose } from '../../transport/link.ts';
import type { Message } from '../../transport/messages.ts';
import net from 'node:net';
import { Wire as WireClass, type Wire } from '../../transport/wire.ts';
import { endpoint, info, withServer } from '../helpers/links.ts';

const until = async (f: () => boolean, ms = 3000) => {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
};

test('handshake exchanges peer info and messages flow both ways', async () => {
  await withServer({}, async (_s, port, inbound) => {
    const link = await dial('127.0.0.1', port, endpoint('client'));
    const got: Message[] = [];
    link.on('message', (m) => got.push(m));
    link.start();
    assert.is(link.remote.id, 'server');
    await until(() => inbound.length === 1);
    assert.is(inbound[0].remote.id, 'client');
    assert.is(inbound[0].remoteHost, '127.0.0.1');
    await inbound[0].send({ type: 'coordinator', term: 1, id: 'server' });
    await until(() => got.length === 1);
    assert.equal(got[0], { type: 'coordinator', term: 1, id: 'server' });
    link.close();
  });
});

test('post() delivers like send(); on a closed link it neither throws nor leaves a rejection behind', async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (err: unknown) => unhandled.push(err);
  process.on('unhandledRejection', onUnhandled);
  try {
    await withServer({}, async (_s, port, inbound) => {
      const link = await dial('127.0.0.1', port, endpoint('client'));
      link.start();
      await until(() => inbound.length === 1);
      const got: Message[] = [];
      inbound[0].on('message', (m) => got.push(m));
      for (let term = 1; term <= 3; term++) link.post({ type: 'coordinator', term, id: 'client' });
      await until(() => got.length === 3);
      assert.equal(got.map((m) => (m as { term: number }).term), [1, 2, 3]);
      link.close();
      link.post({ type: 'coordinator', term: 4, id: 'client' });
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(unhandled, []);
    });
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});

test('a peer of another protocol version is refused with a reason on both sides', async () => {
  await withServer({}, async (_s, port, inbound, refused) => {
    try {
      await dial('127.0.0.1', port, endpoint('client', { protocol: PROTOCOL_VERSION + 1 }));
      assert.unreachable('dial should fail');
    } catch (err) {
      assert.is((err as MeshError).code, 'PROTOCOL_MISMATCH');
      assert.match((err as Error).message, /protocol/);
    }
    await until(() => refused.length === 1);
    assert.is(refused[0].code, 'PROTOCOL_MISMATCH');
    assert.is(inbound.length, 0);
  });
});

test('a peer of another cluster is refused', async () => {
  await withServer({}, async (_s, port, _in, refused) => {
    const err = await dial('127.0.0.1', port, endpoint('client', { cluster: 'other' })).catch((e) => e);
    assert.is(err.code, 'CLUSTER_MISMATCH');
    await until(() => refused.length === 1);
  });
});

test('dialling ourselves is recognised', async () => {
  await withServer({}, async (_s, port) => {
    const err = await dial('127.0.0.1', port, endpoint('server')).catch((e) => e);
    assert.is(err.code, 'SELF_CONNECTION');
  });
});

test('the same id from another process is reported as a duplicate', async () => {
  await withServer({}, async (_s, port) => {
    const err = await dial('127.0.0.1', port, endpoint('server', { instance: 'someone-else' })).catch((e) => e);
    assert.is(err.code, 'DUPLICATE_ID');
    assert.match(err.message, /data-dir/);
  });
});

test('with a cluster secret, peers that know it link; a wrong secret or none is refused on both sides', async () => {
  await withServer({ secret: 's3cret' }, async (_s, port, inbound, refused) => {
    const ok = await dial('127.0.0.1', port, endpoint('client', { secret: 's3cret' }));
    assert.is(ok.remote.id, 'server');
    await until(() => inbound.length === 1);
    ok.close();
    const wrong = await dial('127.0.0.1', port, endpoint('intruder', { secret: 'guess' })).catch((e) => e);
    assert.is(wrong.code, 'AUTH_FAILED');
    const none = await dial('127.0.0.1', port, endpoint('plain')).catch((e) => e);
    assert.is(none.code, 'AUTH_FAILED');
    assert.match(none.message, /--secret/);
    await until(() => refused.length === 2);
    assert.ok(refused.every((e) => e.code === 'AUTH_FAILED'));
    assert.is(inbound.length, 1, 'neither became a link');
  });
});

test('a secured peer refuses a peer without the secret even when it is the one dialling', async () => {
  await withServer({}, async (_s, port, inbound) => {
    const err = await dial('127.0.0.1', port, endpoint('client', { secret: 'x' })).catch((e) => e);
    assert.is(err.code, 'AUTH_FAILED');
    assert.is(inbound.length, 0);
  });
});

test('an auth proof cannot be replayed on another connection', async () => {
  const { proof, verifyProof } = await import('../../transport/auth.ts');
  const input = { cluster: 'c', proverId: 'a', proverNonce: new Uint8Array(16).fill(1), verifierId: 'b', verifierNonce: new Uint8Array(16).fill(2) };
  const mac = proof('k', input);
  assert.ok(verifyProof('k', input, mac));
  assert.not.ok(verifyProof('k', { ...input, verifierNonce: new Uint8Array(16).fill(3) }, mac), 'a fresh challenge');
  assert.not.ok(verifyProof('k', { ...input, proverId: 'b', verifierId: 'a' }, mac), 'reflected back');
  assert.not.ok(verifyProof('other', input, mac), 'another secret');
});

test('a message before the hello closes the socket', async () => {
  await withServer({}, async (_s, port, inbound, refused) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
    const closed = new Promise<number>((r) => ws.on('close', (code) => r(code)));
    ws.on('open', () => ws.send(encodeMessage({ type: 'coordinator', term: 9, id: 'x' })));
    assert.is(await closed, CloseCode.POLICY);
    assert.is(refused[0]?.code, 'HANDSHAKE_REQUIRED');
    assert.is(inbound.length, 0);
  });
});

test('a plain WebSocket client (random masking keys, a fragmented message, a ping) links and exchanges a tensor', async () => {
  await withServer({}, async (_s, port, inbound) => {
    // `ws` masks with random keys and may split a message: a peer must read any RFC 6455 client.
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
    const replies: Message[] = [];
    let pongs = 0;
    ws.on('pong', () => pongs++);
    ws.on('message', (data) => replies.push(decodeMessage(data as Buffer)));
    await new Promise((r) => ws.once('open', r));
    ws.send(encodeMessage({ type: 'hello', protocol: PROTOCOL_VERSION, cluster: 'c', instance: 'plain', peer: info('plain') }));
    await until(() => inbound.length === 1);
    const got: Message[] = [];
    inbound[0].on('message', (m) => got.push(m));
    inbound[0].start();
    const data = new Uint8Array(300_000).map((_, i) => i % 251);
    const frame = encodeMessage({ type: 'bench-echo', seq: 1, answer: 'none', tensor: { dtype: 'uint8', shape: [data.length], data } });
    ws.send(frame.subarray(0, 1000), { fin: false });
    ws.send(frame.subarray(1000, 200_000), { fin: false });
    ws.send(frame.subarray(200_000), { fin: true });
    ws.ping();
    await until(() => got.length === 1 && pongs === 1);
    const m = got[0] as Extract<Message, { type: 'bench-echo' }>;
    assert.ok(Buffer.from(m.tensor.data).equals(Buffer.from(data)), 'the tensor arrived bit-exact');
    await inbound[0].send({ type: 'coordinator', term: 3, id: 'server' });
    await until(() => replies.some((r) => r.type === 'coordinator'));
    assert.is(replies[0].type, 'hello');
    ws.close();
  });
});

test('an invalid frame closes that link with a reason; the server keeps serving', async () => {
  await withServer({}, async (_s, port, inbound) => {
    const bad = await dial('127.0.0.1', port, endpoint('bad'));
    const closed = new Promise<LinkClose>((r) => bad.on('close', r));
    bad.start();
    await until(() => inbound.length === 1);
    const serverSide = new Promise<LinkClose>((r) => inbound[0].on('close', r));
    // Reach under the Link to put garbage on the wire, as a buggy or hostile peer would.
    (bad as unknown as { wire: Wire }).wire.send([encodeRaw({ type: 'token', request: 7 })]);
    const c = await closed;
    assert.is(c.code, CloseCode.POLICY);
    assert.match(c.reason, /SCHEMA/);
    assert.match((await serverSide).reason, /SCHEMA/);
    const good = await dial('127.0.0.1', port, endpoint('good'));
    assert.is(good.remote.id, 'server');
    good.close();
  });
});

test('a 4 MiB tensor crosses a link bit-exact, both ways', async () => {
  await withServer({ maxPayloadBytes: 8 << 20 }, async (_s, port, inbound) => {
    const link = await dial('127.0.0.1', port, endpoint('client', { maxPayloadBytes: 8 << 20 }));
    const got: Message[] = [];
    link.on('message', (m) => got.push(m));
    link.start();
    await until(() => inbound.length === 1);
    inbound[0].on('message', (m) => inbound[0].send(m));
    const data = new Uint8Array(4 << 20);
    for (let i = 0; i < data.length; i += 997) data[i] = i & 0xff;
    const sampling = { temperature: 0, topP: 1, seed: null };
    const hidden = { dtype: 'float16' as const, shape: [1, 512, 4096], data };
    await link.send({ type: 'forward', request: 'r', origin: 'client', planVersion: 0, step: 1, offset: 5, hidden, sample: true, sampling });
    await until(() => got.length === 1);
    const back = got[0] as Extract<Message, { type: 'forward' }>;
    assert.equal([back.step, back.offset, back.sample, back.hidden!.shape], [1, 5, true, [1, 512, 4096]]);
    assert.equal(Buffer.compare(Buffer.from(back.hidden!.data), Buffer.from(data)), 0);
    link.close();
  });
});

test('a large tensor whose bytes disagree with its shape closes only that link', async () => {
  await withServer({}, async (_s, port, inbound) => {
    const other = await dial('127.0.0.1', port, endpoint('other'));
    other.start();
    const bad = await dial('127.0.0.1', port, endpoint('bad'));
    const closed = new Promise<LinkClose>((r) => bad.on('close', r));
    bad.start();
    await until(() => inbound.length === 2);
    const sampling = { temperature: 0, topP: 1, seed: null };
    const hidden = { dtype: 'float32' as const, shape: [1, 64, 1024], data: new Uint8Array(64 * 1024 * 4 - 4) };
    // Senders do not validate: the receiver is the one that must refuse it.
    await bad.send({ type: 'forward', request: 'r', origin: 'bad', planVersion: 0, step: 0, offset: 0, hidden, sample: false, sampling });
    const c = await closed;
    assert.is(c.code, CloseCode.POLICY);
    assert.match(c.reason, /TENSOR_SIZE/);
    const got: Message[] = [];
    inbound.find((l) => l.remote.id === 'other')!.on('message', (m) => got.push(m));
    await other.send({ type: 'release', request: 'still-here' });
    await until(() => got.length === 1);
    assert.ok(other.isOpen);
    other.close();
  });
});

test('an oversize frame closes the link with 1009', async () => {
  await withServer({ maxPayloadBytes: 1024 }, async (_s, port) => {
    const link = await dial('127.0.0.1', port, endpoint('client', { maxPayloadBytes: 1 << 20 }));
    const closed = new Promise<LinkClose>((r) => link.on('close', r));
    link.start();
    await link.send({ type: 'request-error', request: 'r', code: 'X', message: 'x'.repeat(4096) }).catch(() => {});
    assert.is((await closed).code, CloseCode.TOO_BIG);
  });
});

test('a peer that stops answering pings is declared dead after the missed beats', async () => {
  await withServer({ heartbeatMs: 50, heartbeatMisses: 3 }, async (_s, port, inbound) => {
    // A raw client that completes the handshake but never answers pings (a frozen process).
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false, autoPong: false });
    ws.on('open', () =>
      ws.send(encodeMessage({ type: 'hello', protocol: PROTOCOL_VERSION, cluster: 'c', instance: 'z', peer: info('frozen') })),
    );
    await until(() => inbound.length === 1);
    const started = Date.now();
    const c = await new Promise<LinkClose>((r) => inbound[0].on('close', r));
    assert.is(c.code, CloseCode.HEARTBEAT_TIMEOUT);
    assert.ok(Date.now() - started < 1000, 'detected within a few beats');
    ws.terminate();
  });
});

test('heartbeats measure a round-trip time', async () => {
  await withServer({}, async (_s, port) => {
    const link = await dial('127.0.0.1', port, endpoint('client', { heartbeatMs: 30 }));
    link.start();
    await until(() => link.rttMs !== null);
    assert.ok(link.rttMs! >= 0 && link.rttMs! < 500);
    link.close();
  });
});

test('sends beyond the window wait for the socket instead of queueing without bound', async () => {
  await withServer({}, async (_s, port) => {
    const link = await dial('127.0.0.1', port, endpoint('client', { sendWindow: 2 }));
    link.start();
    const state = link as unknown as { inFlight: number };
    let maxInFlight = 0;
    const big = 'x'.repeat(256 * 1024);
    const sends = Array.from({ length: 12 }, () => {
      const p = link.send({ type: 'request-error', request: 'r', code: 'X', message: big });
      maxInFlight = Math.max(maxInFlight, state.inFlight);
      return p;
    });
    await Promise.all(sends);
    assert.ok(maxInFlight <= 2, `at most 2 in flight, saw ${maxInFlight}`);
    assert.is(state.inFlight, 0);
    link.close();
    const err = await link.send({ type: 'release', request: 'r' }).catch((e) => e);
    assert.is(err.code, 'LINK_CLOSED');
  });
});

test('frames arrive in the order send() was called, even while callers wait for the window', async () => {
  await withServer({}, async (_s, port, inbound) => {
    const link = await dial('127.0.0.1', port, endpoint('client', { sendWindow: 1 }));
    link.start();
    await until(() => inbound.length === 1);
    const got: number[] = [];
    inbound[0].on('message', (m) => m.type === 'token' && got.push(m.step));
    const pad = 'y'.repeat(64 * 1024);
    const sends: Promise<void>[] = [];
    for (let i = 0; i < 40; i++) {
      if (i % 2) sends.push(link.send({ type: 'request-error', request: 'r', code: 'PAD', message: pad }));
      sends.push(link.send({ type: 'token', request: 'r', step: i, token: 1 }));
      if (i % 7 === 0) await sends[sends.length - 1]; // some callers await, others fire and forget
    }
    await Promise.all(sends);
    await until(() => got.length === 40);
    assert.equal(got, Array.from({ length: 40 }, (_, i) => i));
    link.close();
  });
});

test('a send resolves once the socket has taken its bytes: while the other side reads nothing, sends wait in the window', async () => {
  await withServer({ maxPayloadBytes: 64 << 20 }, async (_s, port, inbound) => {
    // Heartbeats slow enough that the pause below is not taken for a dead peer.
    const link = await dial('127.0.0.1', port, endpoint('client', { sendWindow: 2, heartbeatMs: 10_000, maxPayloadBytes: 64 << 20 }));
    link.start();
    await until(() => inbound.length === 1);
    const got: number[] = [];
    inbound[0].on('message', (m) => m.type === 'token' && got.push(m.step));
    // The peer stops reading: the kernel's buffers fill and the rest waits in this process.
    const peerSocket = (inbound[0] as unknown as { wire: Wire }).wire.socket;
    peerSocket.pause();
    const state = link as unknown as { inFlight: number };
    const tensor = { dtype: 'uint8' as const, shape: [4 << 20], data: new Uint8Array(4 << 20).fill(7) };
    let resolved = 0;
    const sends: Promise<void>[] = [];
    for (let i = 0; i < 8; i++) {
      const fwd: Message = { type: 'forward', request: 'r', origin: 'o', planVersion: 1, step: i, offset: 0, hidden: tensor, sample: false, sampling: { temperature: 0, topP: 1, seed: null } };
      sends.push(link.send(fwd).then(() => void resolved++));
      sends.push(link.send({ type: 'token', request: 'r', step: i, token: 1 }).then(() => void resolved++));
    }
    // 32 MiB cannot all be taken while nobody reads: some sends are still waiting, never more than the window in flight.
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(resolved < sends.length, `all ${sends.length} sends resolved while the other side read nothing`);
    assert.ok(state.inFlight <= 2, `at most 2 in flight, saw ${state.inFlight}`);
    peerSocket.resume();
    await Promise.all(sends);
    await until(() => got.length === 8, 30_000);
    assert.equal(got, [0, 1, 2, 3, 4, 5, 6, 7]);
    link.close();
  });
});

test('a wire refuses spare bytes too few for the frame header instead of writing a broken frame', async () => {
  const server = net.createServer((s) => s.resume());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const socket = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await new Promise((r) => socket.once('connect', r));
  const wire = new WireClass(socket, 'client', 1 << 20);
  // A client's header for a 20-byte message is 6 bytes (2 + the 4-byte mask).
  assert.throws(() => wire.send([Buffer.alloc(24)], 4), (e: unknown) => e instanceof RangeError && /4 spare bytes/.test((e as Error).message));
  assert.ok(wire.send([Buffer.alloc(26)], 6), 'six spare bytes are enough');
  wire.terminate();
  await new Promise((r) => server.close(r));
});

test.run();
