// Models for tests: the default model's directory (fetched and converted once into the test data
// dir), and small random-weight checkpoints of any supported family built by mlx-lm's own classes.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { defaults } from '../../core/defaults.ts';
import { resolveModel } from '../../peer/model-source.ts';
import { EngineSupervisor } from '../../peer/supervisor.ts';
import { TEST_PYTHON, tempDir } from './mesh.ts';
import { ROOT } from './process.ts';

/** The default model converted in the shared test data dir (kept across runs). */
export async function defaultModelDir(): Promise<string> {
  const engine = new EngineSupervisor({ dataDir: defaults.dataDir, python: TEST_PYTHON });
  try {
    await engine.start();
    return (await resolveModel(undefined, { dataDir: defaults.dataDir, engine, python: TEST_PYTHON })).path;
  } finally {
    await engine.stop();
  }
}

/**
 * A fresh random-weight checkpoint of `arch` (peer/engine/tests/tiny_models.py), optionally quantized by
 * mlx-lm, with `config` overriding its config.json fields.
 */
export async function tinyModel(arch: string, opts: { bits?: number; groupSize?: number; config?: Record<string, unknown> } = {}): Promise<string> {
  const out = path.join(tempDir(`mlx-mesh-${arch}-`), 'model');
  const args = [path.join(ROOT, 'peer/engine/tests/tiny_models.py'), arch, out, await defaultModelDir()];
  if (opts.bits) args.push('--bits', String(opts.bits), '--group-size', String(opts.groupSize ?? 64));
  if (opts.config) args.push('--config', JSON.stringify(opts.config));
  execFileSync(TEST_PYTHON, args, { encoding: 'utf8' });
  return out;
}

export interface ReferenceResult {
  prompt: number[];
  tokens: number[];
  text: string;
}

/** Single-process mlx_lm greedy generation (test/helpers/mlx_reference.py), with mlx_lm's prefill step
 *  size or the one given (a mesh of several stages prefills in smaller chunks: peer/prefill-chunk.ts). */
export function mlxReference(modelDir: string, spec: { prompt: string } | { messages: unknown[] }, maxTokens: number, prefillStep?: number): ReferenceResult {
  const args = [path.join(ROOT, 'test/helpers/mlx_reference.py'), modelDir, JSON.stringify(spec), String(maxTokens)];
  if (prefillStep !== undefined) args.push(String(prefillStep));
  return JSON.parse(execFileSync(TEST_PYTHON, args, { encoding: 'utf8' })) as ReferenceResult;
}

/**
 * mlx_lm's own batched generation (batch_generate) of these prompts in one batch, in prompt order.
 * Each prompt is encoded as mlx_lm encodes it (and the mesh's /v1/completions: the tokenizer's own BOS, if any).
 */
export function mlxBatchReference(modelDir: string, prompts: string[], maxTokens: number): ReferenceResult[] {
  const spec = { batch: prompts };
  const args = [path.join(ROOT, 'test/helpers/mlx_reference.py'), modelDir, JSON.stringify(spec), String(maxTokens)];
  return (JSON.parse(execFileSync(TEST_PYTHON, args, { encoding: 'utf8' })) as { batch: ReferenceResult[] }).batch;
}

/**
 * A copy of a SentencePiece model directory (the converted stories model) whose tokenizer.json decodes
 * the same text but in a step order mlx-lm does not recognize, so mlx-lm detokenizes it naively.
 */
export function naiveTokenizerCopy(modelDir: string): string {
  const out = path.join(tempDir('mlx-mesh-naive-'), path.basename(modelDir));
  fs.cpSync(modelDir, out, { recursive: true });
  const file = path.join(out, 'tokenizer.json');
  const tokenizer = JSON.parse(fs.readFileSync(file, 'utf8'));
  const [replace, bytes, ...rest] = tokenizer.decoder.decoders;
  tokenizer.decoder.decoders = [bytes, replace, ...rest];
  fs.writeFileSync(file, JSON.stringify(tokenizer));
  return out;
}
