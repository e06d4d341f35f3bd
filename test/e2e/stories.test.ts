// The real tiny model (stories260K) through 1, 2 and 3 peers: greedy output is the published golden
// continuation and equals single-process mlx_lm token for token. Plus failure behaviour a client sees.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { convertedStories, createTestMesh, getJson, STORIES, TEST_PYTHON, type TestMesh, waitFor } from '../helpers/mesh.ts';
import { ROOT } from '../helpers/process.ts';

const GOLDEN =
  ', there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily';

async function readyMesh(n: number): Promise<TestMesh> {
  const mesh = await createTestMesh(n, { inference: true, model: STORIES });
  try {
    await waitFor(async () => (await getJson(`${mesh.nodes[0].api.url}/distributed/gpu-info`)).cluster_status === 'healthy', 60_000, 'a healthy cluster');
  } catch (err) {
    await mesh.stop();
    throw err;
  }
  return mesh;
}

/** Whether the engine would preload jemalloc here: its own rule (allocator.py), asked in a fresh process. */
function jemallocInstalled(): boolean {
  const code = 'from mlx_mesh_engine import allocator; print(allocator.chosen() or "")';
  const env = { ...process.env, PYTHONPATH: path.join(ROOT, 'peer', 'engine'), MLX_MESH_MALLOC: 'auto' };
  return execFileSync(TEST_PYTHON, ['-c', code], { env, encoding: 'utf8' }).trim().endsWith('libjemalloc.so.2');
}

function post(url: string, body: unknown) {
  return fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
}

async function sse(res: Response): Promise<any[]> {
  const text = await res.text();
  return text
    .split('\n\n')
    .filter((l) => l.startsWith('data: '))
    .map((l) => l.slice(6))
    .map((d) => (d === '[DONE]' ? '[DONE]' : JSON.parse(d)));
}

const convertedDir = (mesh: TestMesh) => convertedStories(mesh.nodes[0]);

for (const n of [1, 2, 3]) {
  test(`stories260K through ${n} peer(s): the golden continuation, identical to single-process mlx_lm`, async () => {
    const mesh = await readyMesh(n);
    try {
      const info = await getJson(`${mesh.nodes[0].api.url}/distributed/gpu-info`);
      assert.is(info.world_size, n);
      // auto on MLX's CPU build: the GGUF became float32 (the fast matmul there).
      assert.ok(info.devices.every((d: { gguf_weights: string }) => d.gguf_weights === 'float32'));
      // Each device says which BLAS its engine multiplies with (BLIS or OpenBLAS on a Linux machine with either).
      assert.ok(info.devices.every((d: { blas: unknown }) => typeof d.blas === 'string' && d.blas.length > 0), JSON.stringify(info.devices.map((d: { blas: unknown }) => d.blas)));
      // And which malloc: jemalloc where the system has it (CI installs libjemalloc2), else the system's.
      const mallocs = info.devices.map((d: { malloc: unknown }) => d.malloc);
      assert.equal(mallocs, Array(n).fill(jemallocInstalled() ? 'libjemalloc.so.2' : 'system'), JSON.stringify(mallocs));
      // And its scheduling policy: SCHED_BATCH on Linux, so MLX's worker thread stops taking the core per operation.
      const scheds = info.devices.map((d: { sched: unknown }) => d.sched);
      assert.equal(scheds, Array(n).fill(process.platform === 'linux' ? 'batch' : 'normal'), JSON.stringify(scheds));
      const ranges = info.devices.map((d: { layers: [number, number] }) => d.layers);
      assert.is(ranges[0][0], 0);
      assert.is(ranges[n - 1][1], 5, 'all 5 layers are covered');
      for (let i = 1; i < n; i++) assert.is(ranges[i][0], ranges[i - 1][1], 'contiguous ranges');
      // Ask the last peer: requests work from any peer, not only the coordinator.
      const res = await post(`${mesh.nodes[n - 1].api.url}/v1/completions`, { prompt: 'Once upon a time', max_tokens: 60, temperature: 0 });
      assert.is(res.status, 200);
      const body = await res.json();
      assert.is(body.choices[0].text, GOLDEN);
      assert.is(body.choices[0].finish_reason, 'length');
      assert.equal(body.usage, { prompt_tokens: 5, completion_tokens: 60, total_tokens: 65 });
      if (n === 2) {
        const ref = JSON.parse(
          execFileSync(TEST_PYTHON, [path.join(ROOT, 'test/helpers/mlx_reference.py'), convertedDir(mesh), '{"prompt":"Once upon a time"}', '60'], { encoding: 'utf8' }),
        );
        assert.equal(ref.prompt, [1, 403, 407, 261, 378]);
        assert.is(body.choices[0].text, ref.text, 'same as mlx_lm.stream_generate on the converted model');
      }
    } finally {
      await mesh.stop();
    }
  });
}

test('a peer joining or leaving gets a new plan that still computes the golden continuation', async () => {
  const mesh = await readyMesh(2);
  try {
    const url = mesh.nodes[0].api.url;
    const stagesWhenHealthy = (n: number) =>
      waitFor(async () => {
        const v = await getJson(`${url}/distributed/gpu-info`);
        return v.cluster_status === 'healthy' && v.devices.filter((d: { layers: unknown }) => d.layers).length === n ? v : null;
      }, 60_000, `${n} healthy stages`);
    const third = await mesh.add({ inference: true, model: STORIES });
    const three = await stagesWhenHealthy(3);
    assert.is(three.world_size, 3);
    const ask = async () => {
      const j = await (await post(`${url}/v1/completions`, { prompt: 'Once upon a time', max_tokens: 60, temperature: 0 })).json();
      return j.choices?.[0].text ?? JSON.stringify(j);
    };
    assert.is(await ask(), GOLDEN, 'through 3 stages');
    await third.stop();
    mesh.nodes.pop();
    const two = await stagesWhenHealthy(2);
    assert.is(two.world_size, 2);
    assert.is(await ask(), GOLDEN, 'back to 2 stages');
  } finally {
    await mesh.stop();
  }
});

test('a worker that restarts at once (same id, same membership) gets the plan and serves again', async () => {
  const mesh = await readyMesh(2);
  try {
    const worker = mesh.nodes.pop()!;
    const dataDir = worker.dataDir;
    await worker.stop();
    const again = await mesh.add({ inference: true, model: STORIES, dataDir });
    assert.is(again.peer.id, worker.peer.id);
    await waitFor(async () => {
      const v = await getJson(`${again.api.url}/distributed/gpu-info`);
      return v.cluster_status === 'healthy' && v.world_size === 2;
    }, 60_000, 'healthy again');
    const body = await (await post(`${again.api.url}/v1/completions`, { prompt: 'Once upon a time', max_tokens: 60, temperature: 0 })).json();
    assert.is(body.choices[0].text, GOLDEN);
  } finally {
    await mesh.stop();
  }
});

test('a peer too small for a layer is left out of the plan, and still answers its own clients', async () => {
  const mesh = await readyMesh(2);
  try {
    const tiny = await mesh.add({ inference: true, model: STORIES, usableMemoryBytes: 1000, name: 'tiny' });
    const info = await waitFor(async () => {
      const v = await getJson(`${tiny.api.url}/distributed/gpu-info`);
      return v.world_size === 3 && v.cluster_status === 'healthy' ? v : null;
    }, 60_000, 'the third peer in the cluster');
    const me = info.devices.find((d: { device_id: string }) => d.device_id === tiny.peer.id);
    assert.is(me.status, 'excluded');
    assert.is(me.layers, null);
    assert.match(JSON.stringify((await getJson(`${tiny.api.url}/cluster`)).plan.excluded), /less than one layer/);
    const body = await (await post(`${tiny.api.url}/v1/completions`, { prompt: 'Once upon a time', max_tokens: 60, temperature: 0 })).json();
    assert.is(body.choices[0].text, GOLDEN);
  } finally {
    await mesh.stop();
  }
});

test('streaming: SSE chunks that add up to the same text, usage on request, then [DONE]', async () => {
  const mesh = await readyMesh(2);
  try {
    const res = await post(`${mesh.nodes[1].api.url}/v1/completions`, {
      prompt: 'Once upon a time',
      max_tokens: 60,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    assert.is(res.headers.get('content-type'), 'text/event-stream');
    const events = await sse(res);
    assert.is(events.at(-1), '[DONE]');
    const chunks = events.slice(0, -1);
    const text = chunks.map((c) => c.choices[0]?.text ?? '').join('');
    assert.is(text, GOLDEN);
    assert.ok(chunks.length > 20, 'streamed in many pieces');
    assert.is(chunks.at(-2).choices[0].finish_reason, 'length');
    assert.equal(chunks.at(-1).usage, { prompt_tokens: 5, completion_tokens: 60, total_tokens: 65 });
    // Several requests at once, from different peers, each with its own KV caches: all exact.
    const many = await Promise.all(
      [0, 1, 0, 1].map((i) =>
        post(`${mesh.nodes[i].api.url}/v1/completions`, { prompt: 'Once upon a time', max_tokens: 60, temperature: 0 }).then((r) => r.json()),
      ),
    );
    for (const m of many) assert.is(m.choices[0].text, GOLDEN);
    // stop strings end the text before the stop, with finish_reason "stop"
    const stopped = await (await post(`${mesh.nodes[0].api.url}/v1/completions`, { prompt: 'Once upon a time', max_tokens: 60, temperature: 0, stop: ['Lily.'] })).json();
    assert.is(stopped.choices[0].text, ', there was a little girl named ');
    assert.is(stopped.choices[0].finish_reason, 'stop');
  } finally {
    await mesh.stop();
  }
});

test('bad requests get OpenAI-shaped 4xx errors and the server keeps serving', async () => {
  const mesh = await readyMesh(2);
  try {
    const url = mesh.nodes[1].api.url;
    const cases: Array<[unknown, number, string]> = [
      ['{not json', 400, 'invalid_json'],
      ['', 400, 'invalid_json'],
      [[1, 2], 400, 'invalid_json'],
      [{ prompt: 'x', temperature: -1 }, 400, 'invalid_value'],
      [{ prompt: 'x', top_p: 1.5 }, 400, 'invalid_value'],
      [{ prompt: 'x', max_tokens: 0 }, 400, 'invalid_value'],
      [{ prompt: 'x', n: 3 }, 400, 'unsupported_parameter'],
      [{ max_tokens: 5 }, 400, 'invalid_value'],
      [{ prompt: 'x', model: 'gpt-17' }, 404, 'model_not_found'],
      [{ prompt: 'Once upon a time '.repeat(700) }, 400, 'context_length_exceeded'],
    ];
    for (const [body, status, code] of cases) {
      const res = await post(`${url}/v1/completions`, body);
      const json = await res.json();
      assert.is(res.status, status, JSON.stringify(body).slice(0, 60));
      assert.is(json.error.code, code);
      assert.type(json.error.message, 'string');
      assert.type(json.error.type, 'string');
    }
    const chat = await post(`${url}/v1/chat/completions`, { messages: [] });
    assert.is(chat.status, 400);
    assert.match((await chat.json()).error.message, /messages/);
    assert.is((await fetch(`${url}/v1/nothing`)).status, 404);
    assert.is((await fetch(`${url}/v1/completions`)).status, 405);
    const models = await getJson(`${url}/v1/models`);
    assert.is(models.data[0].id, 'stories260K');
    const ok = await post(`${url}/v1/completions`, { prompt: 'Once upon a time', max_tokens: 5, temperature: 0 });
    assert.is(ok.status, 200, 'still serving');
  } finally {
    await mesh.stop();
  }
});

test('a model that cannot be found: requests get a 503 saying so, and the peer keeps running', async () => {
  const mesh = await createTestMesh(1, { inference: true, model: '/nowhere/missing.gguf' });
  try {
    const url = mesh.nodes[0].api.url;
    const err = await waitFor(async () => {
      const r = await post(`${url}/v1/completions`, { prompt: 'Once upon a time' });
      const j = await r.json();
      return r.status === 503 && /missing\.gguf/.test(j.error.message) ? j.error : null;
    }, 20_000, 'a 503 naming the model');
    assert.is(err.code, 'cluster_not_ready');
    assert.match(err.message, /does not exist/);
    assert.is((await getJson(`${url}/health`)).status, 'ok');
  } finally {
    await mesh.stop();
  }
});

test('an engine killed while idle is restarted and the peer stays in the cluster', async () => {
  const mesh = await readyMesh(2);
  try {
    const worker = mesh.nodes[1];
    const pid = worker.inference!.engine.pid!;
    process.kill(pid, 'SIGKILL');
    await waitFor(() => worker.inference!.engine.pid !== pid && worker.inference!.engine.state === 'ready', 30_000, 'a restarted engine');
    const info = await waitFor(async () => {
      const v = await getJson(`${mesh.nodes[0].api.url}/distributed/gpu-info`);
      return v.cluster_status === 'healthy' ? v : null;
    }, 10_000, 'healthy again');
    assert.is(info.world_size, 2);
    const body = await (await post(`${mesh.nodes[0].api.url}/v1/completions`, { prompt: 'Once upon a time', max_tokens: 60, temperature: 0 })).json();
    assert.is(body.choices[0].text, GOLDEN, 'the re-loaded layers compute the same');
  } finally {
    await mesh.stop();
  }
});

// Exactly the undisturbed text, the origin's engine too, a sampled stream and the give-up: test/e2e/engine-replay.test.ts.
test('an engine killed mid-request is restarted and the request goes on to its end, not a hang', async () => {
  const mesh = await readyMesh(2);
  try {
    const res = await post(`${mesh.nodes[0].api.url}/v1/completions`, { prompt: 'Once upon a time', max_tokens: 500, temperature: 0, stream: true });
    const reader = res.body!.getReader();
    await reader.read(); // the first chunk: generation is under way
    process.kill(mesh.nodes[1].inference!.engine.pid!, 'SIGKILL');
    let rest = '';
    const decoder = new TextDecoder();
    const started = Date.now();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      rest += decoder.decode(value);
    }
    assert.ok(Date.now() - started < 60_000, 'ended promptly');
    assert.not.match(rest, /"error"/);
    assert.match(rest, /"finish_reason":"length"/);
    assert.ok(rest.trimEnd().endsWith('data: [DONE]'));
  } finally {
    await mesh.stop();
  }
});

test.run();
