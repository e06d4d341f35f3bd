// The engine stream's frame reader fed straight with bytes: chunk boundaries anywhere, no Python.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { isMeshError } from '../../core/errors.ts';
import { FrameReader } from '../../peer/frame-reader.ts';

function framed(...payloads: Buffer[]): Buffer {
  return Buffer.concat(
    payloads.flatMap((p) => {
      const h = Buffer.alloc(4);
      h.writeUInt32BE(p.length);
      return [h, p];
    }),
  );
}

function collect(max = 1 << 30) {
  const frames: Buffer[] = [];
  return { frames, reader: new FrameReader(max, (f) => frames.push(Buffer.from(f))) };
}

const a = Buffer.from('first frame');
const b = Buffer.alloc(70_000, 7);
const empty = Buffer.alloc(0);

test('several frames in one chunk come out in order', () => {
  const { frames, reader } = collect();
  reader.push(framed(a, empty, b));
  assert.equal(frames, [a, empty, b]);
  assert.is(reader.partialBytes, 0);
});

test('any split of the stream gives the same frames: split headers, split payloads, one byte at a time', () => {
  const stream = framed(a, b, empty, a);
  for (const cut of [1, 2, 3, 4, 5, 15, 16, 17, 1000, 70_013, 70_018]) {
    const { frames, reader } = collect();
    reader.push(stream.subarray(0, cut));
    reader.push(stream.subarray(cut));
    assert.equal(frames, [a, b, empty, a], `cut at ${cut}`);
  }
  const { frames, reader } = collect();
  for (let i = 0; i < stream.length; i++) reader.push(stream.subarray(i, i + 1));
  assert.equal(frames, [a, b, empty, a], 'one byte at a time');
});

test('a frame cut off mid-way is reported as partial, not delivered', () => {
  const { frames, reader } = collect();
  const stream = framed(a, b);
  reader.push(stream.subarray(0, stream.length - 10));
  assert.equal(frames, [a]);
  assert.is(reader.partialBytes, 4 + b.length - 10);
});

test('an oversize length is an error before any of its payload is buffered', () => {
  const frames: Buffer[] = [];
  const header = Buffer.alloc(4);
  header.writeUInt32BE(1 << 20);
  for (const chunks of [[Buffer.concat([framed(a), header])], [framed(a), header.subarray(0, 2), header.subarray(2)]]) {
    frames.length = 0;
    const r = new FrameReader(1024, (f) => frames.push(Buffer.from(f)));
    let err: unknown;
    try {
      for (const c of chunks) r.push(c);
    } catch (e) {
      err = e;
    }
    assert.ok(isMeshError(err, 'FRAME_TOO_LARGE'), String(err));
    assert.equal(frames, [a], 'frames before the bad one were delivered');
  }
});

/** Feeds the stream as a socket with `onread` would: each read into nextBuffer(), at most `cap` bytes. */
function readInPlace(reader: FrameReader, stream: Buffer, cap: number): Buffer[] {
  const targets: Buffer[] = [];
  for (let at = 0; at < stream.length; ) {
    const into = reader.nextBuffer();
    const n = Math.min(into.length, cap, stream.length - at);
    stream.copy(into, 0, at, at + n);
    targets.push(into);
    reader.filled(n);
    at += n;
  }
  return targets;
}

test('reads in place give the same frames for any read size; a large frame is filled where it is delivered', () => {
  const big = Buffer.alloc(300_000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7919) & 0xff;
  const stream = framed(a, big, empty, a, b);
  for (const cap of [1, 3, 4096, 65_536, 1 << 20]) {
    const frames: Buffer[] = [];
    const reader = new FrameReader(1 << 30, (f) => frames.push(f)); // kept as delivered, not copied
    const targets = readInPlace(reader, stream, cap);
    assert.equal(frames, [a, big, empty, a, b], `reads of at most ${cap} bytes`);
    assert.is(reader.partialBytes, 0);
    if (cap >= 4096) {
      // After the scratch read that held its start, the big frame's bytes went straight into it.
      assert.ok(targets.some((t) => t.buffer === frames[1].buffer), `reads of ${cap}: the big frame was read into`);
    }
  }
});

test('reads in place: an oversize length is an error before any of its payload is read', () => {
  const header = Buffer.alloc(4);
  header.writeUInt32BE(1 << 20);
  const frames: Buffer[] = [];
  const r = new FrameReader(1024, (f) => frames.push(Buffer.from(f)));
  assert.throws(() => readInPlace(r, Buffer.concat([framed(a), header]), 1 << 16), (e: unknown) => isMeshError(e, 'FRAME_TOO_LARGE'));
  assert.equal(frames, [a]);
});

test.run();
