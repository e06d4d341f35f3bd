// Request traces and the load meter, without sockets: times come in as parameters.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LoadMeter } from '../../peer/load-meter.ts';
import { RequestTrace, TraceRing } from '../../peer/request-trace.ts';

const meta = (id: string) => ({ id, endpoint: '/v1/completions', generation: `g-${id}`, origin: 'a', promptTokens: 3 });

test('a trace sums compute and transfer per stage and times the tokens', () => {
  const t = new RequestTrace(meta('r1'), 1000);
  const hops = (c: number) => [
    { peer: 'a', computeMs: c, transferMs: 0, bytes: 0 },
    { peer: 'b', computeMs: 2 * c, transferMs: 1, bytes: 256 },
  ];
  assert.equal(t.onToken(0, hops(5), 1040, 1050), { first: true, latencyMs: 50 });
  assert.equal(t.onToken(1, hops(3), 1060, 1062), { first: false, latencyMs: 12 });
  const rec = t.finish({ finishReason: 'length', completionTokens: 2 }, 1070);
  assert.is(rec.ttftMs, 50);
  assert.is(rec.durationMs, 70);
  assert.is(rec.outcome, 'length');
  assert.equal(rec.stages, [
    { peer: 'a', steps: 2, computeMs: 8, transferMs: 0, bytes: 0 },
    { peer: 'b', steps: 2, computeMs: 16, transferMs: 2, bytes: 512 },
  ]);
  assert.is(rec.returnMs, 12);
  assert.is(rec.steps.length, 2);
});

test('a failed request says whether the client went away', () => {
  assert.is(new RequestTrace(meta('x')).finish({ error: 'gone', aborted: true }).outcome, 'aborted');
  assert.is(new RequestTrace(meta('y')).finish({ error: 'engine died', aborted: false }).outcome, 'error');
});

test('the ring keeps the last N requests, newest first', () => {
  const ring = new TraceRing(2);
  for (const id of ['r1', 'r2', 'r3']) ring.add(new RequestTrace(meta(id)).record);
  assert.is(ring.get('r1'), undefined);
  assert.equal(ring.list().map((r) => r.id), ['r3', 'r2']);
});

test('the load meter counts tokens over its window', () => {
  const m = new LoadMeter(2000);
  m.add(10, 0);
  m.add(30, 1500);
  assert.is(m.rate(1500), 20);
  assert.is(m.rate(2500), 15, 'the first sample left the window');
  assert.is(m.rate(10_000), 0);
});

test.run();
