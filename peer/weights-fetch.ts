// The receiving side of weights over the mesh: a peer without a local copy of the plan's model asks a
// linked peer for its index, then pulls only what its layer range needs (peer/weights-index.ts), in
// bounded chunks with a few requests in flight, into <dataDir>/models/mesh/<name>-<digest>/layers-<a>-<b>/:
// the metadata files and one safetensors file holding just its tensors, which mlx-lm loads lazily.
// Every item is checked against the source's sha256 before use; a transfer cut off resumes from what
// was written (a progress file beside it records bytes written in order and items verified).
import { createHash, type Hash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { defaults } from '../core/defaults.ts';
import { isMeshError, meshError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { Link } from '../transport/link.ts';
import type { MessageOf } from '../transport/messages.ts';
import {
  badItem,
  bytesDone,
  type FetchProgress,
  indexDigest,
  isMetadataFile,
  itemKey,
  itemsForRange,
  missingFor,
  remainingChunks,
  shardLayout,
  totalBytes,
  type WeightsIndex,
  type WeightsItem,
} from './weights-index.ts';
import { hashInto, readSafetensorsTensors } from './weights-source.ts';

type Reply = MessageOf<'weights-index'> | MessageOf<'weights-data'> | MessageOf<'weights-error'>;

/** A transfer as `status` shows it. */
export interface FetchState {
  state: 'fetching' | 'done' | 'failed';
  from: string;
  bytesDone: number;
  bytesTotal: number;
  /** Bytes that crossed the link in this transfer (less than bytesTotal after a resume). */
  bytesReceived: number;
  /** Of the model's whole index, for comparison. */
  modelBytes: number;
  mbPerSec?: number;
}

export interface FetchRequest {
  /** The plan's model, as the plan names it. */
  spec: string;
  range: [number, number];
  nLayers: number;
  /** Linked peers to ask, best first (the coordinator holds the model it planned). */
  sources: Link[];
  onProgress?: (s: FetchState) => void;
  /** False once the plan moved on: the transfer stops (and resumes if the range comes back). */
  stillWanted?: () => boolean;
}

export interface WeightsFetcherOptions {
  dataDir: string;
  log: Logger;
  chunkBytes?: number;
  window?: number;
  paceMs?: number;
}

const SHARD_FILE = 'model.safetensors';
const PROGRESS_FILE = '.fetch-progress.json';
const COMPLETE_FILE = '.fetched';

export class WeightsFetcher {
  private readonly opts: WeightsFetcherOptions;
  private readonly pending = new Map<string, { link: Link; resolve: (m: Reply) => void; reject: (e: Error) => void }>();
  private counter = 0;

  constructor(opts: WeightsFetcherOptions) {
    this.opts = opts;
  }

  /** A reply from a source. */
  receive(msg: Reply, link: Link): void {
    const p = this.pending.get(msg.id);
    if (p && p.link === link) {
      this.pending.delete(msg.id);
      p.resolve(msg);
    }
  }

  /** A link closed: its requests fail now rather than at their timeout. */
  linkDown(link: Link): void {
    for (const [id, p] of this.pending) {
      if (p.link !== link) continue;
      this.pending.delete(id);
      p.reject(meshError('LINK_CLOSED', `the link to ${link.remote.name} (${link.remote.id}) closed mid-transfer`));
    }
  }

  private ask(link: Link, msg: MessageOf<'weights-query'> | MessageOf<'weights-get'>, timeoutMs: number): Promise<Reply> {
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(msg.id);
        reject(meshError('WEIGHTS_UNAVAILABLE', `${link.remote.name} (${link.remote.id}) did not answer ${msg.type} within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      timer.unref();
      this.pending.set(msg.id, {
        link,
        resolve: (m) => (clearTimeout(timer), resolve(m)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      link.send(msg).catch((err) => {
        clearTimeout(timer);
        this.pending.delete(msg.id);
        reject(err);
      });
    });
  }

  private nextId(): string {
    return `w${++this.counter}`;
  }

  /**
   * Fetches what `range` needs from the first source that has it all; resolves with the local directory.
   * Fails with WEIGHTS_UNAVAILABLE when no source has it, WEIGHTS_CHECKSUM when bytes fail their sha256 twice.
   */
  async fetch(req: FetchRequest): Promise<string> {
    const reasons: string[] = [];
    for (const link of req.sources) {
      let index: WeightsIndex;
      try {
        const reply = await this.ask(link, { type: 'weights-query', id: this.nextId(), model: req.spec }, defaults.weightsIndexTimeoutMs);
        if (reply.type !== 'weights-index') throw meshError('WEIGHTS_UNAVAILABLE', reply.type === 'weights-error' ? reply.message : 'unexpected reply');
        index = reply;
      } catch (err) {
        reasons.push(`${link.remote.name}: ${(err as Error).message}`);
        continue;
      }
      // A source's names become file names and a safetensors header here: checked before anything is written.
      const bad =
        index.items.map(badItem).find((b) => b !== null) ?? (indexDigest(index.items) === index.digest ? null : 'its digest does not match its items');
      if (bad) {
        reasons.push(`${link.remote.name} sent an index this peer refuses: ${bad}`);
        continue;
      }
      const missing = missingFor(index, req.range, req.nLayers);
      if (missing.length) {
        reasons.push(`${link.remote.name} lacks ${missing.join(', ')}`);
        continue;
      }
      try {
        return await this.fetchFrom(link, index, req);
      } catch (err) {
        // A checksum failure or a plan that moved on is final; a source that went away is not.
        if (isMeshError(err, 'WEIGHTS_CHECKSUM') || (req.stillWanted && !req.stillWanted())) throw err;
        reasons.push(`${link.remote.name}: ${(err as Error).message}`);
      }
    }
    throw meshError(
      'WEIGHTS_UNAVAILABLE',
      `no linked peer could send ${req.spec} for layers ${req.range[0]}-${req.range[1]}` + (reasons.length ? `: ${reasons.join('; ')}` : ' (no peers are linked)'),
    );
  }

  private async fetchFrom(link: Link, index: WeightsIndex, req: FetchRequest): Promise<string> {
    const { log } = this.opts;
    const [start, end] = req.range;
    const slug = index.name.replace(/[^A-Za-z0-9_.-]+/g, '_').slice(0, 80) || 'model';
    const dir = path.join(this.opts.dataDir, 'models', 'mesh', `${slug}-${index.digest.slice(0, 12)}`, `layers-${start}-${end}`);
    const items = itemsForRange(index, req.range, req.nLayers);
    const tensors = items.filter((i) => i.kind === 'tensor');
    const total = totalBytes(items);
    const modelBytes = totalBytes(index.items);
    if (readText(path.join(dir, COMPLETE_FILE)) === index.digest) return dir;

    fs.mkdirSync(dir, { recursive: true });
    const progressPath = path.join(dir, PROGRESS_FILE);
    let progress = readProgress(progressPath, index.digest);
    const layout = shardLayout(tensors);
    const shardPath = path.join(dir, SHARD_FILE);
    if (tensors.length && fs.statSync(shardPath, { throwIfNoEntry: false })?.size !== layout.size) progress = null;
    progress ??= { digest: index.digest, done: {} };
    if (tensors.length) {
      if (!Object.keys(progress.done).length) fs.rmSync(shardPath, { force: true });
      const fh = fs.openSync(shardPath, fs.existsSync(shardPath) ? 'r+' : 'w+');
      fs.writeSync(fh, layout.header, 0, layout.header.byteLength, 0);
      fs.ftruncateSync(fh, layout.size);
      fs.closeSync(fh);
    }
    const where = (item: WeightsItem) =>
      item.kind === 'tensor' ? { file: shardPath, base: layout.offsets.get(item.name)! } : { file: path.join(dir, `${item.name}.part`), base: 0 };

    // Tensors and files this peer already fetched for another range of the same model are copied, not fetched.
    const reused = await reuseSiblings(path.dirname(dir), dir, index.digest, items, where, progress);
    if (reused) {
      writeProgress(progressPath, progress);
      log.info('reusing weights fetched for another layer range', { layers: `${start}-${end}`, mb: mib(reused) });
    }
    const resumedFrom = bytesDone(items, progress);
    log.info(resumedFrom ? 'resuming a weights transfer' : 'fetching weights from a peer', {
      from: link.remote.name,
      layers: `${start}-${end}`,
      items: items.length,
      mb: mib(total),
      done_mb: mib(resumedFrom),
      model_mb: mib(modelBytes),
    });
    const state: FetchState = { state: 'fetching', from: link.remote.name, bytesDone: resumedFrom, bytesTotal: total, bytesReceived: 0, modelBytes };
    const t0 = performance.now();
    let toldAt = 0;
    let loggedAt = performance.now();
    const tell = (force = false) => {
      const now = performance.now();
      if (!force && now - toldAt < defaults.weightsProgressMs) return;
      toldAt = now;
      const secs = (now - t0) / 1000;
      state.mbPerSec = secs > 0 ? Math.round((state.bytesReceived / 2 ** 20 / secs) * 10) / 10 : undefined;
      req.onProgress?.({ ...state });
      if (now - loggedAt >= defaults.weightsLogMs) {
        loggedAt = now;
        log.info('fetching weights', { from: state.from, done_mb: mib(state.bytesDone), mb: mib(total), mb_per_s: state.mbPerSec });
      }
    };
    const counted = (n: number) => {
      state.bytesReceived += n;
      state.bytesDone += n;
      tell();
    };
    tell(true);
    try {
      const failed = await this.transfer(link, index.digest, items, where, progress, progressPath, req, counted);
      if (failed.length) {
        for (const item of failed) state.bytesDone -= item.size;
        log.warn('fetched items failed their sha256; fetching them again', { items: failed.map((i) => i.name).join(' ') });
        const again = await this.transfer(link, index.digest, failed, where, progress, progressPath, req, counted);
        if (again.length) {
          const item = again[0];
          throw meshError('WEIGHTS_CHECKSUM', `${item.kind} ${item.name} from ${link.remote.name} failed its sha256 twice (expected ${item.sha256})`);
        }
      }
      // Verified metadata files take their names only now (also those verified before an interruption).
      for (const item of items) {
        const part = where(item).file;
        if (item.kind === 'file' && fs.existsSync(part)) fs.renameSync(part, path.join(dir, item.name));
      }
    } catch (err) {
      state.state = 'failed';
      tell(true);
      throw err;
    }
    if (tensors.length) {
      const weightMap = Object.fromEntries(tensors.map((t) => [t.name, SHARD_FILE]));
      // A partial index: the engine loads a directory with one non-strictly (peer/engine/.../shard.py).
      fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: layout.size }, weight_map: weightMap }, null, 1));
    }
    fs.writeFileSync(path.join(dir, COMPLETE_FILE), index.digest);
    fs.rmSync(progressPath, { force: true });
    state.state = 'done';
    tell(true);
    log.info('weights fetched and verified', {
      from: link.remote.name,
      layers: `${start}-${end}`,
      received_mb: mib(state.bytesReceived),
      shard_mb: mib(total),
      model_mb: mib(modelBytes),
      mb_per_s: state.mbPerSec,
      seconds: Math.round((performance.now() - t0) / 100) / 10,
    });
    return dir;
  }

  /**
   * Pulls the remaining chunks of every unverified item, one pipeline across items with up to `window`
   * requests in flight, each written in place in order and hashed as it arrives (a resumed item's bytes
   * already on disk are hashed first). Returns the items whose sha256 did not match: rewound to 0.
   */
  private async transfer(
    link: Link,
    digest: string,
    items: WeightsItem[],
    where: (item: WeightsItem) => { file: string; base: number },
    progress: FetchProgress,
    progressPath: string,
    req: FetchRequest,
    onBytes: (n: number) => void,
  ): Promise<WeightsItem[]> {
    const todo = items.filter((i) => !progress.done[itemKey(i)]?.verified);
    const chunks = remainingChunks(todo, progress, this.opts.chunkBytes ?? defaults.weightsChunkBytes);
    const window = this.opts.window ?? defaults.weightsWindow;
    const pace = this.opts.paceMs ?? defaults.weightsPaceMs;
    const failed: WeightsItem[] = [];
    const open = new Map<string, { fh: fs.promises.FileHandle; hash: Hash }>();
    let savedAt = performance.now();
    const save = (force: boolean) => {
      if (!force && performance.now() - savedAt < defaults.weightsProgressMs) return;
      savedAt = performance.now();
      writeProgress(progressPath, progress);
    };
    /** The item's file and running hash, with the bytes it already has on disk hashed. */
    const opened = async (item: WeightsItem) => {
      const key = itemKey(item);
      let o = open.get(key);
      if (!o) {
        const at = where(item);
        const fh = await fs.promises.open(at.file, fs.existsSync(at.file) ? 'r+' : 'w+');
        o = { fh, hash: createHash('sha256') };
        open.set(key, o);
        const had = Math.min(progress.done[key]?.bytes ?? 0, item.size);
        // A file shorter than its progress says leaves the hash short: the item fails its sha256 and is fetched again.
        await hashInto(fh, at.base, at.base + had, o.hash).catch(() => {});
      }
      return o;
    };
    const finish = async (item: WeightsItem) => {
      const o = await opened(item);
      const ok = o.hash.digest('hex') === item.sha256;
      await o.fh.close();
      open.delete(itemKey(item));
      progress.done[itemKey(item)] = { bytes: ok ? item.size : 0, verified: ok };
      save(true);
      if (!ok) failed.push(item);
    };
    const inFlight: Array<Promise<Reply>> = [];
    let next = 0;
    const issue = async () => {
      const c = chunks[next++];
      if (pace) await sleep(pace);
      const msg = { type: 'weights-get', id: this.nextId(), digest, kind: c.item.kind, name: c.item.name, offset: c.offset, length: c.length } as const;
      const p = this.ask(link, msg, defaults.weightsChunkTimeoutMs);
      p.catch(() => {}); // awaited in order below; a later chunk failing first must not go unhandled
      inFlight.push(p);
    };
    try {
      // Items with nothing left to fetch (empty, or fully written before an interruption) are checked at once.
      for (const item of todo) if (!chunks.some((c) => c.item === item)) await finish(item);
      for (let i = 0; i < chunks.length; i++) {
        while (next < chunks.length && inFlight.length < window) await issue();
        const reply = await inFlight.shift()!;
        if (req.stillWanted && !req.stillWanted()) throw meshError('PLAN_FAILED', 'the plan changed during the transfer');
        if (reply.type === 'weights-error') throw meshError('WEIGHTS_UNAVAILABLE', `${link.remote.name}: ${reply.message}`);
        const c = chunks[i];
        if (reply.type !== 'weights-data' || reply.data.byteLength !== c.length) {
          throw meshError('WEIGHTS_UNAVAILABLE', `${link.remote.name} sent ${reply.type === 'weights-data' ? reply.data.byteLength : 0} bytes for a ${c.length}-byte chunk of ${c.item.name}`);
        }
        const o = await opened(c.item);
        await o.fh.write(reply.data, 0, c.length, where(c.item).base + c.offset);
        o.hash.update(reply.data);
        progress.done[itemKey(c.item)] = { bytes: c.offset + c.length, verified: false };
        onBytes(c.length);
        if (c.offset + c.length === c.item.size) await finish(c.item);
        else save(false);
      }
    } finally {
      for (const o of open.values()) await o.fh.close();
      save(true);
    }
    return failed;
  }
}

/**
 * Copies unstarted items from this model's other finished ranges (sibling directories) into place, each
 * checked against its sha256 as it is copied; those become verified. Returns the bytes reused.
 */
async function reuseSiblings(
  parent: string,
  dir: string,
  digest: string,
  items: WeightsItem[],
  where: (item: WeightsItem) => { file: string; base: number },
  progress: FetchProgress,
): Promise<number> {
  const have = new Map<string, { file: string; start: number; size: number }>();
  for (const sib of fs.readdirSync(parent)) {
    const d = path.join(parent, sib);
    if (d === dir || readText(path.join(d, COMPLETE_FILE)) !== digest) continue;
    for (const f of fs.readdirSync(d)) if (isMetadataFile(f)) have.set(`file:${f}`, { file: path.join(d, f), start: 0, size: fs.statSync(path.join(d, f)).size });
    const shard = path.join(d, SHARD_FILE);
    if (!fs.existsSync(shard)) continue;
    const fh = await fs.promises.open(shard, 'r');
    try {
      for (const t of await readSafetensorsTensors(fh)) have.set(`tensor:${t.name}`, { file: shard, start: t.start, size: t.end - t.start });
    } finally {
      await fh.close();
    }
  }
  let reused = 0;
  const buf = Buffer.allocUnsafe(4 * 1024 * 1024);
  for (const item of items) {
    const key = itemKey(item);
    const from = have.get(key);
    if (!from || from.size !== item.size || progress.done[key]) continue;
    const at = where(item);
    const src = await fs.promises.open(from.file, 'r');
    const dst = await fs.promises.open(at.file, fs.existsSync(at.file) ? 'r+' : 'w+');
    const hash = createHash('sha256');
    try {
      for (let pos = 0; pos < item.size; ) {
        const { bytesRead } = await src.read(buf, 0, Math.min(buf.byteLength, item.size - pos), from.start + pos);
        if (bytesRead === 0) break;
        await dst.write(buf, 0, bytesRead, at.base + pos);
        hash.update(buf.subarray(0, bytesRead));
        pos += bytesRead;
      }
    } finally {
      await src.close();
      await dst.close();
    }
    if (hash.digest('hex') !== item.sha256) continue;
    progress.done[key] = { bytes: item.size, verified: true };
    reused += item.size;
  }
  return reused;
}

function mib(n: number): number {
  return Math.round((n / 2 ** 20) * 10) / 10;
}

function readText(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

function readProgress(file: string, digest: string): FetchProgress | null {
  try {
    const p = JSON.parse(fs.readFileSync(file, 'utf8')) as FetchProgress;
    return p.digest === digest && p.done && typeof p.done === 'object' ? p : null;
  } catch {
    return null;
  }
}

/** Atomically: a progress file is never half-written when the process is killed. */
function writeProgress(file: string, progress: FetchProgress): void {
  fs.writeFileSync(`${file}.tmp`, JSON.stringify(progress));
  fs.renameSync(`${file}.tmp`, file);
}
