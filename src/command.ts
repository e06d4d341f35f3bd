// What every command module exports, the exit codes (also in the README), and the options several
// commands share, so each command's option table is one `parseArgs` call with no repeated lines.
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { defaults } from '../core/defaults.ts';

export interface Command {
  usage: string;
  run(argv: string[]): Promise<number>;
}

/** Exit codes (also in the README). */
export const EXIT = { ok: 0, failure: 1, usage: 2, unreachable: 3, checksFailed: 4 } as const;

/** Options with the same meaning in every command that takes them. */
export const SHARED_OPTIONS = {
  'data-dir': { type: 'string' },
  python: { type: 'string' },
  json: { type: 'boolean', default: false },
} as const satisfies ParseArgsConfig['options'];

/** parseArgs in strict mode: an unknown option is a usage error (exit 2), never ignored. */
export function parseCommandArgs<O extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: O, allowPositionals = false) {
  return parseArgs({ args: argv, options, allowPositionals, strict: true });
}

/** `--data-dir`, else MLX_MESH_DATA_DIR, else ~/.mlx-mesh; always absolute. */
export function dataDirOption(values: { 'data-dir'?: string }): string {
  return path.resolve(values['data-dir'] ?? defaults.dataDir);
}
