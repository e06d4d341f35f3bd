// Weights over a real link: a source serving a model directory's index and bytes, a fetcher pulling one
// layer range into a local safetensors file. Only the range's bytes cross; a transfer cut off resumes with
// fewer bytes; bytes that fail their sha256 are fetched again, then refused; names outside the index and
// ranges outside an item are refused; no source holding the model is a clear error.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { isMeshError } from '../../core/errors.ts';
import { createLogger } from '../../core/log.ts';
import { dial } from '../../transport/dialer.ts';
import type { Link } from '../../transport/link.ts';
import type { Message, MessageOf } from '../../transport/messages.ts';
import { LinkServer } from '../../transport/server.ts';
import { type FetchState, WeightsFetcher } from '../../peer/weights-fetch.ts';
import { parseSafetensorsHeader, safetensorsHeaderLength, shardLayout, type WeightsItem } from '../../peer/weights-index.ts';
import { WeightsSource } from '../../peer/weights-source.ts';
import { endpoint } from '../helpers/links.ts';
import { tempDir } from '../helpers/mesh.ts';

const log = createLogger('weights-test');
const CHUNK = 64 * 1024;
const N_LAYERS = 4;

/** A model directory: config, tokenizer and one safetensors file of random float32 tensors. */
function writeModel(dir: string): Map<string, Buffer> {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ model_type: 'llama', num_hidden_layers: N_LAYERS }));
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify({ vocab: Array.from({ length: 500 }, (_, i) => `t${i}`) }));
  fs.writeFileSync(path.join(dir, 'modeling_evil.py'), 'raise SystemExit("never sent")');
  const tensors = new Map<string, Buffer>();
  const add = (name: string, bytes: number) => tensors.set(name, crypto.randomBytes(bytes));
  add('model.embed_tokens.weight', 512 * 1024);
  for (let l = 0; l < N_LAYERS; l++) {
    add(`model.layers.${l}.mlp.up_proj.weight`, 192 * 1024);
    add(`model.layers.${l}.input_layernorm.weight`, 1024);
  }
  add('model.norm.weight', 1024);
  add('lm_head.weight', 512 * 1024);
  const items: WeightsItem[] = [...tensors].map(([name, b]) => ({ kind: 'tensor', name, size: b.byteLength, sha256: '', dtype: 'F32', shape: [b.byteLength / 4] }));
  const layout = shardLayout(items);
  const fd = fs.openSync(path.join(dir, 'model.safetensors'), 'w');
  fs.writeSync(fd, layout.header);
  for (const [name, b] of tensors) fs.writeSync(fd, b, 0, b.byteLength, layout.offsets.get(name)!);
  fs.closeSync(fd);
  return tensors;
}

/** The tensors of a safetensors file, by name. */
function readShard(file: string): Map<string, Buffer> {
  const buf = fs.readFileSync(file);
  const n = safetensorsHeaderLength(buf.subarray(0, 8));
  return new Map(parseSafetensorsHeader(buf.subarray(8, 8 + n), buf.byteLength).map((t) => [t.name, buf.subarray(t.start, t.end)]));
}

interface Pair {
  source: WeightsSource;
  fetcher: WeightsFetcher;
  client(): Promise<Link>;
  stop(): Promise<void>;
}

/** A source peer listening on 127.0.0.1 and a fetcher that dials it (real links, real handshakes). */
async function pair(modelDir: string | null, dataDir: string, paceMs = 0): Promise<Pair> {
  const source = new WeightsSource({ log, local: (spec) => (spec === 'the-model' && modelDir ? { path: modelDir, name: 'tiny' } : null), maxChunkBytes: CHUNK });
  const server = new LinkServer({ ...endpoint('source'), host: '127.0.0.1', port: 0 });
  const links: Link[] = [];
  server.on('link', (l) => {
    links.push(l);
    l.on('message', (m: Message) => {
      if (m.type === 'weights-query' || m.type === 'weights-get') void source.handle(m, l);
    });
    l.start();
  });
  await server.start();
  const fetcher = new WeightsFetcher({ dataDir, log, chunkBytes: CHUNK, window: 4, paceMs });
  return {
    source,
    fetcher,
    async client() {
      const l = await dial('127.0.0.1', server.port, endpoint('receiver'));
      links.push(l);
      l.on('message', (m: Message) => {
        if (m.type === 'weights-index' || m.type === 'weights-data' || m.type === 'weights-error') fetcher.receive(m, l);
      });
      l.on('close', () => fetcher.linkDown(l));
      l.start();
      return l;
    },
    async stop() {
      for (const l of links) l.terminate();
      await server.stop();
    },
  };
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const fileBytes = (dir: string) => sum(['config.json', 'tokenizer.json'].map((f) => fs.statSync(path.join(dir, f)).size));

test('a last stage gets only its layers, the norm and the head, verified, in a safetensors file of its own', async () => {
  const modelDir = path.join(tempDir(), 'model');
  const tensors = writeModel(modelDir);
  const dataDir = tempDir();
  const p = await pair(modelDir, dataDir);
  try {
    const link = await p.client();
    const states: FetchState[] = [];
    const dir = await p.fetcher.fetch({ spec: 'the-model', range: [2, 4], nLayers: N_LAYERS, sources: [link], onProgress: (s) => states.push(s) });
    const want = [...tensors.keys()].filter((n) => /layers\.[23]\.|norm\.weight$|lm_head/.test(n) && !/layers\.[01]\./.test(n));
    const got = readShard(path.join(dir, 'model.safetensors'));
    assert.equal([...got.keys()].sort(), want.sort());
    for (const n of want) assert.ok(got.get(n)!.equals(tensors.get(n)!), `${n} arrived intact`);
    assert.is(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'), fs.readFileSync(path.join(modelDir, 'config.json'), 'utf8'));
    assert.not.ok(fs.existsSync(path.join(dir, 'modeling_evil.py')), 'code is never part of an index');
    const shardBytes = sum(want.map((n) => tensors.get(n)!.byteLength)) + fileBytes(modelDir);
    const last = states.at(-1)!;
    assert.is(last.state, 'done');
    assert.is(last.bytesReceived, shardBytes, 'bytes over the link = the range\'s tensors + metadata files');
    assert.is(p.source.bytesSent, shardBytes);
    assert.ok(shardBytes < 0.6 * last.modelBytes, `${shardBytes} of ${last.modelBytes} bytes`);
    const index = JSON.parse(fs.readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8'));
    assert.equal(Object.keys(index.weight_map).sort(), want.sort());

    // Fetched once: asking again sends nothing but the index.
    const before = p.source.bytesSent;
    assert.is(await p.fetcher.fetch({ spec: 'the-model', range: [2, 4], nLayers: N_LAYERS, sources: [link] }), dir);
    assert.is(p.source.bytesSent, before);

    // A new plan gives this peer layers 1-4: only layer 1 crosses the link; the rest is copied from the
    // range it fetched before, and checked.
    const wider: FetchState[] = [];
    const dir2 = await p.fetcher.fetch({ spec: 'the-model', range: [1, 4], nLayers: N_LAYERS, sources: [link], onProgress: (s) => wider.push(s) });
    const layer1 = [...tensors.keys()].filter((n) => n.includes('layers.1.'));
    assert.is(wider.at(-1)!.bytesReceived, sum(layer1.map((n) => tensors.get(n)!.byteLength)));
    assert.is(p.source.bytesSent, before + wider.at(-1)!.bytesReceived);
    const got2 = readShard(path.join(dir2, 'model.safetensors'));
    assert.equal([...got2.keys()].sort(), [...want, ...layer1].sort());
    for (const [n, b] of got2) assert.ok(b.equals(tensors.get(n)!), `${n} intact`);
    assert.is(fs.readFileSync(path.join(dir2, 'tokenizer.json'), 'utf8'), fs.readFileSync(path.join(modelDir, 'tokenizer.json'), 'utf8'));
  } finally {
    await p.stop();
  }
});

test('a transfer cut off mid-way resumes from what it wrote: fewer bytes the second time, the same result', async () => {
  const modelDir = path.join(tempDir(), 'model');
  const tensors = writeModel(modelDir);
  const dataDir = tempDir();
  const p = await pair(modelDir, dataDir, 15);
  try {
    const link = await p.client();
    let cutAt = 0;
    const first = await p.fetcher
      .fetch({
        spec: 'the-model',
        range: [0, 4],
        nLayers: N_LAYERS,
        sources: [link],
        onProgress: (s) => {
          if (!cutAt && s.bytesDone > 0.4 * s.bytesTotal) {
            cutAt = s.bytesDone;
            link.terminate('test: cut mid-transfer');
          }
        },
      })
      .catch((e) => e);
    assert.ok(isMeshError(first, 'WEIGHTS_UNAVAILABLE'), String(first));
    assert.match(first.message, /source: .*(closed|failed)/, first.message);
    const sentFirst = p.source.bytesSent;
    assert.ok(cutAt > 0 && sentFirst < sum([...tensors.values()].map((b) => b.byteLength)), `cut after ${cutAt} bytes`);

    const again = await p.client();
    const states: FetchState[] = [];
    const dir = await p.fetcher.fetch({ spec: 'the-model', range: [0, 4], nLayers: N_LAYERS, sources: [again], onProgress: (s) => states.push(s) });
    const last = states.at(-1)!;
    assert.is(last.state, 'done');
    assert.ok(states[0].bytesDone >= cutAt - 4 * CHUNK, `resumed at ${states[0].bytesDone} of ${last.bytesTotal}`);
    assert.ok(last.bytesReceived < last.bytesTotal - cutAt / 2, `the second run received ${last.bytesReceived} of ${last.bytesTotal} bytes`);
    assert.is(last.bytesReceived + states[0].bytesDone, last.bytesTotal);
    const got = readShard(path.join(dir, 'model.safetensors'));
    assert.is(got.size, tensors.size);
    for (const [n, b] of tensors) assert.ok(got.get(n)!.equals(b), `${n} intact after the resume`);
  } finally {
    await p.stop();
  }
});

test('bytes that fail their sha256 are fetched again, then refused with WEIGHTS_CHECKSUM', async () => {
  const modelDir = path.join(tempDir(), 'model');
  writeModel(modelDir);
  const p = await pair(modelDir, tempDir());
  try {
    const link = await p.client();
    // The model's file changes under the source once the receiver has its index: the source then sends
    // bytes its index does not describe.
    const corrupt = () => {
      const fd = fs.openSync(path.join(modelDir, 'model.safetensors'), 'r+');
      fs.writeSync(fd, crypto.randomBytes(fs.statSync(path.join(modelDir, 'model.safetensors')).size - 4096), 0, undefined, 4096);
      fs.closeSync(fd);
    };
    let corrupted = false;
    const onProgress = () => {
      if (!corrupted) (corrupted = true), corrupt();
    };
    const err = await p.fetcher.fetch({ spec: 'the-model', range: [1, 2], nLayers: N_LAYERS, sources: [link], onProgress }).catch((e) => e);
    assert.ok(isMeshError(err, 'WEIGHTS_CHECKSUM'), String(err));
    assert.match(err.message, /failed its sha256 twice/);
    // Asked again, the source sees the changed file and indexes it anew: the transfer verifies.
    const dir = await p.fetcher.fetch({ spec: 'the-model', range: [1, 2], nLayers: N_LAYERS, sources: [link] });
    assert.ok(fs.existsSync(path.join(dir, '.fetched')));
  } finally {
    await p.stop();
  }
});

test('the source reads only items of its own index, within their bounds', async () => {
  const modelDir = path.join(tempDir(), 'model');
  writeModel(modelDir);
  const p = await pair(modelDir, tempDir());
  try {
    const link = await p.client();
    const replies: Message[] = [];
    link.on('message', (m) => replies.push(m));
    await link.send({ type: 'weights-query', id: 'q', model: 'the-model' });
    const index = (await waitReply(replies, 'q')) as MessageOf<'weights-index'>;
    assert.is(index.type, 'weights-index');
    assert.not.ok(index.items.some((i) => i.name.endsWith('.py') || i.name.endsWith('.safetensors')));
    const get = (id: string, kind: 'file' | 'tensor', name: string, offset = 0, length = 16) =>
      link.send({ type: 'weights-get', id, digest: index.digest, kind, name, offset, length });
    await get('traversal', 'file', '../model/config.json');
    await get('code', 'file', 'modeling_evil.py');
    await get('past-end', 'file', 'config.json', 0, 1 << 15);
    await get('too-big', 'tensor', 'lm_head.weight', 0, CHUNK + 1);
    await link.send({ type: 'weights-get', id: 'no-index', digest: 'f'.repeat(64), kind: 'file', name: 'config.json', offset: 0, length: 4 });
    for (const id of ['traversal', 'code', 'past-end', 'too-big', 'no-index']) {
      const r = await waitReply(replies, id);
      assert.is(r.type, 'weights-error', id);
    }
    await get('ok', 'file', 'config.json', 0, 8);
    const ok = (await waitReply(replies, 'ok')) as MessageOf<'weights-data'>;
    assert.is(Buffer.from(ok.data).toString(), fs.readFileSync(path.join(modelDir, 'config.json'), 'utf8').slice(0, 8));
    assert.ok(link.isOpen, 'refusals keep the link');
  } finally {
    await p.stop();
  }
});

test('no linked peer holding the model is a clear WEIGHTS_UNAVAILABLE, not a hang', async () => {
  const p = await pair(null, tempDir());
  try {
    const link = await p.client();
    const err = await p.fetcher.fetch({ spec: 'the-model', range: [0, 2], nLayers: N_LAYERS, sources: [link] }).catch((e) => e);
    assert.ok(isMeshError(err, 'WEIGHTS_UNAVAILABLE'), String(err));
    assert.match(err.message, /no linked peer could send the-model for layers 0-2: source: this peer holds no local copy of the-model/);
    const none = await p.fetcher.fetch({ spec: 'the-model', range: [0, 2], nLayers: N_LAYERS, sources: [] }).catch((e) => e);
    assert.match(none.message, /no peers are linked/);
  } finally {
    await p.stop();
  }
});

test('an index naming a path outside the receiver\'s directory, or with a digest not its own, is refused before anything is written', async () => {
  const dataDir = tempDir();
  const server = new LinkServer({ ...endpoint('source'), host: '127.0.0.1', port: 0 });
  server.on('link', (l) => {
    l.on('message', (m: Message) => {
      if (m.type !== 'weights-query') return;
      const sha = crypto.createHash('sha256').update('{}').digest('hex');
      const items = [
        { kind: 'file' as const, name: 'config.json', size: 2, sha256: sha },
        { kind: 'file' as const, name: 'tokenizer.json', size: 2, sha256: sha },
        { kind: 'file' as const, name: '../../escaped.json', size: 2, sha256: sha },
      ];
      // 'x' names a file outside the directory; 'y' has plain names and a digest that is not theirs.
      void l.send({ type: 'weights-index', id: m.id, name: 'x', digest: sha, items: m.model === 'x' ? items : items.slice(0, 2) });
    });
    l.start();
  });
  await server.start();
  const fetcher = new WeightsFetcher({ dataDir, log });
  const link = await dial('127.0.0.1', server.port, endpoint('receiver'));
  link.on('message', (m: Message) => {
    if (m.type === 'weights-index' || m.type === 'weights-data' || m.type === 'weights-error') fetcher.receive(m, link);
  });
  link.start();
  try {
    const err = await fetcher.fetch({ spec: 'x', range: [0, 0], nLayers: N_LAYERS, sources: [link] }).catch((e) => e);
    assert.ok(isMeshError(err, 'WEIGHTS_UNAVAILABLE'), String(err));
    assert.match(err.message, /an index this peer refuses: file "\.\.\/\.\.\/escaped\.json" is not a metadata file name/);
    const forged = await fetcher.fetch({ spec: 'y', range: [0, 0], nLayers: N_LAYERS, sources: [link] }).catch((e) => e);
    assert.match(forged.message, /an index this peer refuses: its digest does not match its items/);
    assert.not.ok(fs.existsSync(path.join(dataDir, 'models')), 'nothing written');
  } finally {
    link.terminate();
    await server.stop();
  }
});

async function waitReply(replies: Message[], id: string): Promise<Message> {
  const end = Date.now() + 10_000;
  for (;;) {
    const r = replies.find((m) => 'id' in m && m.id === id);
    if (r) return r;
    if (Date.now() > end) throw new Error(`no reply to ${id}`);
    await new Promise((res) => setTimeout(res, 10));
  }
}

test.run();
