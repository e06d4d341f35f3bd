// Large frames gathered as they arrive, over a real ws socket pair on 127.0.0.1: every byte of every
// frame exact, in order, whatever the reads look like (large and small frames back to back, masked
// and not, fragmented messages), and the pinned ws has the receiver this relies on.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import WebSocket, { WebSocketServer } from 'ws';
import { gatherLargePayloads } from '../../transport/receiver-gather.ts';

const MIN = 1 << 20;

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed * 2654435761;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

/** A server and a client dialled to it. */
async function pair(): Promise<{ server: WebSocket; client: WebSocket; close: () => Promise<void> }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await new Promise<void>((r) => wss.once('listening', r));
  const port = (wss.address() as { port: number }).port;
  const accepted = new Promise<WebSocket>((r) => wss.once('connection', r));
  const client = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
  await new Promise<void>((resolve, reject) => client.once('open', resolve).once('error', reject));
  const server = await accepted;
  return {
    server,
    client,
    close: async () => {
      client.terminate();
      server.terminate();
      await new Promise((r) => wss.close(r));
    },
  };
}

function collect(ws: WebSocket, n: number): Promise<Buffer[]> {
  const got: Buffer[] = [];
  return new Promise((resolve) =>
    ws.on('message', (data: Buffer) => {
      got.push(data);
      if (got.length === n) resolve(got);
    }),
  );
}

const SIZES = [MIN - 1, MIN, 5, 16 * MIN + 3, 0, 3 * MIN + 1, 70_000, 2 * MIN, 2 * MIN, 1];

test('the pinned ws has the receiver shape gathering needs', async () => {
  const { server, client, close } = await pair();
  try {
    assert.ok(gatherLargePayloads(server, MIN), 'ws receiver internals changed: transport/receiver-gather.ts no longer applies');
    assert.ok(gatherLargePayloads(client, MIN));
  } finally {
    await close();
  }
});

for (const dir of ['client → server (masked)', 'server → client'] as const) {
  test(`frames of every size arrive exact and in order, ${dir}`, async () => {
    const { server, client, close } = await pair();
    try {
      const [from, to] = dir.startsWith('client') ? [client, server] : [server, client];
      assert.ok(gatherLargePayloads(to, MIN));
      const sent = SIZES.map((n, i) => pattern(n, i + 1));
      const received = collect(to, sent.length);
      for (const b of sent) from.send(b, { binary: true });
      const got = await received;
      got.forEach((b, i) => assert.ok(b.equals(sent[i]), `frame ${i} (${SIZES[i]} bytes) differs`));
    } finally {
      await close();
    }
  });
}

test('a message of fragments, one of them large, joins exact', async () => {
  const { server, client, close } = await pair();
  try {
    assert.ok(gatherLargePayloads(server, MIN));
    const head = pattern(100, 7);
    const body = pattern(4 * MIN + 17, 8);
    const received = collect(server, 2);
    client.send(head, { binary: true, fin: false });
    client.send(body, { binary: true, fin: true });
    client.send(pattern(10, 9), { binary: true });
    const [joined, after] = await received;
    assert.ok(joined.equals(Buffer.concat([head, body])));
    assert.ok(after.equals(pattern(10, 9)));
  } finally {
    await close();
  }
});

test.run();
