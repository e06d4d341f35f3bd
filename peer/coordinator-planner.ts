// The coordinator's planning loop: after membership settles (joins come in bursts), turn the live
// peers and the model's shape into a plan and publish it. Only the coordinator runs it; everyone
// (the coordinator included) follows the published plan through PlanFollower.
import { isMeshError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { MessageOf } from '../transport/messages.ts';
import type { Peer } from './peer.ts';
import { makePlan, planIsCurrent } from './planner.ts';
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
  /** Whether this peer can take part at all (an engine that never started cannot inspect). */
  canPlan(): boolean;
  resolve(spec: string): Promise<{ path: string; name: string }>;
  inspect(path: string): Promise<InspectResult>;
  /** Sends the plan to everyone and follows it here. */
  publish(plan: PlanMessage): void;
}

export class CoordinatorPlanner {
  /** Why the last attempt to plan failed (shown in 503s); null after a plan was published. */
  error: string | null = null;
  private readonly opts: CoordinatorPlannerOptions;
  private counter = 0;
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private model: { name: string; info: InspectResult } | null = null;

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
    if (!peer.isCoordinator || !this.opts.canPlan()) return;
    const { info, name } = await this.modelInfo();
    const live = peer.live();
    const current = this.opts.current();
    if (planIsCurrent(current, live, peer.leadership.term, spec)) return;
    const msg = makePlan({
      selfId: peer.id,
      term: peer.leadership.term,
      version: Math.max(this.counter, current?.version ?? 0) + 1,
      spec,
      name,
      model: info,
      live,
    });
    this.error = null;
    this.counter = msg.version;
    this.opts.log.info('publishing plan', {
      version: msg.version,
      stages: msg.stages.map((s) => `${s.id}:${s.layers[0]}-${s.layers[1]}`).join(' '),
    });
    this.opts.publish(msg);
  }
}
