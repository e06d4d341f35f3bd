// The CLI: one file per command under src/commands, loaded lazily; one place maps errors to exit codes.
import { MeshError } from '../transport/errors.ts';

export interface Command {
  summary: string;
  usage: string;
  run(argv: string[]): Promise<number>;
}

/** Exit codes (also in the README). */
export const EXIT = { ok: 0, failure: 1, usage: 2, unreachable: 3, checksFailed: 4 } as const;

const COMMANDS: Record<string, () => Promise<{ default: Command }>> = {
  join: () => import('./commands/join.ts'),
  status: () => import('./commands/status.ts'),
  generate: () => import('./commands/generate.ts'),
  demo: () => import('./commands/demo.ts'),
  setup: () => import('./commands/setup.ts'),
  doctor: () => import('./commands/doctor.ts'),
  up: () => import('./commands/up.ts'),
  down: () => import('./commands/down.ts'),
  logs: () => import('./commands/logs.ts'),
};

async function help(): Promise<string> {
  const lines: string[] = [];
  for (const [name, load] of Object.entries(COMMANDS)) {
    const summary = await load().then((m) => m.default.summary, () => '');
    lines.push(`  ${name.padEnd(10)} ${summary}`);
  }
  return [
    'mlx-mesh — run one language model across several machines',
    '',
    'Usage: mlx-mesh <command> [options]   (every command takes --help)',
    '',
    'Commands:',
    ...lines,
    '',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(await help());
    return name ? EXIT.ok : EXIT.usage;
  }
  if (name === '--version') {
    const { version } = await import('../package.json', { with: { type: 'json' } }).then((m) => m.default);
    process.stdout.write(`${version}\n`);
    return EXIT.ok;
  }
  const load = COMMANDS[name];
  if (!load) {
    process.stderr.write(`mlx-mesh: unknown command "${name}"\n\n${await help()}`);
    return EXIT.usage;
  }
  const command = (await load()).default;
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${command.usage.trim()}\n`);
    return EXIT.ok;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    return reportError(err);
  }
}

export function reportError(err: unknown): number {
  if (err instanceof MeshError) {
    process.stderr.write(`mlx-mesh: ${err.message} [${err.code}]\n`);
    if (err.code === 'BAD_ARGUMENT') return EXIT.usage;
    if (err.code === 'API_UNREACHABLE' || err.code === 'PEER_UNREACHABLE') return EXIT.unreachable;
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
