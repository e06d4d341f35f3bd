// A tiny component logger on stderr. Library code never prints to stdout.
// Enable with MLX_MESH_LOG=debug (everything), MLX_MESH_LOG=link,election (components at debug),
// or MLX_MESH_LOG=silent. The default shows info and above.

type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

function enabled(component: string, level: Level): boolean {
  const spec = (process.env.MLX_MESH_LOG ?? '').trim();
  if (spec === 'silent') return false;
  if (spec === 'debug') return true;
  if (spec && spec.split(',').includes(component)) return true;
  return ORDER[level] >= ORDER.info;
}

function format(fields?: Record<string, unknown>): string {
  if (!fields) return '';
  return Object.entries(fields)
    .map(([k, v]) => ` ${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join('');
}

export function createLogger(component: string, prefix = ''): Logger {
  const write = (level: Level) => (msg: string, fields?: Record<string, unknown>) => {
    if (!enabled(component, level)) return;
    const time = new Date().toISOString().slice(11, 23);
    process.stderr.write(`${time} ${level.padEnd(5)} ${prefix}${component}: ${msg}${format(fields)}\n`);
  };
  return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') };
}
