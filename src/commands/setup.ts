// `mlx-mesh setup`: build or repair the managed Python environment the engine runs in.
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ensurePythonEnv, REQUIREMENTS_FILE } from '../../peer/python-env.ts';
import type { Command } from '../command.ts';
import { defaults } from '../../core/defaults.ts';

const usage = `
Usage: mlx-mesh setup [--data-dir D] [--python P] [--force] [--json]

Creates (or repairs) the Python venv at <data-dir>/venv, installs the engine's pinned requirements
(${path.basename(REQUIREMENTS_FILE)}: mlx on macOS, mlx[cpu] on Linux, mlx-lm) with uv when present, else pip,
and checks that MLX imports and computes. Running it again when nothing changed only re-checks the imports.

Options:
  --data-dir <dir>   data dir holding the venv (default ${defaults.dataDir})
  --python <path>    base interpreter to build the venv from (default: the best Python ≥ 3.10 found:
                     Homebrew, python.org, then python3 on PATH)
  --force            rebuild even if the venv is up to date
  --json             print the result as JSON
`;

async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'data-dir': { type: 'string' },
      python: { type: 'string' },
      force: { type: 'boolean' },
      json: { type: 'boolean' },
    },
    strict: true,
  });
  const dataDir = path.resolve(values['data-dir'] ?? defaults.dataDir);
  const json = !!values.json;
  // Progress goes to stderr with --json so stdout stays one parseable document.
  const out = json ? process.stderr : process.stdout;
  const result = await ensurePythonEnv({
    dataDir,
    python: values.python,
    force: values.force,
    onStep: ({ step, detail, done }) => out.write(`${done ? '✅' : '…'} ${step}${detail ? `: ${detail}` : ''}\n`),
  });
  if (json) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return 0;
  }
  const lines = [
    result.changed
      ? `Installed with ${result.installer} in ${result.seconds.toFixed(1)} s:`
      : `Nothing to install: the environment is up to date (${result.seconds.toFixed(1)} s):`,
    `  venv         ${result.python}`,
    ...Object.entries(result.versions).map(([k, v]) => `  ${k.padEnd(12)} ${v}`),
    `  device       ${result.device ?? 'unknown'}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

const command: Command = { usage, run };
export default command;
