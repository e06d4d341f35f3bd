// The one SSE parser the CLI and tests use, fed bytes split at awkward places.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { sseEvents } from '../src/sse.ts';

function body(parts: Uint8Array[]): NonNullable<Response['body']> {
  return new ReadableStream<Uint8Array<ArrayBuffer>>({
    start(c) {
      for (const p of parts) c.enqueue(new Uint8Array(p));
      c.close();
    },
  });
}

async function collect(parts: Uint8Array[]) {
  const out = [];
  for await (const e of sseEvents(body(parts))) out.push(e);
  return out;
}

test('events split across chunks, with names, multi-line data, comments and a split UTF-8 character', async () => {
  const bytes = new TextEncoder().encode(': keep-alive\n\ndata: {"t":"é"}\n\nevent: peer\ndata: a\ndata: b\n\ndata: [DONE]\n\n');
  const cuts = [3, 17, 19, 30, 41];
  const parts = cuts.map((c, i) => bytes.slice(i ? cuts[i - 1] : 0, c)).concat([bytes.slice(cuts.at(-1))]);
  assert.equal(await collect(parts), [
    { event: 'message', data: '{"t":"é"}' },
    { event: 'peer', data: 'a\nb' },
    { event: 'message', data: '[DONE]' },
  ]);
});

test('an unfinished last event is not yielded', async () => {
  assert.equal(await collect([new TextEncoder().encode('data: 1\n\ndata: 2')]), [{ event: 'message', data: '1' }]);
});

test.run();
