// `mlx-mesh join`: run a peer. The same command on every machine; no roles, no hostfile.
import path from 'node:path';
import { parseArgs } from 'node:util';
import { MdnsDiscovery } from '../../discovery/mdns.ts';
import { StaticDiscovery } from '../../discovery/static.ts';
import type { DiscoverySource } from '../../peer/peer.ts';
import { parseGgufWeights } from '../../peer/model-source.ts';
import { checkPythonEnv } from '../../peer/python-env.ts';
import { meshError } from '../../core/errors.ts';
import { parseSize } from '../../core/size.ts';
import type { Command } from '../command.ts';
import { defaults, PROTOCOL_VERSION } from '../../core/defaults.ts';
import { parseCorsOrigins } from '../api/cors.ts';
import { startNode } from '../node.ts';

const usage = `
Usage: mlx-mesh join [options]

Runs a peer: finds the others (mDNS and --peer), links to them, takes part in the election and serves
the HTTP API. Run the same command on every machine. Ctrl-C leaves the cluster cleanly.

Options:
  --model <id|dir|file.gguf>  model to serve (the coordinator's choice wins; default: the bundled model)
  --memory <size>       memory this peer offers for layers, e.g. 8GB, 512MiB (default ${defaults.memoryFraction * 100}% of RAM,
                        or MLX_MESH_MEMORY_BYTES); the plan gives it no more than that
  --gguf-weights <auto|quantized|float32>  a GGUF model's quantized tensors: kept quantized where MLX
                        multiplies them fast (auto: the GPU), else dequantized to float32 (or MLX_MESH_GGUF_WEIGHTS)
  --port <n>            peer port (default ${defaults.port})
  --host <addr>         address the peer port binds (default 0.0.0.0)
  --api-port <n>        HTTP API port (default ${defaults.apiPort})
  --api-host <addr>     HTTP API bind address (default ${defaults.apiHost}); beyond loopback it needs --api-key
  --api-key <key>       key every API request but /health must send as "Authorization: Bearer <key>"
                        (or MLX_MESH_API_KEY)
  --insecure-api        let the API listen beyond loopback without a key (anyone who reaches it can use it)
  --cors-origin <url>   a browser origin allowed to call the API (repeatable or comma-separated; none by default)
  --peer <host:port>    a peer to link to, repeatable; works with or without mDNS
  --no-mdns             do not use mDNS (only --peer)
  --cluster <name>      cluster name; peers of other clusters are ignored (default "${defaults.cluster}")
  --secret <secret>     cluster secret (or MLX_MESH_SECRET): only peers that know it can join
  --python <path>       Python interpreter for the engine
  --data-dir <dir>      where the peer id, venv and models live (default ${defaults.dataDir})
  --name <name>         display name (default: hostname)
`;

export function parsePort(value: string | undefined, flag: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 65535) throw meshError('BAD_ARGUMENT', `${flag} must be a port number 0-65535, got "${value}"`);
  return n;
}

async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      memory: { type: 'string' },
      'gguf-weights': { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      'api-port': { type: 'string' },
      'api-host': { type: 'string' },
      'api-key': { type: 'string' },
      'insecure-api': { type: 'boolean' },
      'cors-origin': { type: 'string', multiple: true },
      peer: { type: 'string', multiple: true },
      'no-mdns': { type: 'boolean' },
      cluster: { type: 'string' },
      secret: { type: 'string' },
      python: { type: 'string' },
      'data-dir': { type: 'string' },
      name: { type: 'string' },
    },
    strict: true,
    allowPositionals: false,
  });
  const port = parsePort(values.port, '--port', defaults.port);
  const dataDir = path.resolve(values['data-dir'] ?? defaults.dataDir);
  const cluster = values.cluster ?? defaults.cluster;
  if (!/^[\w.-]{1,63}$/.test(cluster)) throw meshError('BAD_ARGUMENT', `--cluster must be 1-63 letters, digits, ".", "_" or "-"`);
  if (values['api-key'] === '') throw meshError('BAD_ARGUMENT', '--api-key must not be empty');
  const apiKey = values['api-key'] ?? (process.env.MLX_MESH_API_KEY || undefined);
  const corsOrigins = parseCorsOrigins(values['cors-origin'] ?? []);
  // Listening before the node starts: a Ctrl-C during start-up leaves cleanly too, as soon as it can.
  const leaving = new Promise<string>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  const discovery: DiscoverySource[] = [new StaticDiscovery({ peers: values.peer ?? [], defaultPort: defaults.port })];
  const node = await startNode({
    dataDir,
    name: values.name,
    cluster,
    host: values.host,
    port,
    apiHost: values['api-host'] ?? defaults.apiHost,
    apiPort: parsePort(values['api-port'], '--api-port', defaults.apiPort),
    apiKey,
    insecureApi: values['insecure-api'],
    corsOrigins,
    discovery,
    discoveryFor: values['no-mdns']
      ? undefined
      : async (peer) =>
          new MdnsDiscovery({
            id: peer.id,
            name: peer.identity.name,
            port: peer.port,
            cluster,
            protocol: PROTOCOL_VERSION,
            serviceType: defaults.mdnsServiceType,
            memory: Number(peer.extraCapabilities.usableMemory) || undefined,
          }),
    model: values.model,
    usableMemoryBytes: values.memory === undefined ? undefined : parseSize(values.memory, '--memory'),
    ggufWeights: values['gguf-weights'] === undefined ? undefined : parseGgufWeights(values['gguf-weights']),
    python: values.python,
    secret: values.secret ?? (process.env.MLX_MESH_SECRET || undefined),
  });
  // The same check as `setup`, in the background: the peer joins either way, and the user learns the fix.
  // Aborted on leave: the check's Python child must not hold the exit.
  const checking = new AbortController();
  void checkPythonEnv({ python: values.python, dataDir, signal: checking.signal }).then(
    (env) => {
      if (!env.ok && !checking.signal.aborted) process.stderr.write(`mlx-mesh: the engine's Python environment is not ready: ${env.problems.join('; ')}\n  fix: ${env.fix}\n`);
    },
    () => {},
  );
  process.stdout.write(
    `mlx-mesh peer ${node.peer.id} (${node.peer.identity.name}) on port ${node.peer.port}, cluster "${cluster}", API ${node.api.url}${apiKey ? ' (API key required)' : ''}\n`,
  );
  const signal = await leaving;
  process.stderr.write(`\n${signal}: leaving the cluster\n`);
  checking.abort();
  await node.stop();
  return 0;
}

const command: Command = { usage, run };
export default command;
