// Which peer holds which layers. Pure: the coordinator runs it and publishes the result, so peers
// never compute partitions on their own (and never disagree during churn).
//
// Layers are split into contiguous ranges, in rank order, so that each stage's share of the work per
// token follows its peer's share of usable memory; the first stage also holds the embedding and the
// last the final norm and head. Work counts weight bytes read per token (decode is memory-bound): each
// layer's, and a share of the head's on the last stage (the embedding is one row per token, free).
// Memory budgets always win over the work balance.
import { defaults } from '../core/defaults.ts';
import { meshError } from '../core/errors.ts';
import { formatBytes } from '../core/size.ts';
import type { MessageOf, PeerInfo } from '../transport/messages.ts';
import { byAge } from './election.ts';

export interface ModelShape {
  layerBytes: number[];
  embedBytes: number;
  headBytes: number;
  /** The head is the embedding: the last stage holds it too. */
  tied?: boolean;
  /** The head's vocabulary is cut between the first and last stages (when there are two or more):
   *  each holds half of it (a tied first stage keeps its whole embedding too). */
  splitHead?: boolean;
}

export interface PlanOptions {
  /** How much of the head's bytes count as work of the last stage, against 1 for a layer's: 1 balances
   *  decode (the whole head is read per token), 0 balances prefill (the head runs on one position). */
  headWorkShare: number;
}

export interface Capacity {
  id: string;
  usableBytes: number;
}

export interface Stage {
  id: string;
  rank: number;
  layers: [number, number];
}

export interface Plan {
  stages: Stage[];
  excluded: Array<{ id: string; reason: string }>;
}

function stageBytes(model: ModelShape, start: number, end: number): number {
  const n = model.layerBytes.length;
  let total = 0;
  for (let i = start; i < end; i++) total += model.layerBytes[i];
  const head = model.tied ? model.embedBytes : model.headBytes;
  if (model.splitHead && (start === 0) !== (end === n)) {
    // Half the head on each end; the first stage also holds the embedding.
    return total + head / 2 + (start === 0 ? model.embedBytes : 0);
  }
  if (start === 0 || (model.tied && end === n)) total += model.embedBytes;
  if (end === n) total += model.headBytes;
  return total;
}

/** Work per token of layers [0, i) for every i, and of the head, in layer-byte units. */
function cumulativeWork(model: ModelShape, headWorkShare: number): { before: number[]; head: number } {
  const before = [0];
  for (const bytes of model.layerBytes) before.push(before[before.length - 1] + bytes);
  const headBytes = model.tied ? model.embedBytes : model.headBytes;
  return { before, head: headWorkShare * headBytes };
}

/** Boundaries where each stage's cumulative work share meets its cumulative memory share (the head's
 *  work goes with the last stage), each stage with ≥ 1 layer. */
function proportionalBounds(model: ModelShape, weights: number[], headWorkShare: number): number[] {
  const n = model.layerBytes.length;
  const { before, head } = cumulativeWork(model, headWorkShare);
  const totalWork = before[n] + head;
  const total = weights.reduce((a, b) => a + b, 0);
  const bounds: number[] = [];
  let acc = 0;
  for (let k = 0; k < weights.length - 1; k++) {
    acc += weights[k];
    const target = (totalWork * acc) / total;
    const lo = (bounds[k - 1] ?? 0) + 1;
    const hi = n - (weights.length - 1 - k); // stages after this one still need a layer each
    let best = lo;
    for (let i = lo; i <= hi; i++) if (Math.abs(before[i] - target) <= Math.abs(before[best] - target) + 1e-9 * totalWork) best = i; // ties: the later bound, as rounding did
    bounds.push(best);
  }
  bounds.push(n);
  return bounds;
}

export function planLayers(model: ModelShape, peers: readonly Capacity[], opts: PlanOptions = { headWorkShare: defaults.planHeadWorkShare }): Plan {
  const n = model.layerBytes.length;
  if (n === 0) throw meshError('MODEL_NOT_FOUND', 'the model has no layers');
  if (peers.length === 0) throw meshError('PLAN_FAILED', 'no peers to plan for');
  const excluded: Plan['excluded'] = [];
  const biggestLayer = Math.max(...model.layerBytes);
  let members = peers.filter((p) => {
    if (p.usableBytes >= biggestLayer) return true;
    excluded.push({ id: p.id, reason: `${formatBytes(p.usableBytes)} usable, less than one layer (${formatBytes(biggestLayer)})` });
    return false;
  });
  if (members.length > n) {
    // More peers than layers: the smallest stay out (ties keep rank order).
    const keep = new Set([...members].sort((a, b) => b.usableBytes - a.usableBytes).slice(0, n).map((p) => p.id));
    for (const p of members) if (!keep.has(p.id)) excluded.push({ id: p.id, reason: `the model has only ${n} layers` });
    members = members.filter((p) => keep.has(p.id));
  }
  const need = stageBytes(model, 0, n);
  const have = members.reduce((a, p) => a + p.usableBytes, 0);
  if (members.length === 0 || have < need) {
    throw meshError(
      'MODEL_TOO_LARGE',
      `the model needs ${formatBytes(need)} but the cluster has ${formatBytes(have)} usable across ${members.length} peer(s): add a machine or use a smaller (or more quantized) model`,
      { needBytes: need, haveBytes: have },
    );
  }

  const bounds = proportionalBounds(model, members.map((p) => p.usableBytes), opts.headWorkShare);
  const start = (k: number) => (k === 0 ? 0 : bounds[k - 1]);
  const over = (k: number) => stageBytes(model, start(k), bounds[k]) > members[k].usableBytes;
  // Rounding and the embedding/head can push a stage over its memory: move layers to a neighbour
  // with room, forward first, then backward.
  for (let k = 0; k < members.length - 1; k++) {
    while (over(k) && bounds[k] - start(k) > 1) bounds[k]--;
  }
  for (let k = members.length - 1; k > 0; k--) {
    while (over(k) && bounds[k] - start(k) > 1 && bounds[k - 1] + 1 < bounds[k]) {
      bounds[k - 1]++;
      if (over(k - 1)) {
        bounds[k - 1]--;
        break;
      }
    }
  }
  const overfull = members.findIndex((_, k) => over(k));
  if (overfull >= 0) {
    const p = members[overfull];
    throw meshError(
      'MODEL_TOO_LARGE',
      `no split fits: peer ${p.id} would need ${formatBytes(stageBytes(model, start(overfull), bounds[overfull]))} but has ${formatBytes(p.usableBytes)} usable`,
    );
  }
  return {
    stages: members.map((p, k) => ({ id: p.id, rank: k, layers: [start(k), bounds[k]] as [number, number] })),
    excluded,
  };
}

/** What the engine's `inspect` says about a model, as far as planning needs it. */
export interface ModelFacts {
  n_layers: number;
  layer_bytes: number[];
  embed_bytes: number;
  head_bytes: number;
  tie_word_embeddings?: boolean;
  context_length: number;
  eos_token_ids: number[];
}

export interface PlanRequest {
  selfId: string;
  term: number;
  version: number;
  /** The model as the user named it ("default", a path, a repo id), and its display name. */
  spec: string;
  name: string;
  model: ModelFacts;
  live: PeerInfo[];
}

/** Usable memory a peer offers: what it reported (its `--memory`), else the default share of its RAM. */
export function usableBytes(p: PeerInfo): number {
  return Number(p.capabilities.usableMemory ?? p.capabilities.totalMemory * defaults.memoryFraction);
}

/** Same model and the same stages holding the same layers: switching between two such plans needs no re-load. */
export function samePipeline(a: MessageOf<'plan'>, b: MessageOf<'plan'>): boolean {
  return (
    a.model === b.model &&
    (a.meta.splitHead ?? false) === (b.meta.splitHead ?? false) &&
    a.stages.length === b.stages.length &&
    a.stages.every((s, i) => s.id === b.stages[i].id && s.layers[0] === b.stages[i].layers[0] && s.layers[1] === b.stages[i].layers[1])
  );
}

/** The coordinator's plan message. Rank order: the coordinator first (where requests usually arrive), then by age. */
export function makePlan(req: PlanRequest): MessageOf<'plan'> {
  const members = [...req.live].sort((a, b) => (a.id === req.selfId ? -1 : b.id === req.selfId ? 1 : byAge(a, b)));
  const shape = { layerBytes: req.model.layer_bytes, embedBytes: req.model.embed_bytes, headBytes: req.model.head_bytes, tied: req.model.tie_word_embeddings };
  const capacities = members.map((m) => ({ id: m.id, usableBytes: usableBytes(m) }));
  // A split head puts half the head on the first stage, beside the embedding: where that does not fit
  // (an untied model whose embedding and head outweigh its layers, on peers with little memory), the
  // head stays whole on the last stage. Fitting the model comes before the speed the split gives.
  let split = defaults.splitHead && capacities.length > 1;
  let plan: Plan;
  try {
    plan = planLayers({ ...shape, splitHead: split }, capacities);
  } catch (err) {
    if (!split) throw err;
    split = false;
    plan = planLayers(shape, capacities);
  }
  return {
    type: 'plan',
    term: req.term,
    version: req.version,
    model: req.spec,
    stages: plan.stages,
    excluded: plan.excluded,
    meta: {
      name: req.name,
      nLayers: req.model.n_layers,
      contextLength: req.model.context_length,
      eosTokenIds: req.model.eos_token_ids,
      splitHead: split && plan.stages.length > 1,
    },
  };
}
