// The HTTP API every peer serves (contract in DESIGN.md). Routes are a table so inference can add its
// own; every request passes CORS and the API key here, in one place, before any route runs; every
// failure becomes an OpenAI-shaped error, never a dropped socket.
import { randomBytes } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { bindRetrying } from '../../core/bind.ts';
import { defaults } from '../../core/defaults.ts';
import { meshError } from '../../core/errors.ts';
import { createLogger } from '../../core/log.ts';
import { checkExposure, requireKey } from './auth.ts';
import { Cors } from './cors.ts';
import { HttpError, sendError, sendJson } from './http.ts';
import { clusterView, gpuInfoView, healthView, type ViewSource } from './views.ts';

/**
 * `params` holds the route path's `:name` segments (`/debug/requests/:id` → `{ id }`) and a final
 * `*name` segment, which takes the rest of the path, slashes included; all decoded.
 */
export type Handler = (req: IncomingMessage, res: ServerResponse, url: URL, params: Record<string, string>) => Promise<void> | void;

export interface RouteOptions {
  /** Served without the API key: `/health` (load balancers and `doctor` probe it) and files that hold no data. */
  public?: boolean;
}

export interface ApiOptions {
  host: string;
  port: number;
  source: ViewSource;
  /** Bearer key required on every route that is not public; none: the API is open (loopback only by default). */
  apiKey?: string;
  /** Listen beyond loopback without a key: only when the user asked for it (--insecure-api). */
  insecure?: boolean;
  /** Browser origins allowed to call the API (--cors-origin); none by default. */
  corsOrigins?: string[];
  /** Told about every answered request: the route's path (or `unmatched`) and the status code. */
  onResponse?: (endpoint: string, status: number) => void;
  /** How long a port in use is tried again before PORT_IN_USE (core/bind.ts). */
  bindRetryMs?: number;
}

interface Route {
  method: string;
  segments: string[];
  handler: Handler;
  public: boolean;
}

const log = createLogger('api');

/** A path parameter's value, or null when it is empty or not valid percent-encoding. */
function decodeSegment(raw: string): string | null {
  try {
    return decodeURIComponent(raw) || null;
  } catch {
    return null;
  }
}

export class ApiServer {
  private server: http.Server | null = null;
  private starting: Promise<void> | null = null;
  private readonly routes: Route[] = [];
  private readonly cors: Cors;

  constructor(private readonly opts: ApiOptions) {
    const src = opts.source;
    this.cors = new Cors(opts.corsOrigins);
    this.route('GET', '/health', (_q, res) => sendJson(res, 200, healthView(src)), { public: true });
    this.route('GET', '/distributed/gpu-info', (_q, res) => sendJson(res, 200, gpuInfoView(src)));
    this.route('GET', '/cluster', (_q, res) => sendJson(res, 200, clusterView(src)));
  }

  route(method: string, path: string, handler: Handler, opts: RouteOptions = {}): void {
    this.routes.push({ method, segments: path.split('/'), handler, public: opts.public ?? false });
  }

  /** The routes whose path matches, with the values of their `:name` and `*name` segments. */
  private match(pathname: string): { route: Route; params: Record<string, string> }[] {
    const parts = pathname.split('/');
    const out: { route: Route; params: Record<string, string> }[] = [];
    for (const route of this.routes) {
      const rest = route.segments.at(-1)!.startsWith('*');
      if (rest ? parts.length < route.segments.length : route.segments.length !== parts.length) continue;
      const params: Record<string, string> = {};
      const ok = route.segments.every((seg, i) => {
        if (!seg.startsWith(':') && !seg.startsWith('*')) return seg === parts[i];
        const value = decodeSegment(seg.startsWith('*') ? parts.slice(i).join('/') : parts[i]);
        if (!value) return false;
        params[seg.slice(1)] = value;
        return true;
      });
      if (ok) out.push({ route, params });
    }
    return out;
  }

  get port(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? this.opts.port;
  }

  get url(): string {
    const host = this.opts.host.includes(':') ? `[${this.opts.host}]` : this.opts.host;
    return `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${this.port}`;
  }

  async start(): Promise<void> {
    if (this.server) return;
    checkExposure(this.opts.host, this.opts.apiKey, this.opts.insecure ?? false);
    if (!this.opts.apiKey && this.opts.insecure) log.warn('the API listens without a key beyond loopback (--insecure-api)', { host: this.opts.host });
    this.starting ??= bindRetrying(() => this.listen(), this.opts.bindRetryMs ?? defaults.bindRetryMs).finally(() => (this.starting = null));
    await this.starting;
  }

  /** One attempt to listen: PORT_IN_USE when the port is taken. */
  private async listen(): Promise<void> {
    const server = http.createServer((req, res) => void this.handle(req, res));
    server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        server.close();
        reject(err.code === 'EADDRINUSE' ? meshError('PORT_IN_USE', `API port ${this.opts.port} is already in use: stop the other process or pass --api-port`) : err);
      });
      server.listen(this.opts.port, this.opts.host, resolve);
    });
    this.server = server;
  }

  async stop(): Promise<void> {
    if (this.starting) await this.starting.catch(() => {});
    const server = this.server;
    if (!server) return;
    this.server = null;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    let endpoint = 'unmatched';
    // Every response carries an id; generations replace it with theirs (the one /debug/requests knows).
    res.setHeader('x-request-id', `req-${randomBytes(12).toString('hex')}`);
    res.once('close', () => this.opts.onResponse?.(endpoint, res.writableFinished ? res.statusCode : 499));
    try {
      this.cors.apply(req, res);
      // A preflight carries no credentials by design; it only learns what the real request may do.
      if (req.method === 'OPTIONS') return this.cors.preflight(req, res);
      const matches = this.match(url.pathname);
      // Unknown paths need the key too, so a stranger cannot even map the routes.
      if (this.opts.apiKey && !(matches.length && matches.every((m) => m.route.public))) requireKey(req, this.opts.apiKey);
      const found = matches.find((m) => m.route.method === req.method);
      if (!found) {
        throw matches.length
          ? new HttpError(405, `method ${req.method} is not allowed on ${url.pathname}`, 'invalid_request_error', 'method_not_allowed')
          : new HttpError(404, `no route ${req.method} ${url.pathname}`, 'invalid_request_error', 'not_found');
      }
      endpoint = found.route.segments.join('/');
      await found.route.handler(req, res, url, found.params);
    } catch (err) {
      if (err instanceof HttpError) return sendError(res, err);
      log.error('request failed', { path: url.pathname, error: (err as Error).stack ?? String(err) });
      sendError(res, new HttpError(500, `internal error: ${(err as Error).message}`, 'server_error', 'internal_error'));
    }
  }
}
