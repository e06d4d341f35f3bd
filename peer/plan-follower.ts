// Every peer follows the coordinator's plan: it takes the newest plan, loads its layer range (or only
// the tokenizer when left out) and keeps its own device state true — including what the engine
// supervisor reports, so a crash, a failed re-load or a spent restart budget shows with its reason.
import { EventEmitter } from 'node:events';
import { isMeshError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { MessageOf } from '../transport/messages.ts';
import type { DeviceStates } from './device-states.ts';
import type { EngineHello } from './engine-client.ts';
import { samePipeline } from './planner.ts';
import type { EngineSupervisor } from './supervisor.ts';

/** Engine states a load is refused in only until the engine serves again. */
const COMING_BACK: readonly string[] = ['starting', 'restarting'];

type PlanMessage = MessageOf<'plan'>;

export interface PlanFollowerOptions {
  selfId: string;
  engine: EngineSupervisor;
  states: DeviceStates;
  log: Logger;
  /** Finds this peer's local copy of the plan's model (and of the layers it needs), or fetches them. */
  resolve(plan: PlanMessage, layers?: [number, number]): Promise<{ path: string; ggufWeights?: string }>;
  /** The current coordinator term: plans from older terms are ignored. */
  term(): number;
}

export class PlanFollower extends EventEmitter<{ plan: [PlanMessage] }> {
  plan: PlanMessage | null = null;
  private readonly opts: PlanFollowerOptions;
  private applying: Promise<void> = Promise.resolve();
  private running = false;
  /** Settles when the engine has started (or failed to): plans that arrive earlier wait for it. */
  private readonly engineStarted: Promise<void>;
  private markEngineStarted!: () => void;
  /** The plan whose layers the engine holds (survives an engine restart, which re-loads them). */
  private loadedPlan: PlanMessage | null = null;
  /** The supervisor gave up on the engine (until it tries it again). */
  private gaveUp = false;
  /** The first plan version with the current stages (later versions only changed the term or `excluded`). */
  private pipelineSince = 0;

  constructor(opts: PlanFollowerOptions) {
    super();
    this.opts = opts;
    this.engineStarted = new Promise((resolve) => (this.markEngineStarted = resolve));
    const { engine, log } = opts;
    // After a crash the supervisor re-loads the same layers by itself; ready again means ready for the plan.
    engine.on('state', (state) =>
      this.update({ engine: state, ready: state === 'ready' && this.loadedPlan !== null && this.loadedPlan === this.plan }),
    );
    engine.on('restart', (info) => {
      log.warn('engine restarted; re-loading layers', { attempt: info.attempt, reason: info.reason });
      // Tried again after it failed: that failure is over (the coordinator plans it back in).
      if (this.gaveUp) this.update({ error: undefined });
      this.gaveUp = false;
    });
    engine.on('reload-failed', (err) => {
      this.loadedPlan = null;
      log.error('could not re-load layers after an engine restart', { error: err.message });
      this.update({ ready: false, error: `could not re-load its layers after an engine restart: ${err.message}` });
    });
    engine.on('failed', (err) => {
      this.gaveUp = true;
      this.loadedPlan = null;
      this.update({ ready: false, error: err.message });
    });
  }

  /** Resolves when the engine is no longer starting, restarting or loading. */
  private engineSettled(): Promise<void> {
    const { engine } = this.opts;
    return new Promise((resolve) => {
      const on = (state: string) => {
        if (COMING_BACK.includes(state) || state === 'loading') return;
        engine.off('state', on);
        resolve();
      };
      engine.on('state', on);
    });
  }

  private update(patch: Parameters<DeviceStates['updateSelf']>[0]): void {
    this.opts.states.updateSelf(patch);
  }

  /** Starts the engine. An engine that cannot start is reported (device status `failed`), not fatal. */
  async startEngine(): Promise<EngineHello | null> {
    this.running = true;
    try {
      const hello = await this.opts.engine.start();
      this.update({ backend: hello.backend, blas: hello.blas, malloc: hello.malloc, sched: hello.sched, mlxVersion: hello.mlx });
      return hello;
    } catch (err) {
      this.opts.log.error('engine did not start', { error: (err as Error).message });
      this.update({ engine: 'failed', error: (err as Error).message });
      return null;
    } finally {
      this.markEngineStarted();
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    this.markEngineStarted(); // loads waiting for the engine give up
    await this.opts.engine.stop();
  }

  /**
   * Takes a plan if it is newer than ours and from the current term. `new-stages` means requests on
   * the old plan must move; `same-stages` (a new version of the same pipeline, or an amended list of
   * excluded peers) changes nothing for them and re-loads nothing.
   */
  accept(plan: PlanMessage): 'ignored' | 'same-stages' | 'new-stages' {
    const cur = this.plan;
    if (plan.term < this.opts.term()) return 'ignored'; // from a coordinator that has been replaced
    if (cur && (plan.term < cur.term || (plan.term === cur.term && plan.version < cur.version))) return 'ignored';
    const same = cur !== null && samePipeline(plan, cur);
    if (cur && plan.term === cur.term && plan.version === cur.version) {
      if (!same) return 'ignored';
      // An amendment: only who is left out changed. In place, so a load of this plan under way still counts.
      cur.excluded = plan.excluded;
      return 'same-stages';
    }
    this.plan = plan;
    this.emit('plan', plan);
    if (same && this.loadedPlan === cur) {
      this.loadedPlan = plan;
      this.update({ planTerm: plan.term, planVersion: plan.version, ready: this.opts.engine.state === 'ready' });
      return 'same-stages';
    }
    if (!same) this.pipelineSince = plan.version;
    this.applying = this.applying.then(() => this.load(plan));
    return same ? 'same-stages' : 'new-stages';
  }

  /** The plan a `forward` sent under `version` runs on: ours, if that version has our stages. */
  planFor(version: number): PlanMessage | null {
    const plan = this.plan;
    if (plan && version !== plan.version && version >= this.pipelineSince && version < plan.version) return { ...plan, version };
    return plan;
  }

  private async load(plan: PlanMessage): Promise<void> {
    if (this.plan !== plan) return; // superseded while queued
    const { engine, log } = this.opts;
    const stage = plan.stages.find((s) => s.id === this.opts.selfId);
    this.loadedPlan = null;
    // An engine its supervisor gave up on loads nothing, and the cause it gave stays the device's error.
    const failed = () => engine.state === 'failed';
    this.update({ ready: false, planTerm: plan.term, planVersion: plan.version, ...(failed() ? {} : { error: undefined }) });
    try {
      await this.engineStarted;
      if (this.plan !== plan || !this.running || failed()) return;
      const { path, ggufWeights } = await this.opts.resolve(plan, stage?.layers);
      this.update({ ggufWeights });
      // A peer outside the plan still loads the tokenizer, so it can serve its own API clients.
      const [start, end] = stage?.layers ?? [0, 0];
      const args = { model: path, start, end, split_head: plan.meta.splitHead === true };
      let loaded;
      for (;;) {
        try {
          loaded = await engine.load(args);
          break;
        } catch (err) {
          // An engine coming back (a restart under way) takes the load once it serves again.
          if (!isMeshError(err, 'ENGINE_FAILED') || !COMING_BACK.includes(engine.state)) throw err;
          await this.engineSettled();
          if (this.plan !== plan || !this.running || failed()) return;
        }
      }
      if (this.plan !== plan) return;
      this.loadedPlan = plan;
      this.update({ ready: true, memoryBytes: loaded.memory_bytes, peakRssBytes: loaded.peak_rss_bytes, rssBeforeLoadBytes: loaded.rss_before_bytes });
      const mb = (n?: number) => (n === undefined ? undefined : Math.round(n / 2 ** 20));
      log.info('layers loaded', {
        layers: `${start}-${end}`,
        memory_mb: mb(loaded.memory_bytes),
        peak_rss_mb: mb(loaded.peak_rss_bytes),
        rss_before_mb: mb(loaded.rss_before_bytes),
      });
    } catch (err) {
      if (this.plan !== plan) return;
      log.error('could not load layers', { error: (err as Error).message });
      this.update({ ready: false, error: (err as Error).message });
    }
  }
}
