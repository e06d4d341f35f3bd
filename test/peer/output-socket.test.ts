// The engine's output socket with a real child process writing frames to its fd 1.
import { spawn } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { isMeshError } from '../../core/errors.ts';
import { FrameReader } from '../../peer/frame-reader.ts';
import { openOutputSocket } from '../../peer/output-socket.ts';

// Frames of 11 bytes, 3 MiB and 0 bytes, then (with "oversize") a length past the reader's limit.
const CHILD = `
const frame = (p) => { const h = Buffer.alloc(4); h.writeUInt32BE(p.length); return Buffer.concat([h, p]); };
const big = Buffer.alloc(3 << 20); for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
const out = [frame(Buffer.from('first frame')), frame(big), frame(Buffer.alloc(0))];
if (process.argv[1] === 'oversize') out.push(Buffer.from([0x7f, 0, 0, 0]));
require('fs').writeSync(1, Buffer.concat(out));
`;

async function run(mode: string) {
  const frames: Buffer[] = [];
  const errors: Error[] = [];
  let failed!: () => void;
  const failure = new Promise<void>((resolve) => (failed = resolve));
  const reader = new FrameReader(16 << 20, (f) => frames.push(f));
  const out = await openOutputSocket(reader, (e) => (errors.push(e), failed()));
  const closed = new Promise<void>((resolve) => out.reader.once('close', resolve));
  const child = spawn(process.execPath, ['-e', CHILD, mode], { stdio: ['ignore', out.childEnd, 'inherit'] });
  out.childEnd.destroy();
  await new Promise((resolve) => child.once('exit', resolve));
  // A reader that gave up on the stream stops reading: it closes only when destroyed.
  await (mode === 'oversize' ? failure : closed);
  out.reader.destroy();
  await closed;
  return { frames, errors };
}

test("a child's frames arrive bit-exact, and the socket closes when the child exits", async () => {
  const { frames, errors } = await run('plain');
  assert.equal(errors, []);
  assert.is(frames.length, 3);
  assert.is(frames[0].toString(), 'first frame');
  assert.is(frames[1].length, 3 << 20);
  assert.ok(frames[1].every((v, i) => v === ((i * 31) & 0xff)), 'the 3 MiB frame is bit-exact');
  assert.is(frames[2].length, 0);
});

test('an oversize length reaches onError with FRAME_TOO_LARGE; the frames before it were delivered', async () => {
  const { frames, errors } = await run('oversize');
  assert.is(frames.length, 3);
  assert.is(errors.length, 1);
  assert.ok(isMeshError(errors[0], 'FRAME_TOO_LARGE'), String(errors[0]));
});

test.run();
