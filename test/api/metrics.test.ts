// /metrics on a 2-peer mesh with the tiny model: it parses as Prometheus text, and serving one known
// request moves the request, token and per-hop counters by exactly what that request did.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createTestMesh, getJson, STORIES, waitFor } from '../helpers/mesh.ts';
import { count, has, scrape, value } from '../helpers/prometheus.ts';

test('serving a known request moves the request, token and per-hop counters by the right amounts', async () => {
  const mesh = await createTestMesh(2, { inference: true, model: STORIES });
  try {
    const [a, b] = mesh.nodes;
    await waitFor(async () => (await getJson(`${a.api.url}/distributed/gpu-info`)).cluster_status === 'healthy', 60_000, 'a healthy cluster');
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

    // The cluster's shape and the engine.
    assert.is(value(afterA, 'mlx_mesh_world_size'), 2);
    assert.is(value(afterA, 'mlx_mesh_is_coordinator'), 1);
    assert.ok(value(afterA, 'mlx_mesh_elections_total') >= 1);
    assert.ok(value(afterB, 'mlx_mesh_plan_version') >= 1);
    assert.is(value(afterB, 'mlx_mesh_engine_state', { state: 'ready' }), 1);
    assert.ok(value(afterB, 'mlx_mesh_engine_memory_bytes') > 0);
    assert.ok(value(afterA, 'process_resident_memory_bytes') > 0);
    assert.ok(has(afterA, 'mlx_mesh_handshake_refusals_total') && has(afterA, 'mlx_mesh_frames_refused_total'));
    assert.is(value(afterA, 'mlx_mesh_peer_info', { peer: b.peer.id, name: 'p1' }), 1);
  } finally {
    await mesh.stop();
  }
});

test.run();
