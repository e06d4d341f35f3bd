// `mlx-mesh bench weights`: a layer range's weights over the mesh's real link (peer/weights-source.ts
// serving, peer/weights-fetch.ts pulling, chunked, written and sha256-checked), against copying the same
// bytes from file to file on this disk (the limit without a network) in the same run.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { defaults } from '../core/defaults.ts';
import { meshError } from '../core/errors.ts';
import { createLogger } from '../core/log.ts';
import { WeightsFetcher } from '../peer/weights-fetch.ts';
import { shardLayout, type WeightsItem } from '../peer/weights-index.ts';
import { WeightsSource } from '../peer/weights-source.ts';
import { EXIT, parseCommandArgs } from '../src/command.ts';
import { dial } from '../transport/dialer.ts';
import type { Message } from '../transport/messages.ts';
import { LinkServer } from '../transport/server.ts';
import { benchEndpoint } from './transport.ts';

export const usage = `
Usage: mlx-mesh bench weights [options]

Writes a random-weight checkpoint of --mb MiB (8 layers, an embedding and a head) in a temporary
directory, then, in one run: copies its safetensors file on this disk (the baseline), has a source index
it (sha256 of every tensor, once), and fetches every tensor over a loopback mesh link as a peer without
the model does (${defaults.weightsChunkBytes / 2 ** 20} MiB chunks, ${defaults.weightsWindow} in flight, each written in place and checked).

Ratio
  fetch_vs_copy   mesh fetch MB/s ÷ file copy MB/s

Options:
  --mb <n>          checkpoint size in MiB (default 256)
  --chunk <MiB>     bytes per request (default ${defaults.weightsChunkBytes / 2 ** 20})
  --window <n>      requests in flight (default ${defaults.weightsWindow})
  --json            one JSON object on stdout: {meta, copy_mbps, index_mbps, fetch_mbps, ratios}

Progress goes to stderr. Keep the load average with the figures (it is in the output).
`;

const OPTIONS = {
  mb: { type: 'string', default: '256' },
  chunk: { type: 'string', default: String(defaults.weightsChunkBytes / 2 ** 20) },
  window: { type: 'string', default: String(defaults.weightsWindow) },
  json: { type: 'boolean', default: false },
} as const;

const N_LAYERS = 8;

/** A checkpoint of random bytes: config, tokenizer, and one safetensors file of `bytes` in 10 tensors. */
export function writeRandomCheckpoint(dir: string, bytes: number): number {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ model_type: 'llama', num_hidden_layers: N_LAYERS }));
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), '{}');
  const each = Math.max(4, Math.floor(bytes / (N_LAYERS + 2) / 4) * 4);
  const names = ['model.embed_tokens.weight', ...Array.from({ length: N_LAYERS }, (_, l) => `model.layers.${l}.mlp.up_proj.weight`), 'lm_head.weight'];
  const items: WeightsItem[] = names.map((name) => ({ kind: 'tensor', name, size: each, sha256: '', dtype: 'F32', shape: [each / 4] }));
  items.push({ kind: 'tensor', name: 'model.norm.weight', size: 4, sha256: '', dtype: 'F32', shape: [1] });
  const layout = shardLayout(items);
  const fd = fs.openSync(path.join(dir, 'model.safetensors'), 'w');
  try {
    fs.writeSync(fd, layout.header);
    const block = randomBytes(Math.min(each, 16 * 2 ** 20));
    for (const it of items) {
      for (let off = 0; off < it.size; off += block.byteLength) {
        fs.writeSync(fd, block, 0, Math.min(block.byteLength, it.size - off), layout.offsets.get(it.name)! + off);
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return layout.size;
}

const progress = (msg: string) => process.stderr.write(`${msg}\n`);
const round = (x: number) => Math.round(x * 100) / 100;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, OPTIONS);
  const mb = Number(values.mb);
  const chunk = Number(values.chunk);
  const window = Number(values.window);
  if (!(mb > 0) || !(chunk > 0) || chunk * 2 ** 20 > defaults.weightsMaxChunkBytes || !(window >= 1)) {
    throw meshError('BAD_ARGUMENT', `--mb must be positive, --chunk between 0 and ${defaults.weightsMaxChunkBytes / 2 ** 20} MiB, --window at least 1`);
  }
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mlx-mesh-bench-weights-'));
  const log = createLogger('bench');
  const server = new LinkServer({ ...benchEndpoint('bench-source', defaults.cluster, undefined), host: '127.0.0.1', port: 0 });
  try {
    const modelDir = path.join(root, 'model');
    progress(`writing a ${mb} MiB random checkpoint …`);
    const size = writeRandomCheckpoint(modelDir, mb * 2 ** 20);
    const file = path.join(modelDir, 'model.safetensors');

    let t = performance.now();
    fs.copyFileSync(file, path.join(root, 'copy.safetensors'));
    const copyS = (performance.now() - t) / 1000;
    fs.rmSync(path.join(root, 'copy.safetensors'));

    const source = new WeightsSource({ log, local: () => ({ path: modelDir, name: 'bench' }), maxChunkBytes: defaults.weightsMaxChunkBytes });
    server.on('link', (l) => {
      l.on('message', (m: Message) => {
        if (m.type === 'weights-query' || m.type === 'weights-get') void source.handle(m, l);
      });
      l.start();
    });
    await server.start();
    const link = await dial('127.0.0.1', server.port, benchEndpoint('bench-receiver', defaults.cluster, undefined));
    const fetcher = new WeightsFetcher({ dataDir: path.join(root, 'receiver'), log, chunkBytes: chunk * 2 ** 20, window });
    link.on('message', (m: Message) => {
      if (m.type === 'weights-index' || m.type === 'weights-data' || m.type === 'weights-error') fetcher.receive(m, link);
    });
    link.start();
    try {
      // The first query makes the source index the model (hashing every tensor); timed apart from the transfer.
      progress('indexing at the source …');
      t = performance.now();
      await fetcher.fetch({ spec: 'bench', range: [0, 0], nLayers: N_LAYERS, sources: [link] });
      const indexS = (performance.now() - t) / 1000;
      progress('fetching every tensor over the link …');
      t = performance.now();
      await fetcher.fetch({ spec: 'bench', range: [0, N_LAYERS], nLayers: N_LAYERS, sources: [link] });
      const fetchS = (performance.now() - t) / 1000;
      const mbps = (s: number) => round(size / 2 ** 20 / s);
      const out = {
        meta: { bytes: size, chunk_mib: chunk, window, loadavg: os.loadavg().map(round), cpus: os.cpus().length, node: process.version },
        copy_mbps: mbps(copyS),
        index_mbps: mbps(indexS),
        fetch_mbps: mbps(fetchS),
        sent_bytes: source.bytesSent,
        ratios: { fetch_vs_copy: round(mbps(fetchS) / mbps(copyS)) },
      };
      if (values.json) process.stdout.write(`${JSON.stringify(out)}\n`);
      else {
        process.stdout.write(
          `${(size / 2 ** 20).toFixed(1)} MiB checkpoint, ${chunk} MiB chunks, ${window} in flight, load average ${out.meta.loadavg.join(' ')}\n` +
            `  file copy        ${out.copy_mbps} MB/s\n  source index     ${out.index_mbps} MB/s (sha256 of every tensor, once)\n` +
            `  mesh fetch       ${out.fetch_mbps} MB/s (written and verified)   fetch_vs_copy ${out.ratios.fetch_vs_copy}\n`,
        );
      }
    } finally {
      link.terminate();
    }
    return EXIT.ok;
  } finally {
    await server.stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
}
