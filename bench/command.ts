// `mlx-mesh bench <suite>`: each suite is one module in bench/ exporting `usage` and `run(argv)`,
// loaded only when asked for.
import type { Command } from '../src/command.ts';
import { EXIT } from '../src/command.ts';

export interface Suite {
  usage: string;
  run(argv: string[]): Promise<number>;
}

const SUITES: Record<string, { summary: string; load: () => Promise<Suite> }> = {
  transport: { summary: 'mesh link vs raw TCP and gRPC per frame size, and the engine hop: MB/s, ping-pong p50/p99', load: () => import('./transport.ts') },
  weights: { summary: 'a layer range fetched over the mesh link (chunked, written, sha256-checked) vs a file copy: MB/s', load: () => import('./weights.ts') },
  inference: { summary: 'mlx_lm against the mesh with N peers: tok/s, prefill, concurrent streams, memory', load: () => import('./inference.ts') },
};

const usage = `
Usage: mlx-mesh bench <suite> [options]   (mlx-mesh bench <suite> --help for its options)

Measures speed as ratios against baselines run in the same process, with --json and --chart <file.svg>.

Suites:
${Object.entries(SUITES)
  .map(([name, s]) => `  ${name.padEnd(10)} ${s.summary}`)
  .join('\n')}
`;

async function run(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--help' || name === '-h') {
    process.stdout.write(`${usage.trim()}\n`);
    return EXIT.ok;
  }
  const suite = name ? SUITES[name] : undefined;
  if (!suite) {
    process.stderr.write(`${name ? `mlx-mesh: unknown bench suite "${name}"\n` : ''}${usage.trim()}\n`);
    return EXIT.usage;
  }
  const mod = await suite.load();
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${mod.usage.trim()}\n`);
    return EXIT.ok;
  }
  return mod.run(rest);
}

const command: Command = { usage, run };
export default command;
