// The dashboard's routes without a browser: the page and its assets are public static files, the
// stream that carries the cluster's state needs the key, and no URL reaches outside the assets folder.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startTestNode, waitFor } from '../helpers/mesh.ts';
import { scrape, value } from '../helpers/prometheus.ts';

const KEY = 'k-dashboard';

type MeshEvent = { kind: string; text: string };

/** The first two events of a dashboard stream: the state and the recent events. */
async function streamStart(url: string, headers: Record<string, string> = {}): Promise<{ state: any; events: MeshEvent[] }> {
  const res = await fetch(url, { headers });
  assert.is(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = '';
  while (!/event: events\ndata: .*\n\n/.test(text)) text += (await reader.read()).value ?? '';
  await reader.cancel();
  const data = (name: string) => JSON.parse(new RegExp(`event: ${name}\ndata: (.*)\n`).exec(text)![1]);
  return { state: data('state'), events: data('events') };
}

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
    const { state, events } = await streamStart(`${a.api.url}/dashboard/stream`, { authorization: `Bearer ${KEY}` });
    assert.is(state.self, a.peer.id);
    assert.equal(state.devices.map((d: { name: string }) => d.name).sort(), ['a', 'b']);
    assert.equal(state.links.map((l: { a: string; b: string }) => [l.a, l.b].sort()), [[a.peer.id, b.peer.id].sort()]);
    assert.ok(events.some((e) => e.kind === 'join' && /^b joined/.test(e.text)), JSON.stringify(events));
    assert.ok(events.some((e) => e.kind === 'election'));
  } finally {
    await b.stop();
    await a.stop();
  }
});

test('a refused handshake shows in the recent events with its reason, and in /metrics', async () => {
  const a = await startTestNode({ name: 'a' });
  const stranger = await startTestNode({ name: 'stranger', cluster: 'elsewhere', peers: [`127.0.0.1:${a.peer.port}`] });
  try {
    const refused = await waitFor(async () => (await streamStart(`${a.api.url}/dashboard/stream`)).events.find((e) => e.kind === 'refused'), 10_000, 'a refused handshake event');
    assert.match(refused!.text, /CLUSTER_MISMATCH/);
    assert.match(refused!.text, /elsewhere/);
    assert.ok(value(await scrape(a.api.url), 'mlx_mesh_handshake_refusals_total', { reason: 'CLUSTER_MISMATCH' }) >= 1);
  } finally {
    await stranger.stop();
    await a.stop();
  }
});

test.run();
