// The API key: every route but /health refuses a request without the key or with another one (an
// OpenAI-shaped 401), serves it with the right one; an API beyond loopback without a key does not
// start; and the CLI commands that call the API send the key from --api-key or MLX_MESH_API_KEY.
import { execFile } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { checkExposure, isLoopback, keyMatches } from '../../src/api/auth.ts';
import { createTestMesh, STORIES, type TestMesh, tempDir, waitFor } from '../helpers/mesh.ts';
import { BIN, ROOT } from '../helpers/process.ts';

const KEY = 'sk-test-0123456789';
let mesh: TestMesh;
let api: string;

/** Method, path, body, and the status with the right key (the tiny model has no chat template: 400). */
const ROUTES: [string, string, unknown, number][] = [
  ['GET', '/distributed/gpu-info', undefined, 200],
  ['GET', '/cluster', undefined, 200],
  ['GET', '/metrics', undefined, 200],
  ['GET', '/v1/models', undefined, 200],
  ['GET', '/v1/models/stories260K', undefined, 200],
  ['GET', '/debug/requests', undefined, 200],
  ['GET', '/debug/requests/req-unknown', undefined, 404],
  ['POST', '/v1/completions', { prompt: 'Once upon a time', max_tokens: 2, temperature: 0 }, 200],
  ['POST', '/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 }, 400],
];

function call(method: string, path: string, body?: unknown, key?: string) {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (key !== undefined) headers.authorization = `Bearer ${key}`;
  return fetch(`${api}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
}

/** The CLI as a child process, asynchronously: this process hosts the peer it talks to. */
function cli(args: string[], env: Record<string, string> = {}) {
  return new Promise<{ code: number; out: string; err: string }>((resolve) =>
    execFile(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, MLX_MESH_API_KEY: '', ...env }, timeout: 120_000 }, (err, out, errText) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out, err: errText }),
    ),
  );
}

test.before(async () => {
  mesh = await createTestMesh(1, { inference: true, model: STORIES, apiKey: KEY });
  api = mesh.nodes[0].api.url;
  await waitFor(async () => (await call('GET', '/distributed/gpu-info', undefined, KEY).then((r) => r.json())).cluster_status === 'healthy', 60_000, 'a healthy cluster');
});

test.after(async () => {
  await mesh?.stop();
});

test('the key is compared whole; loopback is recognised; beyond loopback needs a key or --insecure-api', () => {
  assert.ok(keyMatches(KEY, KEY));
  assert.not.ok(keyMatches(KEY, `${KEY}x`));
  assert.not.ok(keyMatches(KEY, KEY.slice(0, -1)));
  assert.not.ok(keyMatches(KEY, ''));
  for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1']) assert.ok(isLoopback(h), h);
  for (const h of ['0.0.0.0', '::', '192.168.1.10', 'mac-mini.local']) assert.not.ok(isLoopback(h), h);
  assert.throws(() => checkExposure('0.0.0.0', undefined, false), /--api-key/);
  checkExposure('0.0.0.0', KEY, false);
  checkExposure('0.0.0.0', undefined, true);
  checkExposure('127.0.0.1', undefined, false);
});

test('/health needs no key; every other route answers 401 without the key and with a wrong one', async () => {
  const health = await call('GET', '/health');
  assert.is(health.status, 200);
  assert.is((await health.json()).status, 'ok');
  for (const [method, path, body] of [...ROUTES, ['GET', '/no/such/route', undefined] as const]) {
    const none = await call(method, path, body);
    assert.is(none.status, 401, `${method} ${path} without a key`);
    assert.is(none.headers.get('www-authenticate'), 'Bearer');
    const e = (await none.json()).error;
    assert.is(e.code, 'missing_api_key');
    assert.is(e.type, 'invalid_request_error');
    assert.match(e.message, /Authorization: Bearer/);
    const wrong = await call(method, path, body, 'sk-wrong');
    assert.is(wrong.status, 401, `${method} ${path} with a wrong key`);
    const w = (await wrong.json()).error;
    assert.is(w.code, 'invalid_api_key');
    assert.not.match(w.message, new RegExp(KEY), 'the key is never echoed');
    const basic = await fetch(`${api}${path}`, { method, headers: { authorization: `Basic ${Buffer.from(`u:${KEY}`).toString('base64')}` } });
    assert.is(basic.status, 401, `${method} ${path} with Basic auth`);
    await basic.body?.cancel();
  }
});

test('with the right key every route answers', async () => {
  for (const [method, path, body, status] of ROUTES) {
    const res = await call(method, path, body, KEY);
    assert.is(res.status, status, `${method} ${path}`);
    await res.body?.cancel();
  }
  const unknown = await call('GET', '/no/such/route', undefined, KEY);
  assert.is(unknown.status, 404);
  await unknown.body?.cancel();
});

test('status, generate and doctor send the key from --api-key or MLX_MESH_API_KEY', async () => {
  const refused = await cli(['status', '--api', api]);
  assert.is(refused.code, 1);
  assert.match(refused.err, /needs an API key: pass --api-key <key> or set MLX_MESH_API_KEY \[API_KEY_REFUSED\]/);
  const wrong = await cli(['status', '--api', api, '--api-key', 'sk-wrong']);
  assert.is(wrong.code, 1);
  assert.match(wrong.err, /refused the API key/);
  const flag = await cli(['status', '--api', api, '--api-key', KEY]);
  assert.is(flag.code, 0, flag.err);
  assert.match(flag.out, /^cluster healthy, 1 device\(s\)/);
  const env = await cli(['status', '--api', api, '--json'], { MLX_MESH_API_KEY: KEY });
  assert.is(env.code, 0, env.err);
  assert.is(JSON.parse(env.out).world_size, 1);

  const gen = await cli(['generate', '--api', api, '--raw', '--max-tokens', '8', '--json', 'Once upon a time'], { MLX_MESH_API_KEY: KEY });
  assert.is(gen.code, 0, gen.err);
  assert.is(JSON.parse(gen.out).text, ', there was a little girl');
  const genRefused = await cli(['generate', '--api', api, '--raw', 'Once upon a time']);
  assert.is(genRefused.code, 1);
  assert.match(genRefused.err, /\[API_KEY_REFUSED\]/);

  const localPeer = async (args: string[], env: Record<string, string> = {}) => {
    const r = await cli(['doctor', '--api', api, '--no-mdns', '--timeout', '1000', '--json', ...args], env);
    return (JSON.parse(r.out).checks as { title: string; status: string; detail: string; fix?: string }[]).find((c) => c.title === 'local peer')!;
  };
  const without = await localPeer([]);
  assert.is(without.status, 'fail');
  assert.match(without.detail, /refuses requests without an API key/);
  assert.match(without.fix!, /--api-key/);
  assert.is((await localPeer(['--api-key', KEY])).status, 'pass');
  assert.is((await localPeer([], { MLX_MESH_API_KEY: KEY })).status, 'pass');
});

test('join refuses an API beyond loopback without a key, with the fix; a bad --cors-origin is a usage error', async () => {
  const base = ['join', '--no-mdns', '--port', '0', '--api-port', '0', '--data-dir', tempDir()];
  const open = await cli([...base, '--api-host', '0.0.0.0']);
  assert.is(open.code, 2);
  assert.match(open.err, /the API would listen on 0\.0\.0\.0 without a key/);
  assert.match(open.err, /--api-key <key> \(or MLX_MESH_API_KEY\)/);
  assert.match(open.err, /--insecure-api/);
  assert.match(open.err, /\[INSECURE_API\]/);
  const empty = await cli([...base, '--api-key', '']);
  assert.is(empty.code, 2);
  assert.match(empty.err, /--api-key must not be empty/);
  const cors = await cli([...base, '--cors-origin', 'http://localhost:3000/app']);
  assert.is(cors.code, 2);
  assert.match(cors.err, /--cors-origin "http:\/\/localhost:3000\/app" is not an origin/);
});

test.run();
