// Limits before trust: a socket that has not completed the handshake may send only a few KB and an
// address may hold only a few such sockets; the large frame limit is for linked peers. Real sockets,
// and a real peer process whose memory is measured while a stranger streams a huge frame at it.
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import WebSocket from 'ws';
import { defaults } from '../../core/defaults.ts';
import type { MeshError } from '../../core/errors.ts';
import { CloseCode } from '../../transport/close-codes.ts';
import { dial } from '../../transport/dialer.ts';
import type { Link } from '../../transport/link.ts';
import type { Message } from '../../transport/messages.ts';
import { endpoint as linkEndpoint, withServer as withLinkServer } from '../helpers/links.ts';
import { tempDir, waitFor } from '../helpers/mesh.ts';
import { freePort, spawnCli } from '../helpers/process.ts';

/** Long deadlines (the machine is loaded) and the product's frame limit. */
const endpoint = (id: string) =>
  linkEndpoint(id, { timeoutMs: 20_000, maxPayloadBytes: defaults.maxPayloadBytes, heartbeatMs: 1000 });

/** A WebSocket opened by hand on a raw TCP socket, so the test controls every byte it sends. */
async function rawWebSocket(port: number): Promise<{ socket: net.Socket; closeCode: Promise<number | null> }> {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const key = crypto.randomBytes(16).toString('base64');
  socket.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  let buf = Buffer.alloc(0);
  const upgraded = new Promise<void>((resolve, reject) => {
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      if (!buf.subarray(0, 12).toString().includes('101')) reject(new Error(buf.toString()));
      buf = buf.subarray(end + 4);
      socket.off('data', onData);
      resolve();
    };
    socket.on('data', onData);
  });
  await upgraded;
  // The server's frames are unmasked: walk them (its hello first) until a close frame and read its code.
  const closeCode = new Promise<number | null>((resolve) => {
    const look = () => {
      while (buf.length >= 2) {
        const len7 = buf[1] & 0x7f;
        const head = len7 === 126 ? 4 : len7 === 127 ? 10 : 2;
        if (buf.length < head) return;
        const len = len7 === 126 ? buf.readUInt16BE(2) : len7 === 127 ? Number(buf.readBigUInt64BE(2)) : len7;
        if (buf.length < head + len) return;
        if ((buf[0] & 0x0f) === 0x8) return resolve(len >= 2 ? buf.readUInt16BE(head) : null);
        buf = buf.subarray(head + len);
      }
    };
    look();
    socket.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      look();
    });
    socket.on('close', () => resolve(null));
    socket.on('error', () => {});
  });
  return { socket, closeCode };
}

/** Streams one binary frame of `length` zero bytes (masked with a zero key) until sent or the socket closes. */
async function streamFrame(socket: net.Socket, length: number, masked = true): Promise<number> {
  const header = Buffer.alloc(masked ? 14 : 10);
  header[0] = 0x82;
  header[1] = (masked ? 0x80 : 0) | 127;
  header.writeBigUInt64BE(BigInt(length), 2);
  socket.write(header);
  const chunk = Buffer.alloc(1 << 20);
  let sent = 0;
  while (sent < length && !socket.destroyed) {
    const ok = socket.write(chunk);
    sent += chunk.length;
    if (!ok) {
      await new Promise<void>((resolve) => {
        const done = () => {
          socket.off('drain', done);
          socket.off('close', done);
          resolve();
        };
        socket.on('drain', done);
        socket.on('close', done);
      });
    }
  }
  return sent;
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/**
 * A real peer process, a stranger's socket doing `attack` at it, and the peer's peak RSS meanwhile: it must
 * grow by less than 64 MiB, and the peer must still answer its API afterwards.
 */
async function strangerAttack(attack: (port: number) => Promise<void>): Promise<void> {
  const port = await freePort();
  const api = await freePort();
  const dataDir = tempDir();
  const peer = spawnCli(['join', '--no-mdns', '--host', '127.0.0.1', '--port', String(port), '--api-port', String(api), '--data-dir', dataDir], {
    MLX_MESH_LOG: 'warn',
  });
  try {
    await peer.waitForOutput(/API http/, 60_000);
    const pid = peer.child.pid!;
    const before = rssBytes(pid);
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(pid))), 20);
    try {
      await attack(port);
    } finally {
      clearInterval(sampler);
    }
    const grew = peak - before;
    assert.ok(grew < 64 * 1024 * 1024, `peer RSS grew by ${(grew / 2 ** 20).toFixed(1)} MiB`);
    const health = await fetch(`http://127.0.0.1:${api}/health`);
    assert.is(health.status, 200);
  } finally {
    await peer.kill('SIGKILL');
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

test('a stranger streaming a 200 MiB frame before its hello is cut off with 1009; the peer does not buffer it', async () => {
  await strangerAttack(async (port) => {
    const { socket, closeCode } = await rawWebSocket(port);
    const length = 200 * 1024 * 1024;
    const sent = await streamFrame(socket, length);
    assert.is(await closeCode, CloseCode.TOO_BIG);
    assert.ok(sent < length, `the peer stopped reading after ${sent} bytes`);
    socket.destroy();
  });
});

test('a stranger flooding pings and reading nothing gets at most one pong queued; the peer does not grow', async () => {
  await strangerAttack(async (port) => {
    const { socket } = await rawWebSocket(port);
    // Stop reading: every pong the peer writes stays queued on its side once the socket buffers fill.
    socket.pause();
    // 125-byte pings, masked with a zero key as a client's must be: 2 million is ~260 MB of pongs unbounded.
    const ping = Buffer.concat([Buffer.from([0x89, 0x80 | 125, 0, 0, 0, 0]), Buffer.alloc(125)]);
    const burst = Buffer.concat(Array.from({ length: 8000 }, () => ping));
    let sent = 0;
    while (sent < 2_000_000 && !socket.destroyed) {
      if (!socket.write(burst)) await new Promise<void>((r) => (socket.once('drain', r), socket.once('close', r)));
      sent += 8000;
    }
    socket.destroy();
  });
});

const withServer = (fn: (port: number, inbound: Link[], refused: MeshError[]) => Promise<void>) =>
  withLinkServer({ timeoutMs: 20_000, maxPayloadBytes: defaults.maxPayloadBytes, heartbeatMs: 1000 }, (_s, port, inbound, refused) =>
    fn(port, inbound, refused),
  );

test('an address holding the maximum of sockets in their handshake gets the next one closed with 1013', async () => {
  await withServer(async (port, _inbound, refused) => {
    const cap = defaults.maxUnauthenticatedPerAddress;
    const open = (): Promise<{ ws: WebSocket; closed: Promise<number> }> =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false });
        const closed = new Promise<number>((r) => ws.on('close', (code) => r(code)));
        ws.once('open', () => resolve({ ws, closed }));
        ws.once('error', reject);
      });
    const silent = [];
    for (let i = 0; i < cap; i++) silent.push(await open());
    const extra = await open();
    assert.is(await extra.closed, CloseCode.TRY_AGAIN);
    await waitFor(() => refused.some((e) => e.code === 'TOO_MANY_HANDSHAKES'), 20_000, 'the refusal');
    // The silent sockets are still waiting for their hello (none was closed by the newcomer)...
    assert.ok(silent.every((s) => s.ws.readyState === WebSocket.OPEN));
    // ...and once they go, the address can link again.
    for (const s of silent) s.ws.terminate();
    await Promise.all(silent.map((s) => s.closed));
    const link = await waitFor(() => dial('127.0.0.1', port, endpoint('client')), 20_000, 'a link after the strangers left');
    assert.is(link.remote.id, 'server');
    link.close();
  });
});

test('a linked peer may send frames far beyond the pre-handshake bound', async () => {
  await withServer(async (port, inbound) => {
    const link = await dial('127.0.0.1', port, endpoint('client'));
    link.start();
    await waitFor(() => inbound.length === 1, 20_000, 'the inbound link');
    const got: Message[] = [];
    inbound[0].on('message', (m) => got.push(m));
    const big = 4 * defaults.preHandshakeMaxBytes;
    await link.send({ type: 'request-error', request: 'r', code: 'X', message: 'x'.repeat(big) });
    await waitFor(() => got.length === 1, 20_000, 'the large frame');
    assert.ok(inbound[0].isOpen && link.isOpen);
    link.close();
  });
});

test('a dialler is protected too: a server that answers with a huge frame before its hello is cut off', async () => {
  // A fake "peer": it accepts the upgrade, then streams a huge frame at whoever dialled it.
  let sentBytes = 0;
  const accepted: net.Socket[] = [];
  const fake = net.createServer((socket) => {
    accepted.push(socket);
    socket.on('error', () => {});
    socket.once('data', (req) => {
      const key = /Sec-WebSocket-Key: (.+)\r\n/i.exec(req.toString())![1];
      const accept = crypto.createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
      // Server frames are unmasked: clear the mask bit streamFrame sets.
      void streamFrame(socket, 200 * 1024 * 1024, false).then((n) => (sentBytes = n));
    });
  });
  await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
  const port = (fake.address() as net.AddressInfo).port;
  try {
    const err = (await dial('127.0.0.1', port, endpoint('client')).catch((e) => e)) as MeshError;
    assert.is(err.code, 'FRAME_TOO_LARGE');
    await waitFor(() => sentBytes > 0, 20_000, 'the server to stop sending');
    assert.ok(sentBytes < 200 * 1024 * 1024, `the dialler stopped reading after ${sentBytes} bytes`);
  } finally {
    for (const socket of accepted) socket.destroy();
    await new Promise<void>((r) => fake.close(() => r()));
  }
});

test.run();
