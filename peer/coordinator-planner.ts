// The coordinator's planning loop: after membership settles (joins come in bursts), turn the live
// peers and the model's shape into a plan and publish it. Only the coordinator runs it; everyone
// (the coordinator included) follows the published plan through PlanFollower.
//
// Membership churn costs no request: the stages change only when one left or its engine failed for
// good (at once: its requests replay on the new plan, or ended with engine_failed; the failed peer is
// listed in `excluded` with the cause) or when a new peer gives another split — and then once no request runs, or
// after a bounded wait. A peer that joins and is left out only amends the plan's `excluded` list
// (same version, nobody re-loads); a new coordinator takes over an unchanged plan under its own term.
import { isMeshError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { MessageOf } from '../transport/messages.ts';
import type { Peer } from './peer.ts';
import { makePlan, samePipeline } from './planner.ts';
import type { InspectResult } from './supervisor.ts';

type PlanMessage = MessageOf<'plan'>;

export interface CoordinatorPlannerOptions {
  peer: Peer;
  log: Logger;
  /** The model as the user named it (`--model`, or "default"). */
  spec: string;
  delayMs: number;
  /** The plan everyone follows now. */
  current(): PlanMessage | null;
  /** Whether this peer can inspect the model (an engine that never started cannot). */
  canPlan(): boolean;
  /** Why a live peer's engine failed for good (its supervisor gave up), or null: it gets no layers. */
  engineFailed(id: string): string | null;
  resolve(spec: string): Promise<{ path: string; name: string }>;
  inspect(path: string): Promise<InspectResult>;
  /** Sends the plan to everyone and follows it here. */
  publish(plan: PlanMessage): void;
  /** Whether any peer is driving a request right now. */
  busy(): boolean;
  /** How long a better split waits for running requests to end. */
  drainMs: number;
}

export class CoordinatorPlanner {
  /** Why the last attempt to plan failed (shown in 503s); null after a plan was published. */
  error: string | null = null;
  private readonly opts: CoordinatorPlannerOptions;
  private counter = 0;
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private model: { name: string; info: InspectResult } | null = null;
  /** When a better split started waiting for requests to drain. */
  private drainingSince: number | null = null;

  constructor(opts: CoordinatorPlannerOptions) {
    this.opts = opts;
  }

  start(): void {
    this.running = true;
    this.schedule();
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Versions keep rising across coordinators: a new coordinator continues from the plans it saw. */
  saw(plan: PlanMessage): void {
    this.counter = Math.max(this.counter, plan.version);
  }

  /** Re-plans after the quiet period, if this peer is the coordinator by then. */
  schedule(): void {
    if (!this.running || !this.opts.peer.isCoordinator) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.replan().catch((err) => {
        // The code leads, so a client's 503 says which failure it is (UNSUPPORTED_MODEL, MODEL_TOO_LARGE).
        this.error = isMeshError(err) ? `${err.code}: ${err.message}` : (err as Error).message;
        this.opts.log.error('could not make a plan', { error: this.error });
      });
    }, this.opts.delayMs);
  }

  private async modelInfo(): Promise<{ name: string; info: InspectResult }> {
    if (this.model) return this.model;
    const { path, name } = await this.opts.resolve(this.opts.spec);
    const info = await this.opts.inspect(path);
    this.model = { name, info };
    return this.model;
  }

  private async replan(): Promise<void> {
    const { peer, spec } = this.opts;
    // A coordinator whose engine failed after the model was inspected still plans for the others.
    if (!peer.isCoordinator || (!this.model && !this.opts.canPlan())) return;
    const { info, name } = await this.modelInfo();
    const failed: PlanMessage['excluded'] = [];
    const live = peer.live().filter((p) => {
      const why = this.opts.engineFailed(p.id);
      if (why !== null) failed.push({ id: p.id, reason: `its engine failed: ${why}` });
      return why === null;
    });
    if (live.length === 0) throw new Error(`no peer has a working engine (${failed.map((f) => `${f.id}: ${f.reason}`).join('; ')})`);
    const term = peer.leadership.term;
    const current = this.opts.current();
    const next = makePlan({ selfId: peer.id, term, version: this.nextVersion(), spec, name, model: info, live });
    next.excluded = [...next.excluded, ...failed];
    const liveIds = new Set(live.map((p) => p.id));
    if (current && current.model === spec && current.stages.every((s) => liveIds.has(s.id))) {
      if (samePipeline(next, current)) {
        if (current.term !== term) return this.publish({ ...current, term, version: next.version, excluded: next.excluded }, 'same stages, new coordinator');
        if (JSON.stringify(next.excluded) !== JSON.stringify(current.excluded)) return this.publish({ ...current, excluded: next.excluded }, 'excluded peers');
        this.drainingSince = null;
        return;
      }
      // Every stage is still here: a better split is not worth a request, unless they never drain.
      const now = Date.now();
      this.drainingSince ??= now;
      if (this.opts.busy() && now - this.drainingSince < this.opts.drainMs) {
        this.opts.log.debug('a new split waits for running requests to end');
        this.timer ??= setTimeout(() => {
          this.timer = null;
          this.schedule();
        }, this.opts.delayMs);
        return;
      }
    }
    this.publish(next, 'new stages');
  }

  private nextVersion(): number {
    return Math.max(this.counter, this.opts.current()?.version ?? 0) + 1;
  }

  private publish(msg: PlanMessage, why: string): void {
    this.error = null;
    this.drainingSince = null;
    this.counter = Math.max(this.counter, msg.version);
    this.opts.log.info('publishing plan', {
      version: msg.version,
      why,
      stages: msg.stages.map((s) => `${s.id}:${s.layers[0]}-${s.layers[1]}`).join(' '),
    });
    this.opts.publish(msg);
  }
}
