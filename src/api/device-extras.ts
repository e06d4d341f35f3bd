// What the inference layer adds to each device in /distributed/gpu-info and /cluster.
import type { Inference } from '../../peer/inference.ts';
import type { DeviceExtras } from './views.ts';

/**
 * healthy: layers loaded for the current plan · loading: loading them · starting: engine starting or
 * no plan yet · restarting: engine crashed, coming back · failed: engine or load failed · excluded:
 * left out of the plan (too little memory, or more peers than layers).
 */
export function deviceExtras(inference: Inference, id: string): DeviceExtras {
  const st = inference.stateOf(id);
  const plan = inference.plan;
  const stage = plan?.stages.find((s) => s.id === id);
  let status = 'starting';
  if (st?.engine === 'failed' || st?.error) status = 'failed';
  else if (st?.engine === 'restarting' || st?.engine === 'starting' && st.planVersion !== null) status = 'restarting';
  else if (plan && st?.planVersion === plan.version && st.planTerm === plan.term) {
    status = st.ready ? (stage ? 'healthy' : 'excluded') : 'loading';
  } else if (plan) status = 'loading';
  return {
    status,
    layers: stage ? stage.layers : null,
    rank: stage?.rank,
    engine: st?.engine,
    memoryBytes: st?.memoryBytes,
    peakRssBytes: st?.peakRssBytes,
    rssBeforeLoadBytes: st?.rssBeforeLoadBytes,
    ggufWeights: st?.ggufWeights,
    backend: st?.backend,
    blas: st?.blas,
    malloc: st?.malloc,
    sched: st?.sched,
    mlxVersion: st?.mlxVersion,
    load: st?.load,
    fetch: st?.fetch,
  };
}
