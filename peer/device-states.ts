// The one record of every live peer's engine state: ours is written here and sent as `status`,
// the others arrive as `status` and are stored as they came. Readiness for a plan is read from it.
import { EventEmitter } from 'node:events';
import type { MessageOf } from '../transport/messages.ts';

type StatusMessage = MessageOf<'status'>;
type PlanMessage = MessageOf<'plan'>;

/** A peer's engine and its share of the plan: exactly what a `status` message carries. */
export type DeviceState = Omit<StatusMessage, 'type'>;

export class DeviceStates extends EventEmitter<{ status: [string, DeviceState] }> {
  private readonly states = new Map<string, DeviceState>();

  constructor(private readonly selfId: string) {
    super();
    this.states.set(selfId, { engine: 'stopped', ready: false, planTerm: null, planVersion: null });
  }

  get self(): DeviceState {
    return this.states.get(this.selfId)!;
  }

  get(id: string): DeviceState | undefined {
    return this.states.get(id);
  }

  /** Updates our own record; an engine that is neither loading nor ready holds no usable layers. */
  updateSelf(patch: Partial<DeviceState>): DeviceState {
    const next = { ...this.self, ...patch };
    if (next.engine !== 'ready' && next.engine !== 'loading') next.ready = next.ready && next.engine === 'ready';
    this.states.set(this.selfId, next);
    this.emit('status', this.selfId, next);
    return next;
  }

  /** A `status` from another peer. */
  receive(id: string, msg: StatusMessage): void {
    const { type: _t, ...state } = msg;
    this.states.set(id, state);
    this.emit('status', id, state);
  }

  forget(id: string): void {
    if (id !== this.selfId) this.states.delete(id);
  }

  /** Whether a peer has its layers of this plan loaded. */
  isReadyFor(id: string, plan: PlanMessage | null): boolean {
    const st = this.states.get(id);
    return !!(plan && st?.ready && st.planVersion === plan.version && st.planTerm === plan.term);
  }

  statusMessage(): StatusMessage {
    return { type: 'status', ...this.self };
  }
}
