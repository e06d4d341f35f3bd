// Resolving --model against the real engine: what a spec is, a GGUF converted once and then reused,
// the default model fetched from its PyPI wheel and converted, and clear failures.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  DEFAULT_MODEL,
  classifyModelSpec,
  defaultModel,
  ggufCacheDir,
  ggufForm,
  resolveModel,
  sha256File,
  type ModelEngine,
} from '../../peer/model-source.ts';
import { resolvePython } from '../../peer/python-env.ts';
import { EngineSupervisor } from '../../peer/supervisor.ts';
import { isMeshError } from '../../core/errors.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const STORIES_GGUF = path.resolve(repoRoot, '../shared/models/stories260K.gguf');
const STORIES_SHA = '270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d';
const realDataDir = process.env.MLX_MESH_DATA_DIR ?? path.join(os.homedir(), '.mlx-mesh');
const tmpDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlx-mesh-models-'));
// Offline for Hugging Face: the download path must fail fast and clearly here.
const engine = new EngineSupervisor({ dataDir: realDataDir, env: { ...process.env, HF_HUB_OFFLINE: '1' } });

/** The real engine, counting the conversions it is asked for. */
function counting(): ModelEngine & { converts: number } {
  const wrapped = {
    converts: 0,
    convert: (gguf: string, out: string) => {
      wrapped.converts++;
      return engine.convert(gguf, out);
    },
    download: (repo: string, out: string, layers?: [number, number]) => engine.download(repo, out, layers),
  };
  return wrapped;
}

async function rejects(p: Promise<unknown>, code: string, pattern: RegExp) {
  try {
    await p;
  } catch (err) {
    assert.ok(isMeshError(err, code as any), `${code} expected, got ${String(err)}`);
    assert.match((err as Error).message, pattern);
    return;
  }
  assert.unreachable(`should reject with ${code}`);
}

test.before(async () => {
  await engine.start();
});

test.after(async () => {
  await engine.stop();
  fs.rmSync(tmpDataDir, { recursive: true, force: true });
});

test('a spec is a directory, a GGUF file, a repo id or the default', () => {
  assert.is(classifyModelSpec(undefined), 'default');
  assert.is(classifyModelSpec(''), 'default');
  assert.is(classifyModelSpec(repoRoot), 'dir');
  assert.is(classifyModelSpec(STORIES_GGUF), 'gguf');
  assert.is(classifyModelSpec('HuggingFaceTB/SmolLM2-135M-Instruct'), 'hf');
  assert.throws(() => classifyModelSpec('/nope/model.gguf'), (e: Error) => isMeshError(e, 'MODEL_NOT_FOUND') && /does not exist/.test(e.message));
  assert.throws(() => classifyModelSpec(path.join(repoRoot, 'package.json')), (e: Error) => isMeshError(e, 'MODEL_NOT_FOUND'));
  assert.throws(() => classifyModelSpec('./not/here/at/all'), (e: Error) => /--model/.test(e.message));
});

test('a GGUF file is converted once into the data dir and then reused', async () => {
  const eng = counting();
  const first = await resolveModel(STORIES_GGUF, { dataDir: tmpDataDir, engine: eng });
  assert.is(first.kind, 'gguf');
  assert.is(first.fetched, true);
  assert.is(first.path, path.join(tmpDataDir, 'models', `stories260K-${STORIES_SHA.slice(0, 12)}`));
  assert.ok(fs.existsSync(path.join(first.path, 'model.safetensors')));
  const mtime = fs.statSync(path.join(first.path, 'model.safetensors')).mtimeMs;

  const again = await resolveModel(STORIES_GGUF, { dataDir: tmpDataDir, engine: eng });
  assert.equal({ ...again, fetched: false }, { ...first, fetched: false });
  assert.is(again.fetched, false);
  assert.is(eng.converts, 1, 'the second resolve does not convert');
  assert.is(fs.statSync(path.join(first.path, 'model.safetensors')).mtimeMs, mtime);

  // The converted directory is an ordinary model directory now.
  const asDir = await resolveModel(first.path, { dataDir: tmpDataDir, engine: eng });
  assert.equal([asDir.kind, asDir.path], ['dir', first.path]);
  const info = await engine.inspect(first.path);
  assert.is(info.n_layers, 5);
});

test('the GGUF hash is the file sha256, remembered between calls', async () => {
  assert.is(await sha256File(STORIES_GGUF), STORIES_SHA);
  const { sha256 } = await ggufCacheDir(tmpDataDir, STORIES_GGUF);
  assert.is(sha256, STORIES_SHA);
  assert.ok(fs.readFileSync(path.join(tmpDataDir, 'models', '.sha256.json'), 'utf8').includes(STORIES_SHA));
});

test('the default model comes from its PyPI wheel and converts to a chat model', async () => {
  const python = resolvePython({ dataDir: realDataDir }).path;
  const gguf = await defaultModel(realDataDir, python);
  assert.ok(gguf.endsWith('SmolLM2-135M-Instruct.Q4_1.gguf'));
  assert.is(await sha256File(gguf), DEFAULT_MODEL.sha256);
  const model = await resolveModel(undefined, { dataDir: realDataDir, engine, python });
  assert.is(model.kind, 'default');
  assert.is(model.path, path.join(realDataDir, 'models', `SmolLM2-135M-Instruct.Q4_1-${DEFAULT_MODEL.sha256.slice(0, 12)}`));
  const info = await engine.inspect(model.path);
  assert.equal([info.n_layers, info.hidden_size, info.vocab_size], [30, 576, 49152]);
});

test('GGUF weights: auto keeps quantization on the GPU and dequantizes on the CPU; either can be forced', () => {
  assert.is(ggufForm('auto', 'gpu'), 'quantized');
  assert.is(ggufForm('auto', 'cpu'), 'float32');
  assert.is(ggufForm('quantized', 'cpu'), 'quantized');
  assert.is(ggufForm('float32', 'gpu'), 'float32');
  try {
    ggufForm('int3', 'cpu');
    assert.unreachable();
  } catch (err) {
    assert.ok(isMeshError(err, 'BAD_ARGUMENT'));
    assert.match((err as Error).message, /auto, quantized, float32/);
  }
});

test('a quantized GGUF kept quantized: its own directory, MLX 4-bit with GGUF block size 32', async () => {
  const python = resolvePython({ dataDir: realDataDir }).path;
  const model = await resolveModel(undefined, { dataDir: realDataDir, engine, python, ggufWeights: 'quantized' });
  assert.is(model.ggufWeights, 'quantized');
  assert.is(model.path, path.join(realDataDir, 'models', `SmolLM2-135M-Instruct.Q4_1-${DEFAULT_MODEL.sha256.slice(0, 12)}-quantized`));
  const config = JSON.parse(fs.readFileSync(path.join(model.path, 'config.json'), 'utf8'));
  assert.equal(config.quantization, { group_size: 32, bits: 4, mode: 'affine' });
  const info = await engine.inspect(model.path);
  assert.is(info.dtype, 'q4');
  const float = await resolveModel(undefined, { dataDir: realDataDir, engine, python, ggufWeights: 'auto', backend: 'cpu' });
  assert.is(float.ggufWeights, 'float32');
  const bytes = (i: { layer_bytes: number[]; embed_bytes: number }) => i.layer_bytes.reduce((a, b) => a + b, 0) + i.embed_bytes;
  assert.ok(bytes(info) * 5 < bytes(await engine.inspect(float.path)), 'a fifth of the float32 size or less');
});

test('a fresh data dir fetches the default model with pip and keeps only the GGUF', async () => {
  const fresh = fs.mkdtempSync(path.join(tmpDataDir, 'fresh-'));
  const python = resolvePython({ dataDir: realDataDir }).path;
  const gguf = await defaultModel(fresh, python);
  assert.is(gguf, path.join(fresh, 'cache', DEFAULT_MODEL.cacheName, DEFAULT_MODEL.fileInWheel));
  assert.is(await sha256File(gguf), DEFAULT_MODEL.sha256);
  assert.equal(fs.readdirSync(path.join(fresh, 'cache', 'wheels')), [], 'the wheel is removed after extraction');
  assert.is(await defaultModel(fresh, '/nonexistent/python'), gguf, 'later calls need neither pip nor network');
  await rejects(defaultModel(fs.mkdtempSync(path.join(tmpDataDir, 'nopy-')), '/nonexistent/python'), 'PYTHON_NOT_FOUND', /setup/);
});

test('failures say what to do', async () => {
  const eng = counting();
  const empty = fs.mkdtempSync(path.join(tmpDataDir, 'empty-'));
  await rejects(resolveModel(empty, { dataDir: tmpDataDir, engine: eng }), 'MODEL_NOT_FOUND', /no config\.json.*--model/s);
  await rejects(
    resolveModel('someone/no-such-model', { dataDir: tmpDataDir, engine: eng, layers: [0, 2] }),
    'MODEL_NOT_FOUND',
    /could not download someone\/no-such-model.*--model/s,
  );
});

test.run();
