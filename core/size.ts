// Byte sizes as people write them (`--memory 8GB`, `512MiB`) and as messages show them.
import { meshError } from './errors.ts';

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  k: 2 ** 10,
  kib: 2 ** 10,
  m: 2 ** 20,
  mib: 2 ** 20,
  g: 2 ** 30,
  gib: 2 ** 30,
  t: 2 ** 40,
  tib: 2 ** 40,
};

/** `8GB` = 8×10⁹, `8GiB` = `8G` = 8×2³⁰, a bare number is bytes. BAD_ARGUMENT naming `what` otherwise. */
export function parseSize(text: string, what = 'size'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m ? UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) throw meshError('BAD_ARGUMENT', `${what} must be a size like 8GB, 512MiB or 1073741824, got "${text}"`);
  const bytes = Math.floor(Number(m[1]) * unit);
  if (bytes <= 0) throw meshError('BAD_ARGUMENT', `${what} must be more than 0 bytes, got "${text}"`);
  return bytes;
}

/** GiB with two decimals, or MiB below 1 GiB so small models still show figures. */
export function formatBytes(n: number): string {
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : `${(n / 2 ** 20).toFixed(1)} MiB`;
}
