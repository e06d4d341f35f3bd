// The completion text as it grows piece by piece: stop strings across pieces, nothing sent that is
// later taken back.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CompletionText, stopHoldback } from '../../peer/completion-text.ts';

function feed(stops: string[], pieces: string[]) {
  const sent: string[] = [];
  const out = new CompletionText(stops, (p) => sent.push(p));
  let stoppedAt = -1;
  pieces.forEach((p, i) => {
    if (stoppedAt < 0 && out.push(p)) stoppedAt = i;
  });
  out.flush();
  return { sent, text: out.text, stopped: out.stopped, stoppedAt };
}

test('without stop strings every piece goes out as it comes', () => {
  const r = feed([], ['Once', ' upon', ' a', ' time']);
  assert.equal(r.sent, ['Once', ' upon', ' a', ' time']);
  assert.is(r.text, 'Once upon a time');
  assert.is(r.stopped, false);
});

test('a stop string split over pieces ends the text before it, and its start is never sent', () => {
  const r = feed(['Lily.'], [', there', ' was a girl named Li', 'ly', '. She', ' ran']);
  assert.is(r.text, ', there was a girl named ');
  assert.is(r.sent.join(''), r.text);
  assert.is(r.stoppedAt, 3);
  assert.ok(r.sent.every((p) => !p.includes('Li')), 'the held-back start never went out');
});

test('a held-back start that turns out not to be a stop string is sent', () => {
  const r = feed(['Lily.'], ['named Li', 'ttle']);
  assert.is(r.sent.join(''), 'named Little');
  assert.is(r.stopped, false);
});

test('the earliest of several stop strings wins; a stop string in one piece ends it there', () => {
  assert.is(feed(['b', 'a'], ['xxab']).text, 'xx');
  assert.is(feed(['\n'], ['one\ntwo']).text, 'one');
});

test('a replacement character at the end (a partial UTF-8 character) waits', () => {
  const sent: string[] = [];
  const out = new CompletionText([], (p) => sent.push(p));
  out.push('caf\ufffd');
  assert.equal(sent, ['caf']);
  out.flush();
  assert.is(sent.join(''), 'caf\ufffd');
});

test('stopHoldback: the longest suffix that starts a stop string', () => {
  assert.is(stopHoldback('hello Li', ['Lily']), 2);
  assert.is(stopHoldback('hello', ['Lily']), 0);
  assert.is(stopHoldback('ab', ['abc', 'b']), 2);
});

test.run();
