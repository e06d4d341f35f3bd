// The serving side of weights over the mesh: a peer that holds a model locally publishes its index
// (metadata files and tensors with sizes and sha256, built once per directory) and answers `weights-get`
// with the bytes of one item's range. Only items of its own index are read: a request names an item,
// which is looked up here, never a path; ranges outside the item and oversized chunks are refused.
import { createHash, type Hash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { isMeshError, meshError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { Link } from '../transport/link.ts';
import type { MessageOf } from '../transport/messages.ts';
import {
  indexDigest,
  isMetadataFile,
  itemKey,
  parseSafetensorsHeader,
  safetensorsHeaderLength,
  type SafetensorsEntry,
  type WeightsIndex,
  type WeightsItem,
} from './weights-index.ts';

interface Place {
  file: string;
  start: number;
  item: WeightsItem;
}

interface BuiltIndex {
  index: WeightsIndex;
  places: Map<string, Place>;
}

const READ_BYTES = 4 * 1024 * 1024;

/** Feeds bytes [start, end) of an open file into `hash`, read in bounded pieces. */
export async function hashInto(fh: fs.promises.FileHandle, start: number, end: number, hash: Hash, buf: Buffer = Buffer.allocUnsafe(READ_BYTES)): Promise<void> {
  for (let pos = start; pos < end; ) {
    const { bytesRead } = await fh.read(buf, 0, Math.min(buf.byteLength, end - pos), pos);
    if (bytesRead === 0) throw meshError('MODEL_NOT_FOUND', `file ended at ${pos} of ${end}`);
    hash.update(buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
}

/** sha256 of bytes [start, end) of an open file. */
export async function hashRange(fh: fs.promises.FileHandle, start: number, end: number, buf?: Buffer): Promise<string> {
  const hash = createHash('sha256');
  await hashInto(fh, start, end, hash, buf);
  return hash.digest('hex');
}

/** The tensors a safetensors file holds, from its header (names, dtypes, shapes, byte ranges). */
export async function readSafetensorsTensors(fh: fs.promises.FileHandle): Promise<SafetensorsEntry[]> {
  const size = (await fh.stat()).size;
  const first = Buffer.alloc(8);
  await fh.read(first, 0, 8, 0);
  const header = Buffer.alloc(safetensorsHeaderLength(first));
  await fh.read(header, 0, header.byteLength, 8);
  return parseSafetensorsHeader(header, size);
}

/** Reads a model directory's metadata files and safetensors headers and hashes every item once. */
export async function buildIndex(dir: string, name: string): Promise<BuiltIndex> {
  const files: WeightsItem[] = [];
  const tensors: WeightsItem[] = [];
  const places = new Map<string, Place>();
  const buf = Buffer.allocUnsafe(READ_BYTES);
  const entries = fs.readdirSync(dir, { withFileTypes: true }).filter((e) => e.isFile()).map((e) => e.name).sort();
  for (const f of entries) {
    const file = path.join(dir, f);
    if (isMetadataFile(f)) {
      const size = fs.statSync(file).size;
      const fh = await fs.promises.open(file, 'r');
      try {
        const item: WeightsItem = { kind: 'file', name: f, size, sha256: await hashRange(fh, 0, size, buf) };
        files.push(item);
        places.set(itemKey(item), { file, start: 0, item });
      } finally {
        await fh.close();
      }
    } else if (f.endsWith('.safetensors')) {
      const fh = await fs.promises.open(file, 'r');
      try {
        for (const t of await readSafetensorsTensors(fh)) {
          const key = itemKey({ kind: 'tensor', name: t.name });
          if (places.has(key)) continue;
          const item: WeightsItem = { kind: 'tensor', name: t.name, size: t.end - t.start, sha256: await hashRange(fh, t.start, t.end, buf), dtype: t.dtype, shape: t.shape };
          tensors.push(item);
          places.set(key, { file, start: t.start, item });
        }
      } finally {
        await fh.close();
      }
    }
  }
  tensors.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const items = [...files, ...tensors];
  return { index: { name, digest: indexDigest(items), items }, places };
}

/** Names, sizes and modification times of a directory's files: what an index was built from. */
function dirSignature(dir: string): string {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => {
      const st = fs.statSync(path.join(dir, e.name));
      return `${e.name}:${st.size}:${st.mtimeMs}`;
    })
    .sort()
    .join('|');
}

export interface WeightsSourceOptions {
  log: Logger;
  /** This peer's own copy of a model the plan names (never one fetched from a peer); null when it has none. */
  local(spec: string): { path: string; name: string } | null;
  /** Largest chunk a request may ask for. */
  maxChunkBytes: number;
}

export class WeightsSource {
  /** Bytes of weights this peer has sent to others. */
  bytesSent = 0;
  private readonly opts: WeightsSourceOptions;
  /** Built indexes by directory, and by digest for `weights-get`. */
  private readonly byDir = new Map<string, { sig: string; built: Promise<BuiltIndex> }>();
  private readonly byDigest = new Map<string, BuiltIndex>();

  constructor(opts: WeightsSourceOptions) {
    this.opts = opts;
  }

  /** Answers a `weights-query` or `weights-get` on the link it came from. */
  async handle(msg: MessageOf<'weights-query'> | MessageOf<'weights-get'>, link: Link): Promise<void> {
    try {
      if (msg.type === 'weights-query') await link.send(await this.query(msg));
      else await link.send({ type: 'weights-data', id: msg.id, data: await this.read(msg) });
    } catch (err) {
      if (!link.isOpen) return;
      const code = isMeshError(err) ? err.code : 'WEIGHTS_UNAVAILABLE';
      this.opts.log.warn('refused a weights request', { peer: link.remote.id, code, error: (err as Error).message });
      await link.send({ type: 'weights-error', id: msg.id, code, message: (err as Error).message }).catch(() => {});
    }
  }

  private async query(msg: MessageOf<'weights-query'>): Promise<MessageOf<'weights-index'>> {
    const local = this.opts.local(msg.model);
    if (!local) throw meshError('WEIGHTS_UNAVAILABLE', `this peer holds no local copy of ${msg.model}`);
    // Rebuilt when the directory's files change (a model replaced in place), so the index stays true.
    const sig = dirSignature(local.path);
    let cached = this.byDir.get(local.path);
    if (!cached || cached.sig !== sig) {
      this.opts.log.info('indexing model weights for peers (sha256 of every tensor, once)', { model: local.path });
      cached = { sig, built: buildIndex(local.path, local.name) };
      this.byDir.set(local.path, cached);
      cached.built.catch(() => this.byDir.delete(local.path));
    }
    const b = await cached.built;
    this.byDigest.set(b.index.digest, b);
    return { type: 'weights-index', id: msg.id, ...b.index };
  }

  private async read(msg: MessageOf<'weights-get'>): Promise<Buffer> {
    const built = this.byDigest.get(msg.digest);
    if (!built) throw meshError('WEIGHTS_UNAVAILABLE', `no index with digest ${msg.digest.slice(0, 12)} here (ask for the index first)`);
    const place = built.places.get(itemKey(msg));
    if (!place) throw meshError('WEIGHTS_UNAVAILABLE', `${msg.kind} ${JSON.stringify(msg.name)} is not in this model's index`);
    if (msg.length > this.opts.maxChunkBytes || msg.offset + msg.length > place.item.size) {
      throw meshError('WEIGHTS_UNAVAILABLE', `bytes ${msg.offset}+${msg.length} are outside ${msg.name} (${place.item.size} bytes) or over the ${this.opts.maxChunkBytes}-byte chunk limit`);
    }
    const fh = await fs.promises.open(place.file, 'r');
    try {
      const data = Buffer.allocUnsafe(msg.length);
      const { bytesRead } = await fh.read(data, 0, msg.length, place.start + msg.offset);
      if (bytesRead !== msg.length) throw meshError('WEIGHTS_UNAVAILABLE', `${msg.name} is shorter on disk than its index says`);
      this.bytesSent += msg.length;
      return data;
    } finally {
      await fh.close();
    }
  }
}
