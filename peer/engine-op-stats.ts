// Totals per engine op since the engine started: how many, the time inside the engine (`compute_ms`
// in each reply), the round trip seen from Node, and the bytes each way over stdio. The difference
// between round trip and compute is framing, pipes and queueing: what /metrics and the bench report.

export interface OpTotals {
  count: number;
  computeMs: number;
  roundTripMs: number;
  bytesToEngine: number;
  bytesFromEngine: number;
}

export class EngineOpStats {
  private readonly totals = new Map<string, OpTotals>();

  record(op: string, sample: OpTotals): void {
    const t = this.totals.get(op) ?? { count: 0, computeMs: 0, roundTripMs: 0, bytesToEngine: 0, bytesFromEngine: 0 };
    t.count += sample.count;
    t.computeMs += sample.computeMs;
    t.roundTripMs += sample.roundTripMs;
    t.bytesToEngine += sample.bytesToEngine;
    t.bytesFromEngine += sample.bytesFromEngine;
    this.totals.set(op, t);
  }

  /** A copy, by op name. */
  snapshot(): Record<string, OpTotals> {
    return Object.fromEntries([...this.totals].map(([op, t]) => [op, { ...t }]));
  }
}
