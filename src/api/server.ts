// The HTTP API every peer serves (contract in DESIGN.md). Routes are a table so inference can add its
// own; every failure becomes an OpenAI-shaped error, never a dropped socket.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { meshError } from '../../core/errors.ts';
import { createLogger } from '../../core/log.ts';
import { HttpError, sendError, sendJson } from './http.ts';
import { clusterView, gpuInfoView, healthView, type ViewSource } from './views.ts';
import { metricsText } from './metrics.ts';

export type Handler = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void> | void;

export interface ApiOptions {
  host: string;
  port: number;
  source: ViewSource;
}

const log = createLogger('api');

export class ApiServer {
  private server: http.Server | null = null;
  private readonly routes = new Map<string, Handler>();

  constructor(private readonly opts: ApiOptions) {
    const src = opts.source;
    this.route('GET', '/health', (_q, res) => sendJson(res, 200, healthView(src)));
    this.route('GET', '/distributed/gpu-info', (_q, res) => sendJson(res, 200, gpuInfoView(src)));
    this.route('GET', '/cluster', (_q, res) => sendJson(res, 200, clusterView(src)));
    this.route('GET', '/metrics', (_q, res) => {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      res.end(metricsText(src));
    });
  }

  route(method: string, path: string, handler: Handler): void {
    this.routes.set(`${method} ${path}`, handler);
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
    const server = http.createServer((req, res) => void this.handle(req, res));
    server.keepAliveTimeout = 5000;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        this.server = null;
        reject(err.code === 'EADDRINUSE' ? meshError('PORT_IN_USE', `API port ${this.opts.port} is already in use: stop the other process or pass --api-port`) : err);
      });
      server.listen(this.opts.port, this.opts.host, resolve);
    });
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const handler = this.routes.get(`${req.method} ${url.pathname}`);
    try {
      if (!handler) {
        const known = [...this.routes.keys()].some((k) => k.endsWith(` ${url.pathname}`));
        throw known
          ? new HttpError(405, `method ${req.method} is not allowed on ${url.pathname}`, 'invalid_request_error', 'method_not_allowed')
          : new HttpError(404, `no route ${req.method} ${url.pathname}`, 'invalid_request_error', 'not_found');
      }
      await handler(req, res, url);
    } catch (err) {
      if (err instanceof HttpError) return sendError(res, err);
      log.error('request failed', { path: url.pathname, error: (err as Error).stack ?? String(err) });
      sendError(res, new HttpError(500, `internal error: ${(err as Error).message}`, 'server_error', 'internal_error'));
    }
  }
}
