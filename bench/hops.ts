// Where a request's time goes, per pipeline stage, from each peer's /metrics read before and after:
// compute inside the engine, the rest of the engine round trip (stdio framing, queueing), the transfer
// of a step into the stage over the link, and the bytes. What is left of the client's wall time is
// HTTP, the origin's own work and the token's way back.

export interface StageTotals {
  forwards: number;
  computeMs: number;
  roundTripMs: number;
  bytesToEngine: number;
  bytesFromEngine: number;
  /** Steps received over links, their summed transfer time and bytes (mlx_mesh_hop_*{from}). */
  hopsIn: number;
  transferMs: number;
  bytesIn: number;
  /** Of the forwards: the batched ones (forward_batch ops) and their compute. */
  batches: number;
  batchComputeMs: number;
  /** Forwards through this stage counted one per request (a batch of B counts B). */
  steps: number;
}

export interface HopFigures {
  /** Forward ops (single and batched) this stage's engine answered. */
  forwards: number;
  compute_ms: number;
  /** Engine round trip minus compute: framing, pipes and queueing between the peer and its engine. */
  engine_io_ms: number;
  bytes_to_engine: number;
  bytes_from_engine: number;
  /** Steps that reached this stage over a link, their transfer time (wall clocks) and bytes. */
  hops_in: number;
  transfer_ms: number;
  bytes_in: number;
}

const FORWARD_OPS = new Set(['forward', 'forward_batch']);

/** One peer's totals from its /metrics text. */
export function stageTotals(metrics: string): StageTotals {
  const t: StageTotals = {
    forwards: 0, computeMs: 0, roundTripMs: 0, bytesToEngine: 0, bytesFromEngine: 0, hopsIn: 0, transferMs: 0, bytesIn: 0, batches: 0, batchComputeMs: 0, steps: 0,
  };
  for (const [, name, labels, raw] of metrics.matchAll(/^(mlx_mesh_\w+)(?:\{([^}]*)\})? (\S+)$/gm)) {
    const v = Number(raw);
    const op = /op="(\w+)"/.exec(labels ?? '')?.[1];
    if (op && FORWARD_OPS.has(op)) {
      const batch = op === 'forward_batch';
      if (name === 'mlx_mesh_engine_ops') {
        t.forwards += v;
        if (batch) t.batches += v;
      } else if (name === 'mlx_mesh_engine_op_compute_seconds') {
        t.computeMs += v * 1000;
        if (batch) t.batchComputeMs += v * 1000;
      } else if (name === 'mlx_mesh_engine_op_roundtrip_seconds') t.roundTripMs += v * 1000;
      else if (name === 'mlx_mesh_engine_op_bytes') t[labels!.includes('"to_engine"') ? 'bytesToEngine' : 'bytesFromEngine'] += v;
    } else if (name === 'mlx_mesh_hop_transfer_seconds_sum') t.transferMs += v * 1000;
    else if (name === 'mlx_mesh_hop_transfer_seconds_count') t.hopsIn += v;
    else if (name === 'mlx_mesh_hop_received_bytes_total') t.bytesIn += v;
    else if (name === 'mlx_mesh_hop_compute_seconds_count') t.steps += v;
  }
  return t;
}

/** Each API's totals, in the order given (the stages' order). */
export async function snapshot(apis: string[]): Promise<StageTotals[]> {
  return Promise.all(apis.map(async (api) => stageTotals(await (await fetch(`${api}/metrics`)).text())));
}

/** after − before per stage, divided by `per` (1 for totals, the step count for per-token figures). */
export function hopDelta(before: StageTotals[], after: StageTotals[], per = 1): HopFigures[] {
  return after.map((a, i) => {
    const d = (k: keyof StageTotals) => (a[k] - before[i][k]) / per;
    return {
      forwards: d('forwards'),
      compute_ms: d('computeMs'),
      engine_io_ms: d('roundTripMs') - d('computeMs'),
      bytes_to_engine: d('bytesToEngine'),
      bytes_from_engine: d('bytesFromEngine'),
      hops_in: d('hopsIn'),
      transfer_ms: d('transferMs'),
      bytes_in: d('bytesIn'),
    };
  });
}

/** Wall time outside every engine round trip and link transfer: HTTP, the origin's work, the token's way back. */
export function otherMs(wallMs: number, hops: HopFigures[]): number {
  return wallMs - hops.reduce((s, h) => s + h.compute_ms + h.engine_io_ms + h.transfer_ms, 0);
}

/** One concurrency level at one stage: how its engine spent the level's wall time. */
export interface StreamStageFigures {
  /** Forwards of one request (prompt chunks, and steps that ran alone) and their compute ms each. */
  singles: number;
  ms_per_single: number;
  /** Batched steps: batches, requests per batch, compute ms per batch. */
  batches: number;
  rows_per_batch: number;
  ms_per_batch: number;
  /** Engine compute ÷ the level's wall time: near 1 at the stage that bounds the level. */
  busy: number;
}

/** Per stage, from totals before and after a concurrency level that took `wallMs`. */
export function streamStages(before: StageTotals[], after: StageTotals[], wallMs: number): StreamStageFigures[] {
  return after.map((a, i) => {
    const b = before[i];
    const batches = a.batches - b.batches;
    const singles = a.forwards - b.forwards - batches;
    const batchMs = a.batchComputeMs - b.batchComputeMs;
    const singleMs = a.computeMs - b.computeMs - batchMs;
    return {
      singles,
      ms_per_single: singles ? singleMs / singles : 0,
      batches,
      rows_per_batch: batches ? (a.steps - b.steps - singles) / batches : 0,
      ms_per_batch: batches ? batchMs / batches : 0,
      busy: wallMs > 0 ? (a.computeMs - b.computeMs) / wallMs : 0,
    };
  });
}
