// CORS only when asked: no Access-Control-Allow-Origin by default; with --cors-origin, a preflight is
// answered and the header is sent for the listed origins only.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseCorsOrigins } from '../../src/api/cors.ts';
import { type MeshNode } from '../../src/node.ts';
import { startTestNode } from '../helpers/mesh.ts';

const LISTED = 'http://localhost:3000';
const OTHER = 'https://evil.example';
let plain: MeshNode;
let open: MeshNode;

test.before(async () => {
  plain = await startTestNode({ name: 'plain' });
  open = await startTestNode({ name: 'cors', corsOrigins: [LISTED, 'http://127.0.0.1:5173'], apiKey: 'k' });
});

test.after(async () => {
  await Promise.all([plain?.stop(), open?.stop()]);
});

const preflight = (node: MeshNode, origin: string) =>
  fetch(`${node.api.url}/v1/chat/completions`, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
  });

test('--cors-origin takes repeated and comma-separated origins, and only origins', () => {
  assert.equal(parseCorsOrigins(['http://a:1, https://b.example', 'http://c']), ['http://a:1', 'https://b.example', 'http://c']);
  assert.throws(() => parseCorsOrigins(['localhost:3000']), /is not an origin/);
  assert.throws(() => parseCorsOrigins(['http://a/path']), /is not an origin/);
  assert.throws(() => parseCorsOrigins(['*']), /is not an origin/);
});

test('by default no origin is allowed: no header, and a preflight is refused with the fix', async () => {
  const res = await fetch(`${plain.api.url}/cluster`, { headers: { origin: LISTED } });
  assert.is(res.status, 200);
  assert.is(res.headers.get('access-control-allow-origin'), null);
  await res.body?.cancel();
  const pre = await preflight(plain, LISTED);
  assert.is(pre.status, 403);
  assert.is(pre.headers.get('access-control-allow-origin'), null);
  assert.match((await pre.json()).error.message, /start the peer with --cors-origin http:\/\/localhost:3000/);
});

test('a listed origin gets its preflight answered (without the key) and the header on responses; others do not', async () => {
  const pre = await preflight(open, LISTED);
  assert.is(pre.status, 204);
  assert.is(pre.headers.get('access-control-allow-origin'), LISTED);
  assert.match(pre.headers.get('access-control-allow-methods')!, /POST/);
  assert.match(pre.headers.get('access-control-allow-headers')!, /authorization/);
  const get = await fetch(`${open.api.url}/cluster`, { headers: { origin: LISTED, authorization: 'Bearer k' } });
  assert.is(get.status, 200);
  assert.is(get.headers.get('access-control-allow-origin'), LISTED);
  assert.match(get.headers.get('vary')!, /Origin/);
  await get.body?.cancel();
  // A refusal reaches the page too, so it can show the reason.
  const refused = await fetch(`${open.api.url}/cluster`, { headers: { origin: LISTED } });
  assert.is(refused.status, 401);
  assert.is(refused.headers.get('access-control-allow-origin'), LISTED);
  await refused.body?.cancel();

  const other = await fetch(`${open.api.url}/cluster`, { headers: { origin: OTHER, authorization: 'Bearer k' } });
  assert.is(other.headers.get('access-control-allow-origin'), null);
  await other.body?.cancel();
  const otherPre = await preflight(open, OTHER);
  assert.is(otherPre.status, 403);
  assert.is(otherPre.headers.get('access-control-allow-origin'), null);
  await otherPre.body?.cancel();
});

test.run();
