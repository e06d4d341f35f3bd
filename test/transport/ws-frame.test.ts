// RFC 6455 frames without sockets: headers a sender writes, and the parser fed in every possible split.
import { randomBytes } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { closePayload, frameHeader, Opcode, WsClose, WsFrameParser, WsProtocolError } from '../../transport/ws-frame.ts';

type Event = ['message', Buffer, boolean, number] | ['ping' | 'pong', Buffer] | ['close', number, string];

function parser(expectMasked: boolean, maxPayload = 1 << 20) {
  const events: Event[] = [];
  const p = new WsFrameParser(
    { maxPayload, expectMasked },
    {
      message: (fragments, binary) => events.push(['message', Buffer.concat(fragments), binary, fragments.length]),
      ping: (b) => events.push(['ping', Buffer.from(b)]),
      pong: (b) => events.push(['pong', Buffer.from(b)]),
      close: (code, reason) => events.push(['close', code, reason]),
    },
  );
  return { p, events };
}

/** One frame as a client with a real (random) masking key sends it: masked bytes. */
function maskedFrame(opcode: number, payload: Buffer, fin = true): Buffer {
  const head = frameHeader(opcode, payload.length, true, fin);
  const key = randomBytes(4);
  key.copy(head, head.length - 4);
  const body = Buffer.from(payload.map((b, i) => b ^ key[i & 3]));
  return Buffer.concat([head, body]);
}

test('headers use the shortest length form and a zero key when masked', () => {
  assert.equal([...frameHeader(Opcode.BINARY, 5, false)], [0x82, 5]);
  assert.equal([...frameHeader(Opcode.BINARY, 125, true)], [0x82, 0x80 | 125, 0, 0, 0, 0]);
  assert.equal([...frameHeader(Opcode.BINARY, 126, false)], [0x82, 126, 0, 126]);
  assert.equal([...frameHeader(Opcode.BINARY, 0x10000, false)], [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
  assert.equal([...frameHeader(Opcode.CONTINUATION, 1, false, false)], [0x00, 1]);
});

test('every split of a stream of frames gives the same messages, control frames in between', () => {
  const big = randomBytes(70_000);
  const stream = Buffer.concat([
    frameHeader(Opcode.BINARY, 3, false),
    Buffer.from([1, 2, 3]),
    frameHeader(Opcode.PING, 2, false),
    Buffer.from('hi'),
    frameHeader(Opcode.BINARY, big.length, false),
    big,
    frameHeader(Opcode.BINARY, 0, false),
    frameHeader(Opcode.CLOSE, 4, false),
    closePayload(4001, 'no'),
  ]);
  const expected = parser(false);
  expected.p.push(stream);
  assert.is(expected.events.length, 5);
  assert.equal(expected.events[2], ['message', big, true, 1]);
  assert.equal(expected.events[4], ['close', 4001, 'no']);
  // Cut at every offset around the headers, and into many small reads.
  for (const cut of [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 100, 70_012, 70_013, 70_014, 70_015]) {
    const { p, events } = parser(false);
    p.push(stream.subarray(0, cut));
    p.push(stream.subarray(cut));
    assert.equal(events, expected.events, `cut at ${cut}`);
  }
  const { p, events } = parser(false);
  for (let at = 0; at < stream.length; at += 7) p.push(stream.subarray(at, at + 7));
  assert.equal(events, expected.events);
});

test('a payload inside one read is a view of it; one spread over reads is gathered into one buffer', () => {
  const { p } = parser(false);
  const got: Buffer[][] = [];
  (p as unknown as { sink: { message: (f: Buffer[]) => void } }).sink.message = (f) => got.push(f);
  const one = Buffer.concat([frameHeader(Opcode.BINARY, 4, false), Buffer.from([9, 8, 7, 6])]);
  p.push(one);
  assert.is(got[0][0].buffer, one.buffer);
  const big = Buffer.concat([frameHeader(Opcode.BINARY, 10_000, false), randomBytes(10_000)]);
  p.push(big.subarray(0, 5000));
  p.push(big.subarray(5000));
  assert.is(got[1].length, 1);
  assert.is(got[1][0].length, 10_000);
  assert.ok(got[1][0].equals(big.subarray(4)));
});

test('masked frames from a client (any key) are unmasked; fragments come back as one message', () => {
  const { p, events } = parser(true);
  const a = randomBytes(300);
  const b = randomBytes(5);
  p.push(Buffer.concat([maskedFrame(Opcode.BINARY, a, false), maskedFrame(Opcode.PING, Buffer.from('x')), maskedFrame(Opcode.CONTINUATION, b, true)]));
  assert.equal(events, [
    ['ping', Buffer.from('x')],
    ['message', Buffer.concat([a, b]), true, 2],
  ]);
  // A zero key (peers' own frames) is left alone: same bytes.
  const { p: p2, events: e2 } = parser(true);
  p2.push(Buffer.concat([frameHeader(Opcode.BINARY, a.length, true), a]));
  assert.equal(e2, [['message', a, true, 1]]);
});

test('protocol violations fail with the close code RFC 6455 gives them', () => {
  const code = (expectMasked: boolean, bytes: Buffer, max = 1 << 20) => {
    const { p } = parser(expectMasked, max);
    try {
      p.push(bytes);
    } catch (err) {
      assert.instance(err, WsProtocolError);
      return (err as WsProtocolError).closeCode;
    }
    return null;
  };
  // Oversize: refused at the header, before its payload arrives.
  assert.is(code(false, frameHeader(Opcode.BINARY, 2000, false), 1000), WsClose.TOO_BIG);
  // Fragments adding up past the limit.
  assert.is(code(false, Buffer.concat([frameHeader(Opcode.BINARY, 600, false, false), Buffer.alloc(600), frameHeader(Opcode.CONTINUATION, 600, false)]), 1000), WsClose.TOO_BIG);
  assert.is(code(false, Buffer.from([0x82 | 0x40, 0])), WsClose.PROTOCOL_ERROR); // RSV1
  assert.is(code(true, Buffer.concat([frameHeader(Opcode.BINARY, 1, false), Buffer.from([1])])), WsClose.PROTOCOL_ERROR); // unmasked client frame
  assert.is(code(false, Buffer.concat([frameHeader(Opcode.BINARY, 1, true), Buffer.from([1])])), WsClose.PROTOCOL_ERROR); // masked server frame
  assert.is(code(false, Buffer.concat([frameHeader(Opcode.PING, 1, false, false), Buffer.from([1])])), WsClose.PROTOCOL_ERROR); // fragmented control
  assert.is(code(false, frameHeader(Opcode.PING, 126, false)), WsClose.PROTOCOL_ERROR); // control > 125
  assert.is(code(false, Buffer.concat([frameHeader(Opcode.CONTINUATION, 1, false), Buffer.from([1])])), WsClose.PROTOCOL_ERROR); // stray continuation
  assert.is(code(false, Buffer.from([0x83, 0])), WsClose.PROTOCOL_ERROR); // reserved opcode
  // After a violation nothing more is parsed.
  const { p, events } = parser(false, 10);
  assert.throws(() => p.push(frameHeader(Opcode.BINARY, 11, false)));
  p.push(Buffer.concat([frameHeader(Opcode.BINARY, 1, false), Buffer.from([1])]));
  assert.is(events.length, 0);
});

test.run();
