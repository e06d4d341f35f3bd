// The dashboard every peer serves: static ES modules and CSS from src/api/dashboard/ (shipped in the
// package, no build step, works offline) at `/`, and one SSE stream per open page with the cluster's
// state (pushed at once on every change, else every second) and its recent events.
import fs from 'node:fs';
import type { ServerResponse } from 'node:http';
import path from 'node:path';
import { PACKAGE_ROOT } from '../../core/paths.ts';
import type { Inference } from '../../peer/inference.ts';
import type { EventLog } from './event-log.ts';
import { HttpError } from './http.ts';
import type { ApiServer } from './server.ts';
import { gpuInfoView, type ViewSource } from './views.ts';

/** Where the assets are, from the sources (tests) and from dist/ (an installed package) alike. */
export const DASHBOARD_DIR = path.join(PACKAGE_ROOT, 'src', 'api', 'dashboard');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** What the page draws: gpu-info's devices plus the links between them with their RTTs. */
export function dashboardState(src: ViewSource, inference: Inference | null) {
  const { peer } = src;
  const gpu = gpuInfoView(src);
  const ram = new Map(peer.live().map((p) => [p.id, p.capabilities.totalMemory]));
  const info = {
    ...gpu,
    devices: gpu.devices.map((d) => ({
      ...d,
      ram_bytes: ram.get(d.device_id) ?? null,
      // Our own requests count now, not as of the last once-a-second report.
      requests_in_flight: d.device_id === peer.id && inference ? inference.inFlight : d.requests_in_flight,
    })),
  };
  const links = new Map<string, { a: string; b: string; rtt_ms: number | null }>();
  const addLink = (x: string, y: string, rtt: number | null) => {
    const [a, b] = x < y ? [x, y] : [y, x];
    const known = links.get(`${a} ${b}`);
    if (!known || known.rtt_ms === null) links.set(`${a} ${b}`, { a, b, rtt_ms: rtt });
  };
  // Our own links first (measured here, freshest), then what the other peers reported about theirs.
  for (const l of peer.membership.all()) addLink(peer.id, l.remote.id, l.rttMs);
  const live = new Set(info.devices.map((d) => d.device_id));
  for (const d of info.devices) {
    for (const [other, rtt] of Object.entries(src.extras?.(d.device_id)?.load?.rttMs ?? {})) {
      if (live.has(other)) addLink(d.device_id, other, rtt);
    }
  }
  return {
    self: peer.id,
    cluster: peer.cluster,
    ...info,
    n_layers: inference?.plan?.meta.nLayers ?? null,
    not_ready: src.notReady?.() ?? null,
    links: [...links.values()],
  };
}

function sendFile(res: ServerResponse, name: string): void {
  const ext = path.extname(name);
  // Only plain names of files in the folder: no path ever reaches the file system from the URL.
  if (!/^[\w-]+\.[a-z]+$/.test(name) || !TYPES[ext]) throw new HttpError(404, `no dashboard file ${name}`, 'invalid_request_error', 'not_found');
  let body: Buffer;
  try {
    body = fs.readFileSync(path.join(DASHBOARD_DIR, name));
  } catch {
    throw new HttpError(404, `no dashboard file ${name}`, 'invalid_request_error', 'not_found');
  }
  res.writeHead(200, { 'content-type': TYPES[ext], 'content-length': body.length, 'cache-control': 'no-cache' });
  res.end(body);
}

export function registerDashboard(api: ApiServer, src: ViewSource, inference: Inference | null, events: EventLog): void {
  // The page and its assets are the package's own static files, the same for everyone: they are public
  // so a browser can load them; every byte about the cluster comes through the stream, behind the key.
  api.route('GET', '/', (_q, res) => sendFile(res, 'index.html'), { public: true });

  const clients = new Set<ServerResponse>();
  let timer: NodeJS.Timeout | null = null;
  let pending: NodeJS.Timeout | null = null;
  const write = (res: ServerResponse, event: string, data: unknown) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  const pushState = () => {
    if (!clients.size) return;
    const state = dashboardState(src, inference);
    for (const res of clients) write(res, 'state', state);
  };
  // Changes arrive in bursts (a leave, a new term, a new plan): one push shortly after the first.
  const soon = () => {
    if (!clients.size || pending) return;
    pending = setTimeout(() => {
      pending = null;
      pushState();
    }, 50);
  };
  src.peer.on('up', soon);
  src.peer.on('down', soon);
  src.peer.on('leadership', soon);
  inference?.on('plan', soon);
  inference?.on('status', soon);
  events.on('event', (e) => {
    for (const res of clients) write(res, 'event', e);
  });

  api.route('GET', '/dashboard/stream', (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    res.write('retry: 1000\n\n');
    write(res, 'state', dashboardState(src, inference));
    write(res, 'events', events.recent());
    clients.add(res);
    timer ??= setInterval(pushState, 1000);
    res.on('close', () => {
      clients.delete(res);
      if (!clients.size && timer) {
        clearInterval(timer);
        timer = null;
      }
    });
  });
  // After the stream, which the first match would otherwise shadow.
  api.route('GET', '/dashboard/:file', (_q, res, _u, params) => sendFile(res, params.file), { public: true });
}
