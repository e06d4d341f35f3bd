// N peers in this process on 127.0.0.1 (ephemeral ports, no mDNS), each with its own engine: what
// `demo` and the inference benchmark run. Peer i > 0 is pointed at peer 0; gossip does the rest.
import fs from 'node:fs';
import path from 'node:path';
import { StaticDiscovery } from '../discovery/static.ts';
import { meshError } from '../core/errors.ts';
import { defaults } from '../core/defaults.ts';
import { type MeshNode, startNode } from './node.ts';

export interface LocalMeshOptions {
  peers: number;
  /** Each peer's data dir is <root>/peer-<i> (its id persists there). */
  root: string;
  namePrefix: string;
  model: string;
  python: string;
  onStarted?: (node: MeshNode, index: number) => void;
}

export async function startLocalMesh(opts: LocalMeshOptions): Promise<MeshNode[]> {
  const nodes: MeshNode[] = [];
  try {
    for (let i = 0; i < opts.peers; i++) {
      const dataDir = path.join(opts.root, `peer-${i}`);
      fs.mkdirSync(dataDir, { recursive: true });
      const node = await startNode({
        dataDir,
        name: `${opts.namePrefix}-${i}`,
        cluster: `${opts.namePrefix}-${process.pid}`,
        host: '127.0.0.1',
        port: 0,
        apiHost: '127.0.0.1',
        apiPort: 0,
        discovery: [new StaticDiscovery({ peers: i ? [`127.0.0.1:${nodes[0].peer.port}`] : [], defaultPort: defaults.port })],
        model: opts.model,
        python: opts.python,
        timings: { settleMs: 300 },
      });
      nodes.push(node);
      opts.onStarted?.(node, i);
    }
  } catch (err) {
    await Promise.all(nodes.map((x) => x.stop()));
    throw err;
  }
  return nodes;
}

/** Waits until every stage has its layers; `onWaiting` hears each new reason it is not ready yet. */
export async function waitUntilReady(nodes: MeshNode[], timeoutMs: number, onWaiting?: (reason: string) => void): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    const reason = nodes[0].inference!.notReadyReason();
    if (!reason && nodes.every((x) => x.inference!.isReady())) return;
    if (reason && reason !== last) onWaiting?.(reason);
    last = reason ?? last;
    if (Date.now() > deadline) throw meshError('PLAN_FAILED', `the cluster did not become ready: ${reason}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
