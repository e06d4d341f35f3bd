// `mlx-mesh logs <ssh-target> [-f]`: show (or follow) the log of a peer started by `up`.
import { parseArgs } from 'node:util';
import { meshError } from '../../core/errors.ts';
import type { Command } from '../command.ts';
import { openSession, sshOptions, sshUsage } from '../remote/session.ts';
import { sq } from '../remote/shell.ts';

const usage = `
Usage: mlx-mesh logs <ssh-target> [-f] [-n lines] [options]

Prints the log of the peer that "mlx-mesh up" started there (<remote-data-dir>/logs/peer.log).

Options:
  -f, --follow       keep printing new lines until Ctrl-C
  -n, --lines <n>    how many of the last lines to print (default 200)
${sshUsage}`;

const options = { ...sshOptions, follow: { type: 'boolean', short: 'f' }, lines: { type: 'string', short: 'n' } } as const;

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  if (positionals.length !== 1) throw meshError('BAD_ARGUMENT', 'name one SSH target: mlx-mesh logs user@host');
  const lines = Number(values.lines ?? 200);
  if (!Number.isInteger(lines) || lines < 0) throw meshError('BAD_ARGUMENT', '--lines must be a whole number');
  const c = await openSession(positionals[0], values, (line) => process.stderr.write(`[${positionals[0]}] ${line}\n`));
  try {
    const exists = await c.host.exec(`test -f ${sq(c.layout.log)}`);
    if (exists.code !== 0) {
      throw meshError('REMOTE_FAILED', `${positionals[0]} has no log at ${c.layout.log}: start a peer there with "mlx-mesh up ${positionals[0]}"`);
    }
    process.stderr.write(`[${positionals[0]}] ${c.layout.log}\n`);
    const tail = c.host.exec(`tail -n ${lines}${values.follow ? ' -f' : ''} ${sq(c.layout.log)}`, {
      onStdout: (b) => process.stdout.write(b),
      onStderr: (b) => process.stderr.write(b),
    });
    if (!values.follow) {
      await tail;
      return 0;
    }
    // Following ends on Ctrl-C/SIGTERM (closing the connection ends the remote tail) or when the log goes away.
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
      tail.then(() => resolve(), () => resolve());
    });
    return 0;
  } finally {
    c.host.close();
  }
}

const command: Command = { usage, run };
export default command;
