// What one request did, as its origin saw it: time to first token, the time between tokens, and for
// every sampled step the hops it took (compute and transfer per stage), summed per stage. The last N
// requests stay in a bounded ring for `GET /debug/requests/{id}` and the dashboard.
import type { Hop } from '../transport/messages.ts';

/** Wall-clock milliseconds with sub-millisecond precision: comparable between peers on synced clocks. */
export function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

export interface StageSummary {
  peer: string;
  /** Sampled steps seen through this stage. */
  steps: number;
  computeMs: number;
  transferMs: number;
  bytes: number;
}

export interface StepTrace {
  step: number;
  hops: Hop[];
  /** From the last stage back to the origin. */
  returnMs: number;
}

export type RequestState = 'running' | 'done' | 'failed';

export interface RequestRecord {
  id: string;
  endpoint: string;
  /** The id the pipeline knows the request by (in `forward` frames and engine caches). */
  generation: string;
  origin: string;
  startedAt: number;
  state: RequestState;
  /** stop / length (the finish reason), error, or aborted (the client went away). */
  outcome: string | null;
  finishReason: string | null;
  error: string | null;
  promptTokens: number;
  completionTokens: number;
  ttftMs: number | null;
  durationMs: number | null;
  /** Per stage in pipeline order, then the way back to the origin (`peer` = origin, transfer only). */
  stages: StageSummary[];
  returnMs: number;
  /** The first steps in detail (bounded). */
  steps: StepTrace[];
}

const MAX_STEPS = 256;

export class RequestTrace {
  readonly record: RequestRecord;
  private readonly started: number;
  private lastTokenAt: number | null = null;

  constructor(meta: { id: string; endpoint: string; generation: string; origin: string; promptTokens: number }, now = wallMs()) {
    this.started = now;
    this.record = {
      ...meta,
      startedAt: Math.round(now),
      state: 'running',
      outcome: null,
      finishReason: null,
      error: null,
      completionTokens: 0,
      ttftMs: null,
      durationMs: null,
      stages: [],
      returnMs: 0,
      steps: [],
    };
  }

  /**
   * A token arrived with the hops of its step. Returns the time since the previous token (or since the
   * start, for the first one) and whether it is the first.
   */
  onToken(step: number, hops: Hop[] | undefined, sentAt: number | undefined, now = wallMs()): { first: boolean; latencyMs: number } {
    const rec = this.record;
    const first = this.lastTokenAt === null;
    const latencyMs = now - (this.lastTokenAt ?? this.started);
    this.lastTokenAt = now;
    if (first) rec.ttftMs = round(latencyMs);
    const returnMs = sentAt === undefined ? 0 : Math.max(0, now - sentAt);
    rec.returnMs = round(rec.returnMs + returnMs);
    for (const [i, hop] of (hops ?? []).entries()) {
      const s = (rec.stages[i] ??= { peer: hop.peer, steps: 0, computeMs: 0, transferMs: 0, bytes: 0 });
      s.steps++;
      s.computeMs = round(s.computeMs + hop.computeMs);
      s.transferMs = round(s.transferMs + hop.transferMs);
      s.bytes += hop.bytes;
    }
    if (rec.steps.length < MAX_STEPS) rec.steps.push({ step, hops: (hops ?? []).map((h) => ({ ...h, computeMs: round(h.computeMs), transferMs: round(h.transferMs) })), returnMs: round(returnMs) });
    return { first, latencyMs };
  }

  finish(outcome: { finishReason: string; completionTokens: number } | { error: string; aborted: boolean }, now = wallMs()): RequestRecord {
    const rec = this.record;
    rec.durationMs = round(now - this.started);
    if ('error' in outcome) {
      rec.state = 'failed';
      rec.outcome = outcome.aborted ? 'aborted' : 'error';
      rec.error = outcome.error;
    } else {
      rec.state = 'done';
      rec.outcome = outcome.finishReason;
      rec.finishReason = outcome.finishReason;
      rec.completionTokens = outcome.completionTokens;
    }
    return rec;
  }
}

/** The last `limit` requests by id; the oldest leaves first. */
export class TraceRing {
  private readonly byId = new Map<string, RequestRecord>();

  constructor(private readonly limit: number) {}

  add(rec: RequestRecord): void {
    this.byId.delete(rec.id);
    this.byId.set(rec.id, rec);
    while (this.byId.size > this.limit) this.byId.delete(this.byId.keys().next().value!);
  }

  get(id: string): RequestRecord | undefined {
    return this.byId.get(id);
  }

  /** Newest first. */
  list(): RequestRecord[] {
    return [...this.byId.values()].reverse();
  }
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
