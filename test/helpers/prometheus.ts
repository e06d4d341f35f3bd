// Reads a peer's /metrics with a real Prometheus text parser, and picks samples out of it.
import parse from 'parse-prometheus-text-format';

export type Scrape = ReturnType<typeof parse>;

export async function scrape(apiUrl: string): Promise<Scrape> {
  const res = await fetch(`${apiUrl}/metrics`);
  if (!res.ok) throw new Error(`/metrics answered ${res.status}`);
  return parse(await res.text());
}

function matching(s: Scrape, name: string, labels: Record<string, string>) {
  const family = s.find((f) => f.name === name);
  if (!family) return undefined;
  return family.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
}

/** A counter's or gauge's value; 0 when the series does not exist yet (counters start there). */
export function value(s: Scrape, name: string, labels: Record<string, string> = {}): number {
  return Number(matching(s, name, labels)?.value ?? 0);
}

/** A histogram's observation count. */
export function count(s: Scrape, name: string, labels: Record<string, string> = {}): number {
  return Number(matching(s, name, labels)?.count ?? 0);
}

export function has(s: Scrape, name: string): boolean {
  return s.some((f) => f.name === name);
}
