// /metrics and /debug/requests on a 2-peer mesh with the tiny model: /metrics parses as Prometheus
// text, serving one known request moves the request, token and per-hop counters by exactly what that
// request did, and its trace shows the hops it took.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createTestMesh, getJson, STORIES, type TestMesh, waitFor } from '../helpers/mesh.ts';
import { count, has, scrape, value } from '../helpers/prometheus.ts';

let mesh: TestMesh;
let requestId = '';

test.before(async () => {
  mesh = await createTestMesh(2, { inference: true, model: STORIES });
  await waitFor(async () => (await getJson(`${mesh.nodes[0].api.url}/distributed/gpu-info`)).cluster_status === 'healthy', 60_000, 'a healthy cluster');
});
test.after(() => mesh.stop());

test('serving a known request moves the request, token and per-hop counters by the right amounts', async () => {
  {
    const [a, b] = mesh.nodes;
    const [beforeA, beforeB] = await Promise.all([scrape(a.api.url), scrape(b.api.url)]);

    // 5 prompt tokens + 60 generated: 64 positions go through both stages (the last token is never fed back).
    const res = await fetch(`${a.api.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'Once upon a time', max_tokens: 60, temperature: 0 }),
    });
    assert.is(res.status, 200);
    const body = await res.json();
    assert.equal(body.usage, { prompt_tokens: 5, completion_tokens: 60, total_tokens: 65 });
    assert.is(res.headers.get('x-request-id'), body.id, 'the header names the same request as the body');
    requestId = body.id;

    const [afterA, afterB] = await Promise.all([scrape(a.api.url), scrape(b.api.url)]);
    const delta = (after: typeof afterA, before: typeof afterA, name: string, labels: Record<string, string> = {}) =>
      value(after, name, labels) - value(before, name, labels);
    const positions = 64;
    const hiddenBytes = positions * 64 * 4; // hidden size 64, float32

    const ep = { endpoint: '/v1/completions' };
    assert.is(delta(afterA, beforeA, 'mlx_mesh_requests_total', { ...ep, outcome: 'length' }), 1);
    assert.is(delta(afterA, beforeA, 'mlx_mesh_http_requests_total', { ...ep, status: '200' }), 1);
    assert.is(delta(afterA, beforeA, 'mlx_mesh_prompt_tokens_total'), 5);
    assert.is(delta(afterA, beforeA, 'mlx_mesh_generated_tokens_total'), 60);
    assert.is(count(afterA, 'mlx_mesh_time_to_first_token_seconds') - count(beforeA, 'mlx_mesh_time_to_first_token_seconds'), 1);
    assert.is(count(afterA, 'mlx_mesh_token_latency_seconds') - count(beforeA, 'mlx_mesh_token_latency_seconds'), 59);
    // The peer that did not receive the request drove nothing.
    assert.is(delta(afterB, beforeB, 'mlx_mesh_generated_tokens_total'), 0);

    // Per hop: a (stage 0) sends every position's activations to b (stage 1); both computed all positions.
    assert.is(delta(afterA, beforeA, 'mlx_mesh_forward_bytes_total', { to: b.peer.id }), hiddenBytes);
    assert.is(delta(afterB, beforeB, 'mlx_mesh_hop_received_bytes_total', { from: a.peer.id }), hiddenBytes);
    assert.is(delta(afterA, beforeA, 'mlx_mesh_stage_tokens_total'), positions);
    assert.is(delta(afterB, beforeB, 'mlx_mesh_stage_tokens_total'), positions);
    const computeSteps = count(afterB, 'mlx_mesh_hop_compute_seconds') - count(beforeB, 'mlx_mesh_hop_compute_seconds');
    assert.ok(computeSteps >= 60, `stage 1 ran every step (${computeSteps})`);
    assert.ok(has(afterB, 'mlx_mesh_hop_transfer_seconds'));
    // The engine's own view of the same steps: one forward op per step, its time inside the engine within
    // the round trip the peer saw, and a's engine handing out every position's activations.
    const fwd = { op: 'forward' };
    assert.is(delta(afterB, beforeB, 'mlx_mesh_engine_ops', fwd), computeSteps);
    const inside = delta(afterB, beforeB, 'mlx_mesh_engine_op_compute_seconds', fwd);
    assert.ok(inside > 0 && inside <= delta(afterB, beforeB, 'mlx_mesh_engine_op_roundtrip_seconds', fwd), `compute ${inside} s`);
    assert.ok(delta(afterA, beforeA, 'mlx_mesh_engine_op_bytes', { ...fwd, direction: 'from_engine' }) > hiddenBytes);

    // The cluster's shape and the engine.
    assert.is(value(afterA, 'mlx_mesh_world_size'), 2);
    assert.is(value(afterA, 'mlx_mesh_is_coordinator'), 1);
    assert.ok(value(afterA, 'mlx_mesh_elections_total') >= 1);
    assert.ok(value(afterB, 'mlx_mesh_plan_version') >= 1);
    assert.is(value(afterB, 'mlx_mesh_engine_state', { state: 'ready' }), 1);
    assert.ok(value(afterB, 'mlx_mesh_engine_memory_bytes') > 0);
    assert.ok(value(afterB, 'mlx_mesh_engine_peak_rss_bytes') > value(afterB, 'mlx_mesh_engine_memory_bytes'));
    assert.ok(value(afterA, 'process_resident_memory_bytes') > 0);
    assert.ok(has(afterA, 'mlx_mesh_handshake_refusals_total') && has(afterA, 'mlx_mesh_frames_refused_total'));
    assert.is(value(afterA, 'mlx_mesh_peer_info', { peer: b.peer.id, name: 'p1' }), 1);
  }
});

test('GET /debug/requests/{id} shows the hops of that request with compute and transfer time per stage', async () => {
  const [a, b] = mesh.nodes;
  const trace = await getJson(`${a.api.url}/debug/requests/${requestId}`);
  assert.is(trace.id, requestId);
  assert.is(trace.outcome, 'length');
  assert.is(trace.completion_tokens, 60);
  assert.ok(trace.ttft_ms > 0 && trace.duration_ms >= trace.ttft_ms);
  assert.equal(trace.hops.map((h: { name: string }) => h.name), ['p0', 'p1', 'p0'], 'stage 0, stage 1, back to the origin');
  const [s0, s1, back] = trace.hops;
  assert.equal([s0.peer, s1.peer, back.peer], [a.peer.id, b.peer.id, a.peer.id]);
  assert.equal([s0.layers[0], s1.layers[1]], [0, 5]);
  assert.is(s0.steps, 60, 'every sampled step went through stage 0');
  assert.is(s1.steps, 60);
  assert.ok(s0.compute_ms > 0 && s1.compute_ms > 0);
  assert.ok(s1.transfer_ms >= 0 && back.transfer_ms >= 0);
  assert.ok(s1.bytes_in >= 59 * 64 * 4, 'stage 1 received the activations of every decode step');
  assert.is(trace.steps.length, 60);
  const listed = await getJson(`${a.api.url}/debug/requests`);
  assert.is(listed.requests[0].id, requestId);
  const missing = await fetch(`${a.api.url}/debug/requests/nope`);
  assert.is(missing.status, 404);
  assert.is((await missing.json()).error.code, 'not_found');
});

test.run();
