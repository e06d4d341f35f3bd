// Drives test/helpers/mdns-node.ts in a namespace: collects its JSON-line events, waits for one,
// stops it politely (stdin "stop") or kills it.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestNetwork } from './netns.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type NodeEvent = Record<string, any> & { event: string };

export interface MdnsNode {
  events: NodeEvent[];
  exitCode: number | null;
  exited: Promise<void>;
  stderr(): string;
  waitFor(match: (e: NodeEvent) => boolean, timeoutMs?: number): Promise<NodeEvent>;
  stop(): Promise<void>;
  kill(): Promise<void>;
}

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SCRIPT = path.join(ROOT, 'test/helpers/mdns-node.ts');

export function startMdnsNode(net: TestNetwork, ns: string, args: string[]): MdnsNode {
  const child = net.run(ns, process.execPath, ['--import', 'tsx', SCRIPT, ...args], {
    cwd: ROOT,
    env: { ...process.env, MLX_MESH_LOG: process.env.MLX_MESH_LOG ?? 'warn' },
  });
  const events: NodeEvent[] = [];
  const waiters = new Set<() => void>();
  let err = '';
  let buffered = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    const lines = buffered.split('\n');
    buffered = lines.pop()!;
    for (const line of lines) if (line.trim()) events.push(JSON.parse(line));
    for (const w of waiters) w();
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const node: MdnsNode = {
    events,
    get exitCode() {
      return child.exitCode;
    },
    exited,
    stderr: () => err,
    waitFor(match, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = events.find(match);
          if (!found) return;
          cleanup();
          resolve(found);
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out on ${ns} ${args.join(' ')}; events: ${JSON.stringify(events)}; stderr: ${err}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    async stop() {
      if (child.exitCode !== null) return;
      child.stdin!.write('stop\n');
      await node.waitFor((e) => e.event === 'stopped');
      child.stdin!.end();
      await exited;
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
  return node;
}
