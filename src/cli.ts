// The CLI: one file per command under src/commands, loaded only when run; one place maps errors to
// exit codes. Summaries are static so `--help` loads no command module.
import { MeshError } from '../core/errors.ts';
import { PACKAGE_VERSION } from '../core/paths.ts';
import { type Command, EXIT } from './command.ts';

interface Entry {
  summary: string;
  load: () => Promise<{ default: Command }>;
}

export const COMMANDS: Record<string, Entry> = {
  join: { summary: 'run a peer (the same command on every machine)', load: () => import('./commands/join.ts') },
  status: { summary: 'show the cluster as one peer sees it', load: () => import('./commands/status.ts') },
  generate: { summary: 'one completion through the mesh, streamed, with tok/s', load: () => import('./commands/generate.ts') },
  demo: { summary: 'run N local peers with the default model and one generation', load: () => import('./commands/demo.ts') },
  setup: { summary: 'create or repair the managed Python environment', load: () => import('./commands/setup.ts') },
  doctor: { summary: 'check this machine and the peers, with a fix for each problem', load: () => import('./commands/doctor.ts') },
  up: { summary: 'start peers on other machines over SSH', load: () => import('./commands/up.ts') },
  down: { summary: 'stop peers started with "up"', load: () => import('./commands/down.ts') },
  logs: { summary: "show a remote peer's log", load: () => import('./commands/logs.ts') },
  // The one import of bench/ from src/: the CLI entry may load any command (see test/layers.test.ts).
  bench: { summary: 'measure transport and inference speed against baselines', load: () => import('../bench/command.ts') },
};

function help(): string {
  return [
    'mlx-mesh — run one language model across several machines',
    '',
    'Usage: mlx-mesh <command> [options]   (every command takes --help)',
    '',
    'Commands:',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`),
    '',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(help());
    return name ? EXIT.ok : EXIT.usage;
  }
  if (name === '--version') {
    process.stdout.write(`${PACKAGE_VERSION}\n`);
    return EXIT.ok;
  }
  const entry = COMMANDS[name];
  if (!entry) {
    process.stderr.write(`mlx-mesh: unknown command "${name}"\n\n${help()}`);
    return EXIT.usage;
  }
  try {
    const command = (await entry.load()).default;
    // `bench <suite> --help` is the suite's help, handled by bench itself.
    if (name !== 'bench' && (rest.includes('--help') || rest.includes('-h'))) {
      process.stdout.write(`${command.usage.trim()}\n`);
      return EXIT.ok;
    }
    return await command.run(rest);
  } catch (err) {
    return reportError(err);
  }
}

export function reportError(err: unknown): number {
  if (err instanceof MeshError) {
    process.stderr.write(`mlx-mesh: ${err.message} [${err.code}]\n`);
    if (err.code === 'BAD_ARGUMENT' || err.code === 'INSECURE_API') return EXIT.usage;
    if (err.code === 'API_UNREACHABLE' || err.code === 'PEER_UNREACHABLE') return EXIT.unreachable;
    if (err.code === 'CHECKS_FAILED') return EXIT.checksFailed;
    return EXIT.failure;
  }
  // parseArgs throws TypeError with code ERR_PARSE_ARGS_* for unknown or malformed options.
  const code = (err as { code?: string }).code ?? '';
  if (code.startsWith('ERR_PARSE_ARGS')) {
    process.stderr.write(`mlx-mesh: ${(err as Error).message}\n`);
    return EXIT.usage;
  }
  process.stderr.write(`mlx-mesh: unexpected error: ${(err as Error).stack ?? String(err)}\n`);
  return EXIT.failure;
}
