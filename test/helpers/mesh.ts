// createTestMesh(n): n real peers in this process on 127.0.0.1, port 0, linked through --peer
// addresses (no mDNS), with fast timings. Every node is stopped by mesh.stop().
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { StaticDiscovery } from '../../discovery/static.ts';
import { resolvePython } from '../../peer/python-env.ts';
import { defaults } from '../../core/defaults.ts';
import { type MeshNode, type NodeOptions, startNode } from '../../src/node.ts';

/** The engine interpreter of this machine's managed venv (set up by .ci/run or `mlx-mesh setup`). */
export const TEST_PYTHON = resolvePython({ dataDir: defaults.dataDir }).path;
export const STORIES = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../../shared/models/stories260K.gguf');
/** stories260K's golden greedy continuation of "Once upon a time" (60 tokens; its README). */
export const STORIES_GREEDY =
  ', there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily';

export const FAST = {
  heartbeatMs: 200,
  heartbeatMisses: 3,
  handshakeTimeoutMs: 2000,
  dialBackoffMinMs: 50,
  dialBackoffMaxMs: 500,
  settleMs: 300,
};

export function tempDir(prefix = 'mlx-mesh-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export interface TestMesh {
  nodes: MeshNode[];
  add(opts?: Partial<NodeOptions> & { peers?: string[] }): Promise<MeshNode>;
  stop(): Promise<void>;
}

export async function startTestNode(opts: Partial<NodeOptions> & { peers?: string[] } = {}): Promise<MeshNode> {
  return startNode({
    dataDir: opts.dataDir ?? tempDir(),
    host: '127.0.0.1',
    port: 0,
    apiHost: '127.0.0.1',
    apiPort: 0,
    timings: FAST,
    inference: false,
    python: TEST_PYTHON,
    ...opts,
    discovery: [new StaticDiscovery({ peers: opts.peers ?? [], defaultPort: 50051 }), ...(opts.discovery ?? [])],
  });
}

export async function createTestMesh(n: number, opts: Partial<NodeOptions> = {}): Promise<TestMesh> {
  const nodes: MeshNode[] = [];
  const mesh: TestMesh = {
    nodes,
    async add(extra = {}) {
      const peers = extra.peers ?? (nodes[0] ? [`127.0.0.1:${nodes[0].peer.port}`] : []);
      const node = await startTestNode({ name: `p${nodes.length}`, ...opts, ...extra, peers });
      nodes.push(node);
      return node;
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
  try {
    for (let i = 0; i < n; i++) await mesh.add();
  } catch (err) {
    await mesh.stop();
    throw err;
  }
  return mesh;
}

/** Polls until check() returns a truthy value, or throws with the last value after timeoutMs. */
export async function waitFor<T>(check: () => T | Promise<T>, timeoutMs = 10_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      last = await check();
      if (last) return last as T;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(last) ?? String(last)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * GET and parse JSON, on a connection of its own: the tests' peers share this process with references
 * that block it for seconds (execFileSync), and a kept-alive socket whose server-side idle timer fires
 * as the loop resumes would be closed under the next request ("fetch failed").
 */
export async function getJson<T = any>(url: string): Promise<T> {
  const res = await fetch(url, { headers: { connection: 'close' } });
  return (await res.json()) as T;
}

/** The directory a peer converted stories260K.gguf into (the mlx_lm reference reads it). */
export function convertedStories(node: MeshNode): string {
  const dir = path.join(node.dataDir, 'models');
  return path.join(dir, fs.readdirSync(dir).find((d) => d.startsWith('stories260K-'))!);
}

/**
 * A greedy /v1/completions on a node, unless `extra` says otherwise; throws unless it answers 200.
 * Each on a connection of its own: a reference run takes seconds, and a kept-alive connection the
 * server times out meanwhile would reset the next request (ECONNRESET).
 */
export async function completeOn(node: MeshNode, prompt: string, maxTokens: number, extra: Record<string, unknown> = {}): Promise<any> {
  const res = await fetch(`${node.api.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', connection: 'close' },
    body: JSON.stringify({ prompt, max_tokens: maxTokens, temperature: 0, ...extra }),
  });
  if (res.status !== 200) throw new Error(`/v1/completions answered ${res.status}: ${await res.text()}`);
  return res.json();
}
