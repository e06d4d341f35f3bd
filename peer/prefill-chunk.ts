// How many prompt tokens go into one prefill message. With one stage, mlx_lm's own step size (fewest,
// largest matmuls). With several, smaller chunks let the stages overlap: stage k works on chunk i while
// stage k+1 works on chunk i−1, so a prompt of n tokens takes about (chunks + stages − 1) chunk-times
// instead of stages × n. Too small a chunk wastes per-message and per-matmul overhead: bounded.
import { defaults } from '../core/defaults.ts';

export interface PrefillChunkBounds {
  chunksPerStage: number;
  min: number;
  max: number;
}

const DEFAULT_BOUNDS: PrefillChunkBounds = {
  chunksPerStage: defaults.prefillChunksPerStage,
  min: defaults.prefillChunkMin,
  max: defaults.prefillChunkMax,
};

/** Prefill step size for a prompt of `promptTokens` through `stages` pipeline stages. */
export function prefillChunkSize(promptTokens: number, stages: number, bounds: PrefillChunkBounds = DEFAULT_BOUNDS): number {
  if (stages <= 1) return bounds.max;
  // The last prompt token always goes alone (it is sampled), as in mlx_lm: only the rest is chunked.
  const chunked = Math.max(0, promptTokens - 1);
  const even = Math.ceil(chunked / (bounds.chunksPerStage * stages));
  return Math.min(bounds.max, Math.max(bounds.min, even));
}
