import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { decodeMessage, encodeFrameParts, encodeMessage, encodeMessageFragments, encodeRaw } from '../../transport/codec.ts';
import { TEST_PYTHON } from '../helpers/mesh.ts';
import { isMeshError } from '../../core/errors.ts';
import { type Message, MESSAGE_TYPES, type PeerInfo } from '../../transport/messages.ts';
import { DTYPE_BYTES, DTYPES, type Tensor } from '../../transport/tensor.ts';

const peer: PeerInfo = {
  id: 'p1',
  name: 'a',
  hostname: 'mini1',
  startedAt: 1700000000000,
  port: 50051,
  apiPort: 8100,
  addresses: ['10.0.0.2'],
  capabilities: { platform: 'darwin', arch: 'arm64', totalMemory: 64e9, freeMemory: 32e9 },
};
const sampling = { temperature: 0, topP: 1, seed: null };

function tensor(dtype: keyof typeof DTYPE_BYTES, shape: number[]): Tensor {
  const n = shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
  const data = new Uint8Array(n);
  for (let i = 0; i < n; i++) data[i] = (i * 37 + 11) & 0xff;
  return { dtype, shape, data };
}

const samples: Message[] = [
  { type: 'hello', protocol: 1, cluster: 'default', instance: 'abc', peer },
  { type: 'hello', protocol: 1, cluster: 'default', instance: 'abc', secured: true, nonce: new Uint8Array(16).fill(7), peer },
  { type: 'auth', mac: new Uint8Array(32).fill(9) },
  { type: 'reject', code: 'PROTOCOL_MISMATCH', message: 'no' },
  { type: 'gossip', peers: [peer], coordinator: 'p1', term: 3 },
  { type: 'coordinator', term: 2, id: 'p1' },
  {
    type: 'plan',
    term: 2,
    version: 1,
    model: 'm',
    stages: [{ id: 'p1', rank: 0, layers: [0, 3] }],
    excluded: [],
    meta: { name: 'm', nLayers: 3, contextLength: 512, eosTokenIds: [2] },
  },
  { type: 'status', engine: 'ready', planTerm: 2, planVersion: 1, ready: true, memoryBytes: 123 },
  { type: 'forward', request: 'r1', origin: 'p1', planVersion: 1, step: 0, offset: 0, tokens: [1, 403], sample: true, sampling },
  { type: 'forward', request: 'r1', origin: 'p1', planVersion: 1, step: 1, offset: 2, hidden: tensor('bfloat16', [1, 2, 4]), sample: false, sampling },
  { type: 'token', request: 'r1', step: 1, token: 407 },
  { type: 'release', request: 'r1' },
  { type: 'request-error', request: 'r1', code: 'ENGINE_ERROR', message: 'boom' },
  { type: 'bench-echo', seq: 4, answer: 'echo', tensor: tensor('uint8', [32]) },
  { type: 'weights-query', id: 'w1', model: 'default' },
  { type: 'weights-index', id: 'w1', name: 'm', digest: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', items: [{ kind: 'tensor', name: 'model.norm.weight', size: 256, sha256: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', dtype: 'F32', shape: [64] }] },
  { type: 'weights-get', id: 'w2', digest: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', kind: 'file', name: 'config.json', offset: 0, length: 512 },
  { type: 'weights-data', id: 'w2', data: new Uint8Array(100 * 1024).fill(3) },
  { type: 'weights-error', id: 'w2', code: 'WEIGHTS_UNAVAILABLE', message: 'no' },
];

const withTensor = samples.find((m) => m.type === 'forward' && m.hidden)!;
const gossip = samples.find((m) => m.type === 'gossip')!;

/** Byte strings come back as Buffer: compare contents, not classes. */
function plain(v: unknown): unknown {
  return JSON.parse(JSON.stringify(v, (_k, x) => (x?.type === 'Buffer' ? x.data : x instanceof Uint8Array ? [...x] : x)));
}

test('every message type survives a round trip', () => {
  const seen = new Set<string>();
  for (const msg of samples) {
    const back = decodeMessage(encodeMessage(msg));
    assert.equal(plain(back), plain(msg));
    seen.add(msg.type);
  }
  assert.equal([...seen].sort(), [...MESSAGE_TYPES].sort(), 'a sample for every message type');
});

test('tensor bytes of every dtype are preserved exactly', () => {
  for (const dtype of DTYPES) {
    const t = tensor(dtype, [1, 3, 5]);
    const msg: Message = { type: 'forward', request: 'r', origin: 'p1', planVersion: 0, step: 0, offset: 0, hidden: t, sample: false, sampling };
    const back = decodeMessage(encodeMessage(msg)) as Extract<Message, { type: 'forward' }>;
    assert.is(back.hidden!.dtype, dtype);
    assert.equal(back.hidden!.shape, [1, 3, 5]);
    assert.equal(Buffer.compare(Buffer.from(back.hidden!.data), Buffer.from(t.data)), 0, dtype);
  }
});

test('byte strings are plain CBOR: no typed-array tags, no records extension', () => {
  const bytes = encodeMessage({ type: 'release', request: 'r' });
  assert.is(bytes[0] >> 5, 5, 'a CBOR map');
  const frame = Buffer.from(encodeMessage(withTensor));
  assert.not.ok(frame.includes(Buffer.from([0xd8, 0x40])), 'no tag 64');
  assert.not.ok(frame.includes(Buffer.from([0xd9, 0xdf, 0xff])), 'no records tag 57343');
  // major type 2 (byte string) with a 1-byte length for the 16-byte bfloat16 payload
  assert.ok(frame.includes(Buffer.from([0x50])), 'a definite-length byte string');
});

function codeOf(frame: Uint8Array, max?: number): string {
  try {
    decodeMessage(frame, max);
  } catch (err) {
    if (isMeshError(err)) return err.code;
    throw err;
  }
  return 'accepted';
}

test('garbage, truncated, oversize and invalid frames are rejected with a code', () => {
  const good = encodeMessage(gossip);
  assert.is(codeOf(new Uint8Array([0xff, 0x00, 0x13])), 'BAD_FRAME');
  assert.is(codeOf(good.subarray(0, good.length - 3)), 'BAD_FRAME', 'truncated');
  assert.is(codeOf(good, 10), 'FRAME_TOO_LARGE');
  assert.is(codeOf(encodeRaw([1, 2, 3])), 'BAD_FRAME', 'not a map');
  assert.is(codeOf(encodeRaw({ type: 'launch-missiles' })), 'BAD_FRAME', 'unknown type');
  assert.is(codeOf(encodeRaw({ hello: 1 })), 'BAD_FRAME', 'no type');
  assert.is(codeOf(encodeRaw({ type: 'token', request: 'r', step: -1, token: 2 })), 'SCHEMA');
  assert.is(codeOf(encodeRaw({ type: 'coordinator', term: 'x', id: 'p' })), 'SCHEMA');
  const bad = { ...withTensor, hidden: { dtype: 'float32', shape: [2, 2], data: new Uint8Array(15) } };
  assert.is(codeOf(encodeRaw(bad)), 'TENSOR_SIZE');
  assert.is(codeOf(encodeRaw({ ...withTensor, hidden: { dtype: 'float8', shape: [1], data: new Uint8Array(1) } })), 'SCHEMA');
});

const MiB = 1 << 20;

function forward(hidden: Tensor): Message {
  return { type: 'forward', request: 'r', origin: 'p1', planVersion: 0, step: 3, offset: 7, hidden, sample: false, sampling };
}

test('large tensors of every dtype round-trip bit-exact, decoded as views into the frame', () => {
  for (const dtype of DTYPES) {
    const t = tensor(dtype, [1, 3, MiB / DTYPE_BYTES[dtype] / 2]);
    const frame = encodeMessage(forward(t));
    const back = decodeMessage(frame) as Extract<Message, { type: 'forward' }>;
    assert.equal(back.hidden!.shape, t.shape, dtype);
    assert.equal(Buffer.compare(Buffer.from(back.hidden!.data), Buffer.from(t.data)), 0, dtype);
    assert.is(back.hidden!.data.buffer, frame.buffer, `${dtype}: no copy on decode`);
  }
});

test('a tensor goes out from its own memory, and a message in [head, tensor] fragments is decoded without a copy', () => {
  const msg = forward(tensor('bfloat16', [1, 16, 4096]));
  const data = (msg as { hidden: Tensor }).hidden.data;
  const parts = encodeMessageFragments(msg);
  assert.ok(parts.includes(data), 'the tensor is a part of its own, not copied on the way out');
  const joined = decodeMessage(Buffer.concat(parts)) as Extract<Message, { type: 'forward' }>;
  assert.equal(plain(joined), plain(decodeMessage(encodeRaw(msg))), 'joined, the parts are the map the plain encoder gives');
  assert.ok(encodeFrameParts(msg).includes(data), 'engine frames carry the tensor as its own part too');
  // A WebSocket client that sends the tensor as a fragment of its own (the map's last value; the general
  // writer keeps a map's key order).
  const { hidden, ...rest } = msg as Extract<Message, { type: 'forward' }>;
  const fragments = encodeFrameParts({ ...rest, hidden });
  assert.is(fragments.length, 2);
  assert.is(fragments[1], data);
  const back = decodeMessage(fragments) as Extract<Message, { type: 'forward' }>;
  assert.is(back.hidden!.data, data, 'nor on the way in');
  assert.equal(plain(back), plain(joined));
});

test('fragments split anywhere else are joined and decode the same', () => {
  const msg = forward(tensor('float32', [1, 8, 4096]));
  const frame = Buffer.from(encodeMessage(msg));
  const want = plain(decodeMessage(frame));
  for (const cuts of [[1], [40], [frame.length - 70_000], [frame.length - 1], [10, 100_000], [60, frame.length - 65_536]]) {
    const fragments = [0, ...cuts].map((c, i, all) => frame.subarray(c, all[i + 1] ?? frame.length));
    assert.equal(plain(decodeMessage(fragments)), want, `cuts ${cuts}`);
  }
  assert.is(codeOf(Buffer.concat([frame.subarray(0, 50)])), 'BAD_FRAME');
});

test('a plain CBOR decoder (Python cbor2) reads a fast-path frame as the same map', () => {
  const msg = forward(tensor('float32', [1, 16, 4096]));
  const script = `
import cbor2, hashlib, json, sys
def plain(v):
    if isinstance(v, bytes): return {"bytes": len(v), "sha256": hashlib.sha256(v).hexdigest()}
    if isinstance(v, dict): return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list): return [plain(x) for x in v]
    return v
print(json.dumps(plain(cbor2.loads(sys.stdin.buffer.read()))))
`;
  const out = execFileSync(TEST_PYTHON, ['-c', script], { input: encodeMessage(msg), maxBuffer: 1 << 20 });
  const data = (msg as { hidden: Tensor }).hidden.data;
  const want = {
    ...msg,
    hidden: { dtype: 'float32', shape: [1, 16, 4096], data: { bytes: data.byteLength, sha256: createHash('sha256').update(data).digest('hex') } },
  };
  assert.equal(JSON.parse(out.toString()), want);
});

test('a large byte string whose length disagrees with the shape is refused with TENSOR_SIZE', () => {
  const t = { dtype: 'float16' as const, shape: [1, 4, 4096], data: new Uint8Array(4 * 4096 * 2 - 2) };
  assert.is(codeOf(encodeMessage(forward(t))), 'TENSOR_SIZE');
  assert.is(codeOf(encodeMessage(forward({ ...t, data: new Uint8Array(4 * 4096 * 2 + 2) }))), 'TENSOR_SIZE');
});

test('unknown fields are ignored', () => {
  const back = decodeMessage(encodeRaw({ type: 'release', request: 'r', future: { x: 1 } }));
  assert.equal(back, { type: 'release', request: 'r' });
});

test.run();
