// Weights over the mesh, the pure part: what a model directory publishes (its index: every metadata
// file and every tensor, with size and sha256), which of those a layer range needs, how the receiver
// lays its tensors out in one local safetensors file, and what is left to fetch after an interruption.
// The same rule as peer/engine/mlx_mesh_engine/layer_files.py decides which tensors a range needs.
import { createHash } from 'node:crypto';
import { meshError } from '../core/errors.ts';

/** One thing a source can send: a metadata file (config, tokenizer) or one tensor's bytes. */
export interface WeightsItem {
  kind: 'file' | 'tensor';
  name: string;
  size: number;
  sha256: string;
  /** Tensors only: safetensors dtype ("F32", "BF16", "U32", ...) and shape. */
  dtype?: string;
  shape?: number[];
}

export interface WeightsIndex {
  /** The model's display name at the source. */
  name: string;
  /** sha256 over every item's kind, name and sha256: names a model's exact content. */
  digest: string;
  items: WeightsItem[];
}

/** The digest that names a model's content: every item's kind, name, size and sha256, in index order. */
export function indexDigest(items: WeightsItem[]): string {
  const h = createHash('sha256');
  for (const i of items) h.update(`${i.kind}\t${i.name}\t${i.size}\t${i.sha256}\n`);
  return h.digest('hex');
}

/** One tensor as a safetensors header describes it; `start`/`end` are absolute byte offsets in the file. */
export interface SafetensorsEntry {
  name: string;
  dtype: string;
  shape: number[];
  start: number;
  end: number;
}

/** Headers larger than this are not a checkpoint (safetensors itself caps them at 100 MB). */
const MAX_HEADER = 100 * 1000 * 1000;

/** The header length of a safetensors file from its first 8 bytes (u64 little-endian). */
export function safetensorsHeaderLength(first8: Uint8Array): number {
  if (first8.byteLength < 8) throw meshError('MODEL_NOT_FOUND', 'a safetensors file shorter than 8 bytes');
  const n = Number(Buffer.from(first8.buffer, first8.byteOffset, 8).readBigUInt64LE(0));
  if (n <= 1 || n > MAX_HEADER) throw meshError('MODEL_NOT_FOUND', `a safetensors header of ${n} bytes`);
  return n;
}

/** The tensors of a safetensors file from its JSON header (the bytes after the 8-byte length). */
export function parseSafetensorsHeader(json: Uint8Array | string, fileSize: number): SafetensorsEntry[] {
  const text = typeof json === 'string' ? json : Buffer.from(json).toString('utf8');
  const base = 8 + Buffer.byteLength(text);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(text);
  } catch {
    throw meshError('MODEL_NOT_FOUND', 'a safetensors header is not JSON');
  }
  const out: SafetensorsEntry[] = [];
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const t = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const offsets = t.data_offsets as number[];
    const ok =
      typeof t.dtype === 'string' &&
      Array.isArray(t.shape) &&
      t.shape.every((d) => Number.isInteger(d) && d >= 0) &&
      Array.isArray(offsets) &&
      offsets.length === 2 &&
      offsets.every((o) => Number.isInteger(o) && o >= 0) &&
      offsets[0] <= offsets[1] &&
      base + offsets[1] <= fileSize;
    if (!ok) throw meshError('MODEL_NOT_FOUND', `tensor ${name} of a safetensors header is malformed or outside the file`);
    out.push({ name, dtype: t.dtype as string, shape: t.shape as number[], start: base + offsets[0], end: base + offsets[1] });
  }
  return out.sort((a, b) => a.start - b.start);
}

/** Files besides the weights a stage needs: config, tokenizer, chat template. Never code, never weights. */
export function isMetadataFile(name: string): boolean {
  return /^[A-Za-z0-9_][A-Za-z0-9_.-]*\.(json|model|jinja|txt|tiktoken)$/.test(name) && name !== 'model.safetensors.index.json';
}

const LAYER_TENSOR = /^(?:model\.)?layers\.(\d+)\./;

/** The head reuses the embedding when the checkpoint has no lm_head tensor (as mlx-lm's models decide). */
export function headIsTied(names: Iterable<string>): boolean {
  for (const n of names) if (n.startsWith('lm_head.')) return false;
  return true;
}

/** Whether layers [start, end) of n need this tensor: their layers, the embedding on the first stage (and
 *  on the last when the head is tied to it), the final norm and head on the last. */
export function needsTensor(name: string, start: number, end: number, nLayers: number, tied: boolean): boolean {
  const m = LAYER_TENSOR.exec(name);
  if (m) return start <= Number(m[1]) && Number(m[1]) < end;
  if (name.includes('embed_tokens')) return start === 0 || (tied && end === nLayers);
  return end === nLayers;
}

/** The items a stage with layers [start, end) fetches: every metadata file and only its tensors.
 *  An empty range ([0, 0]: a peer outside the plan) needs only the metadata (tokenizer). */
export function itemsForRange(index: WeightsIndex, range: [number, number], nLayers: number): WeightsItem[] {
  const [start, end] = range;
  const tensors = index.items.filter((i) => i.kind === 'tensor');
  const tied = headIsTied(tensors.map((t) => t.name));
  return index.items.filter((i) => (i.kind === 'file' ? isMetadataFile(i.name) : end > start && needsTensor(i.name, start, end, nLayers, tied)));
}

/** Bytes per element of the safetensors dtypes a checkpoint holds (MLX's quantized weights are U32). */
const SAFETENSORS_DTYPE_BYTES: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E4M3: 1, F8_E5M2: 1, U16: 2, I16: 2, F16: 2, BF16: 2, U32: 4, I32: 4, F32: 4, U64: 8, I64: 8, F64: 8,
};

/** Why a source's item cannot be written as given (null when it can): a file name that is not a plain
 *  metadata file name (no paths, no code), or a tensor whose size disagrees with its dtype and shape. */
export function badItem(item: WeightsItem): string | null {
  if (item.kind === 'file') return isMetadataFile(item.name) ? null : `file ${JSON.stringify(item.name)} is not a metadata file name`;
  const width = SAFETENSORS_DTYPE_BYTES[item.dtype ?? ''];
  if (!width || !item.shape) return `tensor ${item.name} has an unknown dtype ${JSON.stringify(item.dtype)}`;
  const elements = item.shape.reduce((n, d) => n * d, 1);
  return elements * width === item.size ? null : `tensor ${item.name} is ${item.size} bytes, not ${item.dtype} ${JSON.stringify(item.shape)}`;
}

/** What a source's index lacks for layers [start, end) (empty when it has everything): the config and
 *  a tokenizer, a tensor of every layer, the embedding on the first stage, the norm and a head on the last. */
export function missingFor(index: WeightsIndex, range: [number, number], nLayers: number): string[] {
  const [start, end] = range;
  const names = new Set(index.items.map((i) => `${i.kind}:${i.name}`));
  const tensors = index.items.filter((i) => i.kind === 'tensor').map((i) => i.name);
  const missing: string[] = [];
  if (!names.has('file:config.json')) missing.push('config.json');
  if (!names.has('file:tokenizer.json') && !names.has('file:tokenizer.model')) missing.push('a tokenizer');
  if (end <= start) return missing;
  for (let l = start; l < end; l++) {
    if (!tensors.some((n) => LAYER_TENSOR.exec(n)?.[1] === String(l))) missing.push(`layer ${l}`);
  }
  const embed = tensors.some((n) => n.includes('embed_tokens'));
  if (start === 0 && !embed) missing.push('the embedding');
  if (end === nLayers) {
    if (!tensors.some((n) => !LAYER_TENSOR.test(n) && /(^|\.)norm\./.test(n))) missing.push('the final norm');
    if (!embed && headIsTied(tensors)) missing.push('the output head');
  }
  return missing;
}

/** The receiver's safetensors file: header bytes, and each tensor's absolute offset after them. */
export interface ShardLayout {
  header: Buffer;
  offsets: Map<string, number>;
  size: number;
}

export function shardLayout(tensors: WeightsItem[]): ShardLayout {
  const json: Record<string, unknown> = { __metadata__: { format: 'mlx' } };
  let pos = 0;
  const rel = new Map<string, number>();
  for (const t of tensors) {
    json[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [pos, pos + t.size] };
    rel.set(t.name, pos);
    pos += t.size;
  }
  let text = JSON.stringify(json);
  // safetensors pads the header with spaces so the data starts 8-byte aligned.
  text += ' '.repeat((8 - ((8 + Buffer.byteLength(text)) % 8)) % 8);
  const body = Buffer.from(text, 'utf8');
  const header = Buffer.alloc(8 + body.byteLength);
  header.writeBigUInt64LE(BigInt(body.byteLength), 0);
  body.copy(header, 8);
  const offsets = new Map([...rel].map(([k, v]) => [k, header.byteLength + v]));
  return { header, offsets, size: header.byteLength + pos };
}

/** Resume bookkeeping, kept next to the partial download: per item, the bytes written in order and
 *  whether its sha256 was checked. Written after every chunk, so a killed fetch loses at most one. */
export interface FetchProgress {
  digest: string;
  done: Record<string, { bytes: number; verified: boolean }>;
}

export function itemKey(item: Pick<WeightsItem, 'kind' | 'name'>): string {
  return `${item.kind}:${item.name}`;
}

/** One request to the source: `length` bytes of an item from `offset`. */
export interface Chunk {
  item: WeightsItem;
  offset: number;
  length: number;
}

/** What is still to fetch: every unverified item from where its written bytes end, in chunks. */
export function remainingChunks(items: WeightsItem[], progress: FetchProgress | null, chunkBytes: number): Chunk[] {
  const out: Chunk[] = [];
  for (const item of items) {
    const p = progress?.done[itemKey(item)];
    if (p?.verified) continue;
    for (let offset = Math.min(p?.bytes ?? 0, item.size); offset < item.size; offset += chunkBytes) {
      out.push({ item, offset, length: Math.min(chunkBytes, item.size - offset) });
    }
  }
  return out;
}

/** Bytes of these items (what a range costs to fetch). */
export function totalBytes(items: WeightsItem[]): number {
  return items.reduce((n, i) => n + i.size, 0);
}

/** Bytes already verified or written in order, per the progress record. */
export function bytesDone(items: WeightsItem[], progress: FetchProgress | null): number {
  return items.reduce((n, i) => {
    const p = progress?.done[itemKey(i)];
    return n + (p ? (p.verified ? i.size : Math.min(p.bytes, i.size)) : 0);
  }, 0);
}
