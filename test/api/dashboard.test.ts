// The dashboard's routes without a browser: the page and its assets are public static files, the
// stream that carries the cluster's state needs the key, and no URL reaches outside the assets folder.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startTestNode, waitFor } from '../helpers/mesh.ts';

const KEY = 'k-dashboard';

test('page and assets load without the key; the state stream needs it and carries the peers and events', async () => {
  const a = await startTestNode({ name: 'a', apiKey: KEY });
  const b = await startTestNode({ name: 'b', peers: [`127.0.0.1:${a.peer.port}`] });
  try {
    await waitFor(() => a.peer.membership.all().length === 1 && a.peer.leadership.coordinator, 10_000, 'a linked, elected pair');
    const page = await fetch(`${a.api.url}/`);
    assert.is(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /text\/html/);
    for (const [file, type] of [['app.js', /javascript/], ['style.css', /text\/css/], ['icon.svg', /svg/]] as const) {
      const res = await fetch(`${a.api.url}/dashboard/${file}`);
      assert.is(res.status, 200, file);
      assert.match(res.headers.get('content-type') ?? '', type);
    }
    for (const bad of ['..%2Fdashboard.ts', '..%2F..%2F..%2Fpackage.json', 'missing.js', 'README']) {
      assert.is((await fetch(`${a.api.url}/dashboard/${bad}`)).status, 404, bad);
    }

    assert.is((await fetch(`${a.api.url}/dashboard/stream`)).status, 401);
    const abort = new AbortController();
    const res = await fetch(`${a.api.url}/dashboard/stream`, { headers: { authorization: `Bearer ${KEY}` }, signal: abort.signal });
    assert.is(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = '';
    while (!/event: events\ndata: .*\n\n/.test(text)) text += (await reader.read()).value ?? '';
    abort.abort();
    const state = JSON.parse(/event: state\ndata: (.*)\n/.exec(text)![1]);
    assert.is(state.self, a.peer.id);
    assert.equal(state.devices.map((d: { name: string }) => d.name).sort(), ['a', 'b']);
    assert.equal(state.links.map((l: { a: string; b: string }) => [l.a, l.b].sort()), [[a.peer.id, b.peer.id].sort()]);
    const events = JSON.parse(/event: events\ndata: (.*)\n/.exec(text)![1]);
    assert.ok(events.some((e: { kind: string; text: string }) => e.kind === 'join' && /^b joined/.test(e.text)), JSON.stringify(events));
    assert.ok(events.some((e: { kind: string }) => e.kind === 'election'));
  } finally {
    await b.stop();
    await a.stop();
  }
});

test.run();
