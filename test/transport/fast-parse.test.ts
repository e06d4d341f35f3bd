// The hand-checked path for hot messages against the zod schemas it stands in for: on valid messages
// and on tens of thousands of mutated ones, it either gives exactly zod's output or defers (null) —
// it never accepts what zod refuses. The same for reading them straight from bytes (fastDecode), in
// any key order; and what fastEncode writes decodes, with any CBOR decoder, to the same message.
// Through decodeMessage, errors stay the schema's.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decodeMessage, encodeMessageFragments, encodeRaw, cbor } from '../../transport/codec.ts';
import { fastDecode, fastParse } from '../../transport/fast-parse.ts';
import { fastEncode } from '../../transport/fast-encode.ts';
import { CborWriter } from '../../transport/cbor-writer.ts';
import type { Message } from '../../transport/messages.ts';
import { MessageSchema } from '../../transport/messages.ts';
import { isMeshError } from '../../core/errors.ts';

const bytes = (n: number) => new Uint8Array(n).map((_, i) => i & 0xff);
const hop = { peer: 'p2', computeMs: 1.5, transferMs: 0.25, bytes: 8192 };
const sampling = { temperature: 0.7, topP: 0.9, seed: 42 };

const VALID: Array<Record<string, unknown>> = [
  { type: 'forward', request: 'r1', origin: 'p1', planVersion: 3, step: 0, offset: 0, tokens: [1, 403, 0], sample: true, sampling },
  {
    type: 'forward',
    request: 'r1',
    origin: 'p1',
    planVersion: -1,
    step: 5,
    offset: 12,
    hidden: { dtype: 'bfloat16', shape: [1, 2, 4], data: bytes(16) },
    sample: false,
    sampling: { temperature: 0, topP: 1, seed: null },
    sentAt: 1733000000000.5,
    trace: [hop, { ...hop, peer: 'p3' }],
  },
  { type: 'token', request: 'r1', step: 9, token: 50_000, sentAt: 1, trace: [hop] },
  { type: 'token', request: 'r1', step: 0, token: 0 },
  { type: 'bench-echo', seq: 7, answer: 'echo', tensor: { dtype: 'uint8', shape: [8192], data: bytes(8192) } },
  { type: 'bench-echo', seq: 0, answer: 'none', tensor: { dtype: 'float32', shape: [0], data: bytes(0) } },
];

/** Deterministic PRNG, so a failure names a seed that reproduces it. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t ^= t + Math.imul(t ^ (t >>> 7), 61 | t);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const ODD_VALUES: unknown[] = [
  undefined, null, true, false, 0, -0, -1, 1.5, 2 ** 53, 2 ** 53 - 1, -(2 ** 53), NaN, Infinity, -Infinity, 1e300,
  '', 'x', 'echo', 'ack', 'none', 'bfloat16', 'float64', 'complex64', [], [1], [-1], [1.5], [1, 2, 3, 4, 5, 6, 7, 8, 9],
  {}, { peer: 'p' }, hop, bytes(0), bytes(3), bytes(16), new Uint16Array(8), Buffer.from('ab'), new ArrayBuffer(4),
  Array(65).fill(hop), Array(64).fill(hop), [hop, null], [{ ...hop, bytes: -1 }], [{ ...hop, computeMs: -0.1 }],
];

const clone = (v: unknown): unknown =>
  v instanceof Uint8Array ? v : Array.isArray(v) ? v.map(clone) : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, clone(x)])) : v;

/** One to three edits anywhere in the message, nested maps and lists included. */
function mutate(msg: Record<string, unknown>, rand: () => number): Record<string, unknown> {
  const out = clone(msg) as Record<string, unknown>;
  const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  for (let edits = 1 + Math.floor(rand() * 3); edits > 0; edits--) {
    let node: Record<string, unknown> | unknown[] = out;
    while (rand() < 0.5) {
      const children = Object.values(node).filter((x) => x && typeof x === 'object' && !ArrayBuffer.isView(x) && !(x instanceof ArrayBuffer));
      if (!children.length) break;
      node = pick(children) as Record<string, unknown>;
    }
    const keys = Object.keys(node);
    const r = rand();
    if (r < 0.15 && keys.length) delete (node as Record<string, unknown>)[pick(keys)];
    else if (r < 0.25) (node as Record<string, unknown>)[pick(['extra', 'sentAt', 'trace', 'hidden', 'tokens', 'seed', 'type'])] = clone(pick(ODD_VALUES));
    else if (keys.length) (node as Record<string, unknown>)[pick(keys)] = clone(pick(ODD_VALUES));
  }
  return out;
}

function zod(v: unknown) {
  const r = MessageSchema.safeParse(v);
  return r.success ? r.data : null;
}

test('valid hot messages take the fast path and give exactly what zod gives, keys in the same order', () => {
  for (const msg of VALID) {
    const fast = fastParse(msg);
    assert.ok(fast, `fast path took ${JSON.stringify(msg.type)}`);
    assert.equal(fast, zod(msg));
    assert.equal(Object.keys(fast!), Object.keys(zod(msg)!));
  }
});

test('on 30,000 mutated messages the fast path never accepts what zod refuses, and never differs from it', () => {
  const rand = rng(7);
  let fastTaken = 0;
  let zodRefused = 0;
  for (let i = 0; i < 30_000; i++) {
    const msg = mutate(VALID[i % VALID.length], rand);
    const want = zod(msg);
    const got = fastParse(msg);
    if (!want) zodRefused++;
    if (got === null) continue;
    fastTaken++;
    assert.ok(want, `case ${i}: fast path accepted what zod refuses: ${JSON.stringify(msg, (_, v) => (v instanceof Uint8Array ? `<${v.length} bytes>` : v))}`);
    assert.equal(got, want, `case ${i}: outputs differ`);
  }
  // Both sides of the comparison were exercised.
  assert.ok(fastTaken > 1000, `fast path took ${fastTaken}`);
  assert.ok(zodRefused > 3000, `zod refused ${zodRefused}`);
});

/** The message with its keys (and its nested maps' keys) in a random order. */
function shuffleKeys(v: unknown, rand: () => number): unknown {
  if (Array.isArray(v)) return v.map((x) => shuffleKeys(x, rand));
  if (!v || typeof v !== 'object' || ArrayBuffer.isView(v) || v instanceof ArrayBuffer) return v;
  const entries = Object.entries(v);
  for (let i = entries.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [entries[i], entries[j]] = [entries[j], entries[i]];
  }
  return Object.fromEntries(entries.map(([k, x]) => [k, shuffleKeys(x, rand)]));
}

/**
 * Byte strings as hex (decoded ones are Buffers, the originals plain Uint8Arrays), and without keys
 * whose value is undefined (fastEncode leaves those out; to a schema they are absent).
 */
function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return `bytes:${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')}`;
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined).map(([k, x]) => [k, plain(x)]));
  return v;
}

test('read straight from bytes, valid hot messages give exactly what zod gives, in any key order', () => {
  const rand = rng(11);
  for (const msg of VALID) {
    const want = plain(zod(msg));
    for (const bytes of [encodeRaw(msg), Buffer.concat(encodeMessageFragments(msg as Message))]) {
      const fast = fastDecode(bytes);
      assert.ok(fast, `${msg.type} read from bytes`);
      assert.equal(plain(fast), want, `${msg.type}`);
      assert.equal(Object.keys(fast!), Object.keys(zod(msg)!), 'keys in the schema order');
    }
    for (let i = 0; i < 20; i++) {
      const shuffled = shuffleKeys(msg, rand) as Record<string, unknown>;
      const fast = fastDecode(encodeRaw(shuffled));
      // Read when `type` comes first; otherwise left to the general path.
      assert.is(fast === null, Object.keys(shuffled)[0] !== 'type');
      if (fast) assert.equal(plain(fast), want, `${msg.type} shuffled`);
    }
  }
});

test('on 30,000 mutated frames the bytes path never accepts what zod refuses, and never differs from it', () => {
  const rand = rng(13);
  let fastTaken = 0;
  for (let i = 0; i < 30_000; i++) {
    let msg: unknown = mutate(VALID[i % VALID.length], rand);
    if (rand() < 0.3) msg = shuffleKeys(msg, rand);
    const want = zod(msg);
    const got = fastDecode(encodeRaw(msg));
    if (got === null) continue;
    fastTaken++;
    assert.ok(want, `case ${i}: accepted what zod refuses: ${JSON.stringify(msg, (_, v) => (v instanceof Uint8Array ? `<${v.length} bytes>` : v))}`);
    assert.equal(plain(got), plain(want), `case ${i}: outputs differ`);
  }
  assert.ok(fastTaken > 1000, `bytes path took ${fastTaken}`);
  // Cut frames are never read as messages.
  const whole = encodeRaw(VALID[1]);
  for (let cut = 0; cut < whole.length; cut += 7) assert.is(fastDecode(whole.subarray(0, cut)), null, `cut at ${cut}`);
});

test('what fastEncode writes is the message: any CBOR decoder reads it to what zod makes of the message', () => {
  const rand = rng(17);
  const w = new CborWriter(1024);
  let checked = 0;
  for (let i = 0; i < 20_000; i++) {
    const msg = i < VALID.length ? VALID[i] : mutate(VALID[i % VALID.length], rand);
    const want = zod(msg);
    if (!want) continue;
    const parts = fastEncode(w, want, 0);
    assert.ok(parts, `case ${i}: a hot message`);
    const frame = Buffer.concat(parts!);
    assert.equal(plain(zod(cbor.decode(frame))), plain(want), `case ${i}: cbor-x reads the message back`);
    assert.equal(plain(decodeMessage(frame)), plain(want), `case ${i}: and so do links`);
    checked++;
  }
  assert.ok(checked > 1000, `checked ${checked}`);
  assert.is(fastEncode(w, { type: 'coordinator', term: 1, id: 'p' }, 0), null, 'other messages take the general writer');
});

test('through decodeMessage a bad hot message still gets the schema error, and a wrong tensor size TENSOR_SIZE', () => {
  const bad = { ...VALID[4], seq: -1 };
  assert.throws(() => decodeMessage(encodeRaw(bad)), (e: unknown) => isMeshError(e, 'SCHEMA') && /seq/.test((e as Error).message));
  const wrongSize = { ...VALID[4], tensor: { dtype: 'uint8', shape: [8191], data: bytes(8192) } };
  assert.throws(() => decodeMessage(encodeRaw(wrongSize)), (e: unknown) => isMeshError(e, 'TENSOR_SIZE'));
  const unknownKeys = { ...VALID[2], extra: 1 };
  assert.equal(decodeMessage(encodeRaw(unknownKeys)), zod(VALID[2]));
});


test("a split head's steps take the general path both ways and arrive whole", () => {
  const head = { hidden: { dtype: 'float32', shape: [1, 1, 4], data: bytes(16) }, top: [[40_000, 12.5], [40_007, 12.499]], logits: { dtype: 'float32', shape: [1, 2], data: bytes(8) } };
  const messages = [
    { type: 'token', request: 'r1', step: 3, head, sentAt: 5, trace: [hop] },
    { type: 'forward', request: 'r1', origin: 'p1', planVersion: 2, step: 4, offset: 20, head, finish: false, sample: true, sampling, trace: [hop] },
    { type: 'token', request: 'r1', step: 3, head: { ...head, top: [[7, NaN]] } },
  ];
  const w = new CborWriter(1024);
  for (const m of messages) {
    const want = zod(m);
    assert.ok(want, `${m.type} is valid`);
    assert.is(fastEncode(w, want!, 0), null, 'the general writer');
    const frame = Buffer.concat(encodeMessageFragments(want!));
    assert.is(fastDecode(frame), null, 'the general reader');
    assert.equal(plain(decodeMessage(frame)), plain(want), 'every field arrives');
  }
  assert.is(zod({ type: 'token', request: 'r1', step: 3 }), null, 'a token message with neither a token nor a head');
  assert.is(zod({ type: 'token', request: 'r1', step: 3, token: 5, head }), null, 'or with both');
});

test.run();
