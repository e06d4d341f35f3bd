// `status --watch`'s picture of the cluster, the dashboard's in text: a header, one row per peer with
// its layer bar and live tokens/s, peers that left, the links with their RTTs and the recent events.
// Pure: the caller passes the terminal size and the clock; lines never exceed the width, and the
// screen never has more lines than fit, so redrawing in place never scrolls.
import { type Device, statusCell } from '../commands/status.ts';

/** A device of gpu-info, plus what the dashboard stream adds. */
export interface WatchDevice extends Device {
  ram_bytes?: number | null;
  tokens_per_sec: number;
  requests_in_flight: number;
}

export interface WatchState {
  self: string;
  cluster: string;
  cluster_status: string;
  term: number;
  world_size: number;
  model: string | null;
  n_layers: number | null;
  not_ready: string | null;
  devices: WatchDevice[];
  links: Array<{ a: string; b: string; rtt_ms: number | null }>;
}

export interface WatchEvent {
  seq: number;
  at: number;
  kind: string;
  text: string;
}

export interface ScreenOptions {
  columns: number;
  rows: number;
  color: boolean;
  now: number;
  /** Peers seen before that are no longer in the state, with when they went. */
  gone: Array<{ device: WatchDevice; at: number }>;
  /** Why the picture may be stale (the stream broke), or null. */
  problem: string | null;
}

const COLORS = { green: 32, yellow: 33, red: 31, dim: 2, bold: 1, cyan: 36 } as const;

function paint(on: boolean, color: keyof typeof COLORS, s: string): string {
  return on ? `\x1b[${COLORS[color]}m${s}\x1b[0m` : s;
}

const statusColor = (s: string): keyof typeof COLORS =>
  s === 'healthy' ? 'green' : s === 'failed' || s === 'degraded' || s === 'gone' ? 'red' : 'yellow';

function clock(at: number): string {
  return new Date(at).toTimeString().slice(0, 8);
}

function memory(bytes: number | null | undefined): string {
  return bytes ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : '-';
}

function bar(layers: [number, number] | null, total: number | null): string {
  if (!total) return '';
  return Array.from({ length: total }, (_, i) => (layers && i >= layers[0] && i < layers[1] ? '█' : '░')).join('');
}

/** Columns padded to their widest cell; colour is applied after padding so escapes do not count. */
function table(rows: string[][], colorOf: (row: number, col: number) => keyof typeof COLORS | null, color: boolean): string[] {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r, ri) =>
    r
      .map((c, ci) => {
        const cell = ci === r.length - 1 ? c : c.padEnd(widths[ci]);
        const k = colorOf(ri, ci);
        return k ? paint(color, k, cell) : cell;
      })
      .join('  ')
      .trimEnd(),
  );
}

/** Cuts a line to `width` visible characters, keeping (and closing) colour escapes. */
function fit(line: string, width: number): string {
  let visible = 0;
  let out = '';
  for (let i = 0; i < line.length; i++) {
    if (line[i] === '\x1b') {
      const end = line.indexOf('m', i);
      out += line.slice(i, end + 1);
      i = end;
      continue;
    }
    if (visible === width) return `${out}\x1b[0m`;
    out += line[i];
    visible++;
  }
  return out;
}

export function renderScreen(state: WatchState | null, events: WatchEvent[], o: ScreenOptions): string[] {
  const c = o.color;
  const lines: string[] = [];
  if (!state) {
    lines.push(`mlx-mesh · ${o.problem ?? 'connecting…'}`);
  } else {
    const tps = Math.max(0, ...state.devices.map((d) => d.tokens_per_sec));
    const self = state.devices.find((d) => d.device_id === state.self);
    lines.push(
      `${paint(c, 'bold', 'mlx-mesh')} · cluster ${state.cluster} · ${paint(c, statusColor(state.cluster_status), state.cluster_status.toUpperCase())} · ` +
        `model ${state.model ?? '(none)'} · term ${state.term} · ${state.world_size} peer(s) · ${tps.toFixed(1)} tok/s · seen from ${self?.name ?? state.self} · ${clock(o.now)}`,
    );
    lines.push(o.problem ? paint(c, 'red', o.problem) : state.not_ready ? paint(c, 'yellow', state.not_ready) : '');
    const rows = [['RANK', 'ROLE', 'NAME', 'HOST', 'STATUS', 'LAYERS', bar(null, state.n_layers) ? 'SPLIT' : '', 'TOK/S', 'IN FLIGHT', 'RAM', 'BACKEND']];
    const all = [...state.devices.map((d) => ({ d, gone: null as number | null })), ...o.gone.map((g) => ({ d: g.device, gone: g.at }))];
    for (const { d, gone } of all) {
      rows.push([
        gone ? '-' : String(d.rank),
        gone ? '' : d.role,
        d.name ?? d.device_id,
        d.hostname,
        gone ? `gone ${clock(gone)}` : statusCell(d),
        d.layers ? `${d.layers[0]}-${d.layers[1] - 1}` : '-',
        bar(d.layers, state.n_layers),
        gone ? '-' : d.tokens_per_sec.toFixed(1).padStart(5),
        gone ? '-' : String(d.requests_in_flight).padStart(9),
        memory(d.ram_bytes ?? d.memory_bytes),
        d.backend ?? '-',
      ]);
    }
    lines.push(...table(rows, (r, col) => (r === 0 ? 'dim' : col === 4 ? statusColor(all[r - 1].gone ? 'gone' : all[r - 1].d.status) : col === 6 ? 'cyan' : null), c));
    lines.push('');
    const name = new Map(state.devices.map((d) => [d.device_id, d.name ?? d.device_id]));
    const links = state.links.map((l) => `${name.get(l.a) ?? l.a} ↔ ${name.get(l.b) ?? l.b} ${l.rtt_ms === null ? '–' : `${l.rtt_ms.toFixed(2)} ms`}`);
    lines.push(`${paint(c, 'dim', 'LINKS')}  ${links.length ? links.join('   ') : '(none)'}`);
  }
  lines.push('', paint(c, 'dim', 'RECENT EVENTS'));
  const room = Math.max(0, o.rows - 1 - lines.length);
  const recent = [...events].sort((a, b) => b.seq - a.seq).slice(0, room);
  for (const e of recent) lines.push(`${clock(e.at)}  ${e.kind.padEnd(8)}  ${e.text}`);
  return lines.slice(0, Math.max(1, o.rows - 1)).map((l) => fit(l, o.columns));
}

/** One frame: cursor home, every line cleared to its end, the rest of the screen cleared. */
export function frame(lines: string[]): string {
  return `\x1b[H${lines.map((l) => `${l}\x1b[K`).join('\n')}\x1b[J`;
}
