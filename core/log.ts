// A tiny component logger on stderr. Library code never prints to stdout.
// MLX_MESH_LOG sets the level (debug, info, warn, error, silent; default info) and/or names
// components to show at debug level: MLX_MESH_LOG=warn,link,engine.

type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

function enabled(component: string, level: Level): boolean {
  const parts = (process.env.MLX_MESH_LOG ?? '').split(',').map((p) => p.trim()).filter(Boolean);
  if (parts.includes('silent')) return false;
  if (parts.includes(component)) return true;
  const threshold = (parts.find((p) => p in ORDER) as Level | undefined) ?? 'info';
  return ORDER[level] >= ORDER[threshold];
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
