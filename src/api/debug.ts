// GET /debug/requests and /debug/requests/{id}: the last requests this peer drove, each with the hops
// it took (compute and transfer time per stage), from peer/request-trace.ts.
import type { Inference } from '../../peer/inference.ts';
import type { Peer } from '../../peer/peer.ts';
import type { RequestRecord } from '../../peer/request-trace.ts';
import { HttpError, sendJson } from './http.ts';
import type { ApiServer } from './server.ts';

/** A trace as JSON, with each stage's peer named and its layer range from the current plan. */
export function traceView(rec: RequestRecord, peer: Peer, inference: Inference) {
  const names = new Map(peer.live().map((p) => [p.id, p.name]));
  const layers = new Map(inference.plan?.stages.map((s) => [s.id, s.layers]) ?? []);
  return {
    id: rec.id,
    endpoint: rec.endpoint,
    state: rec.state,
    outcome: rec.outcome,
    error: rec.error,
    origin: rec.origin,
    started_at: new Date(rec.startedAt).toISOString(),
    prompt_tokens: rec.promptTokens,
    completion_tokens: rec.completionTokens,
    ttft_ms: rec.ttftMs,
    duration_ms: rec.durationMs,
    hops: [
      ...rec.stages.map((s) => ({
        peer: s.peer,
        name: names.get(s.peer) ?? null,
        layers: layers.get(s.peer) ?? null,
        steps: s.steps,
        compute_ms: s.computeMs,
        transfer_ms: s.transferMs,
        bytes_in: s.bytes,
      })),
      { peer: rec.origin, name: names.get(rec.origin) ?? null, return: true, transfer_ms: rec.returnMs },
    ],
    steps: rec.steps.map((s) => ({
      step: s.step,
      hops: s.hops.map((h) => ({ peer: h.peer, compute_ms: h.computeMs, transfer_ms: h.transferMs, bytes_in: h.bytes })),
      return_ms: s.returnMs,
    })),
  };
}

export function registerDebugRoutes(api: ApiServer, peer: Peer, inference: Inference): void {
  api.route('GET', '/debug/requests', (_q, res) =>
    sendJson(res, 200, {
      requests: inference.traces.list().map((r) => ({ id: r.id, endpoint: r.endpoint, state: r.state, outcome: r.outcome, started_at: new Date(r.startedAt).toISOString(), ttft_ms: r.ttftMs, duration_ms: r.durationMs, completion_tokens: r.completionTokens })),
    }),
  );
  api.route('GET', '/debug/requests/:id', (_q, res, _url, params) => {
    const rec = inference.traces.get(params.id);
    if (!rec) throw new HttpError(404, `no request ${params.id} among the last ones this peer drove`, 'invalid_request_error', 'not_found', 'id');
    sendJson(res, 200, traceView(rec, peer, inference));
  });
}
