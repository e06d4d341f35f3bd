// The hand-written CBOR writer and reader against cbor-x (an independent, general implementation):
// what one writes the other reads to the same value, both ways, on random plain values; whatever the
// reader leaves (NOT_PLAIN) is exactly what it must not guess at; frames handed out are never rewritten.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Encoder } from 'cbor-x';
import { CborWriter } from '../../transport/cbor-writer.ts';
import { NOT_PLAIN, readCbor } from '../../transport/cbor-reader.ts';
import { CBOR_OPTIONS } from '../../transport/codec.ts';

const cborx = new Encoder(CBOR_OPTIONS);
const LARGE = 1024;

/** A seeded generator (mulberry32): failures name their seed. */
function rng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const EDGE_INTS = [0, 1, 23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1];
const STRINGS = ['', 'a', 'forward', 'x'.repeat(23), 'y'.repeat(24), 'z'.repeat(63), 'w'.repeat(64), 'é', 'naïve café', '日本語のテキスト', '🙂 emoji', 'v'.repeat(70000)];

function randomValue(r: () => number, depth: number): unknown {
  const k = Math.floor(r() * (depth > 3 ? 7 : 10));
  switch (k) {
    case 0: {
      const n = EDGE_INTS[Math.floor(r() * EDGE_INTS.length)] + (r() < 0.3 ? -1 : 0);
      return r() < 0.5 ? Math.max(n, 0) : -Math.max(n, 0) - (r() < 0.5 ? 1 : 0);
    }
    case 1:
      return [0.5, -1.25, 1e300, -1e-300, 3.141592653589793, 2 ** 53, -(2 ** 60), Infinity, -Infinity][Math.floor(r() * 9)];
    case 2:
      return STRINGS[Math.floor(r() * STRINGS.length)] + (r() < 0.5 ? String(Math.floor(r() * 1000)) : '');
    case 3:
      return [true, false, null, undefined][Math.floor(r() * 4)];
    case 4:
    case 5: {
      const n = [0, 1, 23, 24, LARGE - 1, LARGE, 70_000][Math.floor(r() * 7)];
      const b = new Uint8Array(n);
      for (let i = 0; i < n; i += 97) b[i] = Math.floor(r() * 256);
      return b;
    }
    case 6:
      return Math.floor(r() * 1e9) / 7; // a float
    case 7:
      return Array.from({ length: Math.floor(r() * 5) }, () => randomValue(r, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      const n = Math.floor(r() * 6);
      for (let i = 0; i < n; i++) o[['type', 'seq', 'hidden', 'data', 'ключ', `k${Math.floor(r() * 40)}`][Math.floor(r() * 6)]] = randomValue(r, depth + 1);
      return o;
    }
  }
}

function concat(parts: Uint8Array[]): Buffer {
  return Buffer.concat(parts);
}

/** Byte strings as hex, whatever Uint8Array class they come back as (cbor-x and the reader give Buffers). */
function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return `bytes:${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')}`;
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

test('what the writer writes, cbor-x reads to the same value (random values, 2,000 seeds)', () => {
  const w = new CborWriter(LARGE);
  for (let seed = 1; seed <= 2000; seed++) {
    const value = { v: randomValue(rng(seed), 0) };
    const parts = w.parts(value);
    assert.ok(parts, `seed ${seed}: writer refused a plain value`);
    assert.equal(plain(cborx.decode(concat(parts!))), plain(value), `seed ${seed}`);
    assert.equal(plain(cborx.decode(w.join(value)!)), plain(value), `seed ${seed}: joined`);
  }
});

test('what cbor-x writes, the reader reads to the same value (random values, 2,000 seeds)', () => {
  for (let seed = 1; seed <= 2000; seed++) {
    const value = { v: randomValue(rng(seed), 0) };
    const got = readCbor(cborx.encode(value));
    assert.is.not(got, NOT_PLAIN, `seed ${seed}: reader gave up on cbor-x's frame`);
    assert.equal(plain(got), plain(value), `seed ${seed}`);
  }
});

test('integers take the shortest head; byte strings come back as views of the frame', () => {
  const w = new CborWriter(LARGE);
  const hex = (v: unknown) => Buffer.from(w.join(v)!).toString('hex');
  assert.is(hex(23), '17');
  assert.is(hex(24), '1818');
  assert.is(hex(256), '190100');
  assert.is(hex(65536), '1a00010000');
  assert.is(hex(2 ** 32 - 1), '1affffffff');
  assert.is(hex(2 ** 32), 'fb41f0000000000000', 'from 2^32 on a float, as cbor-x writes it (it reads 64-bit integers as BigInts)');
  assert.is(hex(-(2 ** 32)), '3affffffff');
  assert.is(hex(-1), '20');
  assert.is(hex(-25), '3818');
  assert.is(hex(1.5), 'fb3ff8000000000000');
  assert.is(hex({ a: [true, null, undefined] }), 'a1616183f5f6f7');
  const frame = Buffer.from(w.join({ data: new Uint8Array([1, 2, 3]) })!);
  const back = readCbor(frame) as { data: Uint8Array };
  assert.is(back.data.buffer, frame.buffer, 'a view, not a copy');
  assert.equal([...back.data], [1, 2, 3]);
});

test('text is always UTF-8: a lone surrogate (a valid JS string) is written as U+FFFD', () => {
  const frame = new CborWriter(LARGE).join({ text: 'a\ud800b' })!;
  assert.ok(Buffer.from(frame).includes(Buffer.from('a\ufffdb')));
  assert.equal(readCbor(frame), { text: 'a\ufffdb' });
});

test('byte strings of the large size are parts of their own, in the map\'s own key order', () => {
  const w = new CborWriter(LARGE);
  const big = new Uint8Array(LARGE).fill(5);
  const big2 = new Uint8Array(3 * LARGE).fill(6);
  const value = { type: 'x', a: big, mid: 1, b: { data: big2 }, end: 'z' };
  const parts = w.parts(value)!;
  assert.is(parts.length, 5);
  assert.is(parts[1], big, 'the first tensor goes out from its own memory');
  assert.is(parts[3], big2, 'so does the second');
  assert.equal(Object.keys(cborx.decode(concat(parts))), ['type', 'a', 'mid', 'b', 'end']);
  assert.is(w.parts({ small: new Uint8Array(LARGE - 1) })!.length, 1, 'a smaller one is copied with the rest');
});

test('values outside the plain subset are refused (the codec then uses cbor-x)', () => {
  const w = new CborWriter(LARGE);
  class Point {
    x = 1;
  }
  for (const odd of [new Map([[1, 2]]), new Date(0), 10n, new Float32Array(2), new Point(), Symbol('s'), () => 1]) {
    assert.is(w.parts({ ok: 1, odd }), null, String(odd));
  }
  const deep: Record<string, unknown> = {};
  let at = deep;
  for (let i = 0; i < 40; i++) at = (at.next = {}) as Record<string, unknown>;
  assert.is(w.parts(deep), null, 'deeper than the writer goes');
  // A refusal leaves the writer as it was: the next frame is whole.
  assert.equal(cborx.decode(w.join({ after: 'refusal' })!), { after: 'refusal' });
});

test('the reader leaves to cbor-x what it does not read: tags, indefinite lengths, small floats, big ints, odd keys, extra or missing bytes', () => {
  const cases: Record<string, string> = {
    tag: 'c11a514b67b0',
    'indefinite map': 'bf6161 01ff',
    'indefinite array': '9f01ff',
    'indefinite text': '7f6161ff',
    'half float': 'f93c00',
    'single float': 'fa3f800000',
    '64-bit integer': '1b0000000000000001',
    'integer key': 'a10102',
    '__proto__ key': 'a1695f5f70726f746f5f5f01',
    'trailing byte': '0101',
    'simple value 16': 'f0',
    'reserved info': '1c',
  };
  for (const [name, hex] of Object.entries(cases)) {
    assert.is(readCbor(Buffer.from(hex.replace(/ /g, ''), 'hex')), NOT_PLAIN, name);
  }
  const whole = Buffer.from(new CborWriter(LARGE).join({ type: 'forward', tokens: [1, 2, 300], hidden: new Uint8Array(40) })!);
  for (let cut = 0; cut < whole.length; cut++) assert.is(readCbor(whole.subarray(0, cut)), NOT_PLAIN, `cut at ${cut}`);
  let nested = Buffer.from('01', 'hex');
  for (let i = 0; i < 40; i++) nested = Buffer.concat([Buffer.from([0x81]), nested]);
  assert.is(readCbor(nested), NOT_PLAIN, 'deeper than the reader goes');
  assert.is(readCbor(Buffer.from('9bffffffff', 'hex')), NOT_PLAIN, 'an array longer than the frame');
});

test('frames already handed out are never written over (the writer moves to a new buffer when full)', () => {
  const w = new CborWriter(LARGE);
  const kept: Array<[unknown, Uint8Array[]]> = [];
  for (let i = 0; i < 3000; i++) {
    const value = { step: i, text: 'x'.repeat(i % 97), small: new Uint8Array(i % LARGE).fill(i & 0xff) };
    kept.push([value, w.parts(value)!]);
  }
  for (const [value, parts] of kept) assert.equal(plain(cborx.decode(concat(parts))), plain(value));
});

test('repeated short strings (keys, types, ids) read the same, and a colliding slot is never mistaken', () => {
  // Many distinct short keys cycle through the reader's string slots; each must read as itself.
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 3000; i++) {
      const value = { [`k${i}`]: `v${i}`, type: 'forward' };
      assert.equal(readCbor(cborx.encode(value)), value);
    }
  }
});

test.run();
