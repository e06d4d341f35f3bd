// `mlx-mesh status`: the cluster as one peer's API sees it, as a table or JSON.
import { parseArgs } from 'node:util';
import { meshError } from '../../core/errors.ts';
import { API_KEY_HELP, API_KEY_OPTION, apiKeyFrom, authHeaders, keyRefused } from '../api-client.ts';
import type { Command } from '../command.ts';
import { defaults } from '../../core/defaults.ts';
import { watchCluster } from '../watch/watch.ts';

const usage = `
Usage: mlx-mesh status [--api URL] [--api-key KEY] [--json | --watch [--interval S]]

Shows every device of the cluster with its role, rank, layers and health, as seen by one peer.
With --watch: the dashboard's picture in the terminal, redrawn in place until Ctrl-C (tokens/s and
requests in flight per peer, links and their RTTs, peers that left, recent events).

Options:
  --api <url>   the peer's HTTP API (default http://${defaults.apiHost}:${defaults.apiPort})
  ${API_KEY_HELP}
  --json        print /distributed/gpu-info as JSON
  --watch       follow the cluster live
  --interval <s>  seconds between redraws with --watch (default 1)
`;

export interface Device {
  device_id: string;
  name?: string;
  hostname: string;
  status: string;
  role: string;
  rank: number;
  layers: [number, number] | null;
  memory_bytes: number;
  backend: string | null;
  /** Its layers' weights coming from another peer (see README "Weights over the mesh"). */
  fetch?: { state: string; from: string; bytes_done: number; bytes_total: number } | null;
}

/** A device's status, with the progress of weights it is fetching from a peer. */
export function statusCell(d: Device): string {
  const f = d.fetch;
  if (!f || f.state !== 'fetching') return d.status;
  return `${d.status} (fetching ${Math.floor((100 * f.bytes_done) / Math.max(1, f.bytes_total))}% from ${f.from})`;
}

export async function fetchJson<T>(url: string, timeoutMs = 5000, key?: string): Promise<T> {
  let res: Response;
  try {
    res = await fetch(url, { headers: authHeaders(key), signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    throw meshError('API_UNREACHABLE', `cannot reach ${url}: ${(err as Error).cause ?? (err as Error).message}. Is "mlx-mesh join" running there?`);
  }
  if (res.status === 401) throw keyRefused(url, key);
  if (!res.ok) throw meshError('API_UNREACHABLE', `${url} answered ${res.status}: ${await res.text()}`);
  return (await res.json()) as T;
}

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}

export function formatTable(info: { devices: Device[]; cluster_status: string; world_size: number; term: number; model: string | null }): string {
  const rows = [['RANK', 'ROLE', 'NAME', 'DEVICE', 'HOST', 'STATUS', 'LAYERS', 'MEMORY', 'BACKEND']];
  for (const d of info.devices) {
    rows.push([
      String(d.rank),
      d.role,
      d.name ?? '-',
      d.device_id,
      d.hostname,
      statusCell(d),
      d.layers ? `${d.layers[0]}-${d.layers[1] - 1}` : '-',
      gib(d.memory_bytes),
      d.backend ?? '-',
    ]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const lines = rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd());
  const head = `cluster ${info.cluster_status}, ${info.world_size} device(s), term ${info.term}, model ${info.model ?? '(none)'}`;
  return `${head}\n${lines.join('\n')}\n`;
}

async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { api: { type: 'string' }, json: { type: 'boolean' }, watch: { type: 'boolean' }, interval: { type: 'string' }, ...API_KEY_OPTION },
    strict: true,
  });
  const base = (values.api ?? `http://${defaults.apiHost}:${defaults.apiPort}`).replace(/\/$/, '');
  if (values.watch) {
    const interval = Number(values.interval ?? 1);
    if (!(interval >= 0.05) || values.json) throw meshError('BAD_ARGUMENT', values.json ? '--watch draws a picture; it does not print JSON' : '--interval must be a number of seconds ≥ 0.05');
    return watchCluster(base, apiKeyFrom(values['api-key']), interval * 1000);
  }
  if (values.interval) throw meshError('BAD_ARGUMENT', '--interval goes with --watch');
  const info = await fetchJson<Parameters<typeof formatTable>[0]>(`${base}/distributed/gpu-info`, 5000, apiKeyFrom(values['api-key']));
  process.stdout.write(values.json ? `${JSON.stringify(info, null, 2)}\n` : formatTable(info));
  return 0;
}

const command: Command = { usage, run };
export default command;
