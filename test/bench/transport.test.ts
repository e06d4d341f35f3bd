// `mlx-mesh bench transport` as a user runs it, at a tiny size: the JSON's shape and every ratio a finite
// number on loopback; against a live secured peer, refused without the secret and measured with it.
// Speed is the benchmark's business, never asserted here.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startTestNode, TEST_PYTHON, tempDir } from '../helpers/mesh.ts';
import { BIN, ROOT } from '../helpers/process.ts';

function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: ROOT, timeout: 200_000, maxBuffer: 16 << 20, env: { ...process.env, MLX_MESH_LOG: 'warn', ...env } }, (err, out, errOut) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out, err: errOut }),
    );
  });
}

const finite = (x: unknown) => typeof x === 'number' && Number.isFinite(x) && x > 0;
const TINY = ['--sizes', '1K,8K', '--stream-bytes', '64K', '--pings', '3', '--rounds', '1', '--json'];

function assertFigures(f: { mbps: number; p50_ms: number; p99_ms: number; cpu_ms_per_frame: number | null }, what: string) {
  assert.ok(finite(f.mbps) && finite(f.p50_ms) && finite(f.p99_ms) && f.p99_ms >= f.p50_ms, `${what}: ${JSON.stringify(f)}`);
}

test('loopback: mesh, raw TCP, gRPC and the engine hop per size, finite ratios, a chart', async () => {
  const chart = path.join(tempDir(), 'transport.svg');
  const r = await cli(['bench', 'transport', ...TINY, '--python', TEST_PYTHON, '--chart', chart]);
  assert.is(r.code, 0, r.err);
  assert.match(r.err, /8 KiB\s+grpc/, 'progress on stderr');
  const out = JSON.parse(r.out);
  assert.is(out.meta.target, 'loopback');
  assert.is(out.meta.loadavg.length, 3);
  assert.equal(out.sizes.map((s: { bytes: number }) => s.bytes), [1024, 8192]);
  for (const s of out.sizes) {
    for (const col of ['mesh', 'tcp', 'grpc', 'engine']) assertFigures(s[col], `${s.bytes} ${col}`);
    assert.equal(Object.keys(s.ratios).sort(), ['cpu_vs_grpc', 'cpu_vs_tcp', 'p50_vs_grpc', 'p50_vs_tcp', 'stream_vs_grpc', 'stream_vs_tcp']);
    assert.ok(finite(s.mesh.cpu_ms_per_frame) && s.engine.cpu_ms_per_frame === null);
    for (const [k, v] of Object.entries(s.ratios)) assert.ok(finite(v), `${s.bytes} ${k}: ${v}`);
  }
  assert.ok(out.goals.some((g: { goal: string; value: number }) => /8 KiB ping-pong/.test(g.goal) && finite(g.value)));
  const svg = fs.readFileSync(chart, 'utf8');
  assert.match(svg, /^<svg/);
  assert.match(svg, /8 KiB MB\/s ÷ raw TCP/);
});

test('--peer: a secured live peer refuses the bench without the secret, answers it with, and never counts it as a member', async () => {
  const node = await startTestNode({ secret: 's3cret' });
  try {
    const target = `127.0.0.1:${node.peer.port}`;
    const refused = await cli(['bench', 'transport', '--peer', target, '--no-engine', ...TINY]);
    assert.is.not(refused.code, 0);
    assert.match(refused.err, /AUTH_FAILED/);

    const r = await cli(['bench', 'transport', '--peer', target, '--no-engine', ...TINY], { MLX_MESH_SECRET: 's3cret' });
    assert.is(r.code, 0, r.err);
    const out = JSON.parse(r.out);
    assert.is(out.meta.target, target);
    for (const s of out.sizes) {
      assertFigures(s.mesh, `${s.bytes} mesh`);
      assert.equal([s.tcp, s.grpc, s.engine], [null, null, null], 'baselines are loopback-only');
    }
    assert.equal(node.peer.live().map((p) => p.id), [node.peer.id], 'the bench never joined the cluster');
  } finally {
    await node.stop();
  }
});

test('bad options are usage errors', async () => {
  const r = await cli(['bench', 'transport', '--sizes', 'big']);
  assert.is(r.code, 2);
  assert.match(r.err, /not a size/);
  const help = await cli(['bench', 'transport', '--help']);
  assert.is(help.code, 0);
  assert.match(help.out, /--peer <host:port>/);
});

test.run();
