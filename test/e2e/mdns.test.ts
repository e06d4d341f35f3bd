// End to end: full `mlx-mesh join` peers, each in its own network namespace, with no --peer at all.
// They must find each other over real mDNS, link, and agree on one coordinator; a peer started with
// another --cluster must stay on its own. Needs root and iproute2 (see test/helpers/netns.ts).
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createNetwork, type TestNetwork } from '../helpers/netns.ts';
import { STORIES, TEST_PYTHON } from '../helpers/mesh.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const API_PORT = 8100;
const DEADLINE_MS = Number(process.env.MLX_MESH_E2E_TIMEOUT_MS ?? 25_000);

interface Running {
  name: string;
  address: string;
  child: ChildProcess;
  output: () => string;
  exited: Promise<void>;
}

let net: TestNetwork;
const peers: Running[] = [];
const dirs: string[] = [];

/** One request per connection (agent: false), so no keep-alive socket outlives the test. */
function getJson(url: string): Promise<any> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c) => (body += c));
      res.on('end', () => {
        try {
          resolve(JSON.parse(body));
        } catch {
          reject(new Error(`${url}: HTTP ${res.statusCode} ${body.slice(0, 200)}`));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${url}: timed out`)));
    req.on('error', reject);
  });
}

function join(ns: number, name: string, extra: string[] = []): Running {
  const { name: nsName, address } = net.namespaces[ns];
  const dataDir = mkdtempSync(path.join(os.tmpdir(), `mlx-mesh-e2e-${name}-`));
  dirs.push(dataDir);
  const args = ['bin/mlx-mesh.js', 'join', '--port', '50051', '--api-port', String(API_PORT), '--api-host', '0.0.0.0', '--insecure-api',
    '--data-dir', dataDir, '--name', name, '--model', STORIES, '--python', TEST_PYTHON, ...extra];
  const child = net.run(nsName, process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (c) => (out += c));
  child.stderr!.setEncoding('utf8').on('data', (c) => (out += c));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const running = { name, address, child, output: () => out, exited };
  peers.push(running);
  return running;
}

async function view(p: Running): Promise<any> {
  if (p.child.exitCode !== null) {
    throw new Error(`peer ${p.name} exited with code ${p.child.exitCode}:\n${p.output()}`);
  }
  return getJson(`http://${p.address}:${API_PORT}/distributed/gpu-info`).catch((err) => ({ error: String(err.message) }));
}

test.before(async () => {
  net = await createNetwork(3);
});

test.after(async () => {
  for (const p of peers) if (p.child.exitCode === null) p.child.kill('SIGTERM');
  await Promise.race([Promise.all(peers.map((p) => p.exited)), new Promise((r) => setTimeout(r, 5000))]);
  await net?.teardown(); // SIGKILLs anything still running
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

test('peers find each other over mDNS and agree on a coordinator; another cluster stays apart', async () => {
  const a = join(0, 'a');
  const b = join(1, 'b');
  const c = join(2, 'c', ['--cluster', 'other']);

  const started = Date.now();
  let last: any[] = [];
  for (;;) {
    last = await Promise.all([a, b, c].map(view));
    const [va, vb, vc] = last;
    if (va.world_size === 2 && vb.world_size === 2 && va.coordinator && va.coordinator === vb.coordinator &&
      vc.world_size === 1 && vc.coordinator) break;
    if (Date.now() - started > DEADLINE_MS) {
      assert.unreachable(`no agreement after ${DEADLINE_MS} ms; last views: ${JSON.stringify(last)}\n` +
        [a, b, c].map((p) => `--- ${p.name}:\n${p.output().slice(-2000)}`).join('\n'));
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  const [va, vb, vc] = last;
  const ids = (v: any) => v.devices.map((d: any) => d.device_id).sort();
  assert.equal(ids(va), ids(vb), 'a and b list the same devices');
  assert.ok(ids(va).includes(va.coordinator), 'the coordinator is one of the two');
  assert.not.ok(ids(va).includes(vc.coordinator), 'c is not part of a and b');
  assert.equal(ids(vc), [vc.coordinator], 'c is alone and its own coordinator');

  // Ctrl-C leaves cleanly: every peer exits 0 soon after SIGTERM (mDNS goodbye sent, sockets closed).
  for (const p of [a, b, c]) p.child.kill('SIGTERM');
  const timeout = new Promise((r) => setTimeout(r, 5000, 'timeout'));
  assert.not.equal(await Promise.race([Promise.all([a, b, c].map((p) => p.exited)), timeout]), 'timeout', 'a peer ignored SIGTERM');
  for (const p of [a, b, c]) assert.is(p.child.exitCode, 0, `${p.name}:\n${p.output()}`);
});

test.run();
