// Text that cannot be encoded never hangs a request: a lone UTF-16 surrogate is valid JSON, but no
// UTF-8 encoder can carry it, so the API refuses it with a 400 naming where it is. A real peer with
// the tiny model behind the API.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createTestMesh, getJson, STORIES, type TestMesh, waitFor } from '../helpers/mesh.ts';

let mesh: TestMesh;
let url = '';

test.before(async () => {
  mesh = await createTestMesh(1, { inference: true, model: STORIES });
  url = mesh.nodes[0].api.url;
  await waitFor(async () => (await getJson(`${url}/distributed/gpu-info`)).cluster_status === 'healthy', 60_000, 'a healthy peer');
});

test.after(async () => {
  await mesh?.stop();
});

/** POSTs raw JSON text (JSON.stringify would escape the surrogate differently) with a generous deadline. */
async function post(path: string, json: string): Promise<{ status: number; body: any }> {
  const res = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: json,
    signal: AbortSignal.timeout(30_000),
  });
  return { status: res.status, body: await res.json() };
}

test('a lone surrogate in a prompt is a 400 naming the parameter and the position, not a hang', async () => {
  const { status, body } = await post('/v1/completions', '{"prompt":"Once upon \\ud800 a time","max_tokens":4}');
  assert.is(status, 400);
  assert.is(body.error.type, 'invalid_request_error');
  assert.is(body.error.code, 'invalid_unicode');
  assert.is(body.error.param, 'prompt');
  assert.match(body.error.message, /character 10/);
  assert.match(body.error.message, /\\ud800/);
});

test('a lone low surrogate in a chat message names the message', async () => {
  const { status, body } = await post(
    '/v1/chat/completions',
    '{"messages":[{"role":"user","content":"hi"},{"role":"user","content":"ok \\udc00"}],"max_tokens":4}',
  );
  assert.is(status, 400);
  assert.is(body.error.param, 'messages[1].content');
  assert.match(body.error.message, /character 3/);
});

test('a surrogate pair (an emoji) is well-formed text and is served', async () => {
  const { status, body } = await post('/v1/completions', '{"prompt":"Once upon a time \\ud83d\\ude00","max_tokens":4,"temperature":0}');
  assert.is(status, 200, JSON.stringify(body));
  assert.is(body.usage.completion_tokens, 4);
});

test.run();
