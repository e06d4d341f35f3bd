// Cross-origin access for browsers, only for the origins the user listed (--cors-origin); none by default,
// so a web page the user happens to visit cannot call a peer on their network.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { meshError } from '../../core/errors.ts';
import { HttpError } from './http.ts';

export class Cors {
  private readonly origins: Set<string>;

  constructor(origins: readonly string[] = []) {
    this.origins = new Set(origins);
  }

  /** Adds Access-Control-Allow-Origin to the response when the request's origin is listed. */
  apply(req: IncomingMessage, res: ServerResponse): void {
    res.setHeader('vary', 'Origin');
    const origin = req.headers.origin;
    if (origin && this.origins.has(origin)) res.setHeader('access-control-allow-origin', origin);
  }

  /** Answers an OPTIONS preflight: 204 with the allowed methods and headers, or 403 naming the fix. */
  preflight(req: IncomingMessage, res: ServerResponse): void {
    const origin = req.headers.origin;
    if (!origin) throw new HttpError(405, 'method OPTIONS is only used for CORS preflight requests, which carry an Origin header', 'invalid_request_error', 'method_not_allowed');
    if (!this.origins.has(origin)) {
      throw new HttpError(403, `origin ${origin} may not call this API: start the peer with --cors-origin ${origin}`, 'invalid_request_error', 'cors_origin_not_allowed');
    }
    res.writeHead(204, {
      'access-control-allow-methods': 'GET, POST, OPTIONS',
      'access-control-allow-headers': req.headers['access-control-request-headers'] ?? 'authorization, content-type',
      'access-control-max-age': '600',
    });
    res.end();
  }
}

/** `--cors-origin` values (repeatable, or comma-separated), each checked to be a plain origin. */
export function parseCorsOrigins(values: readonly string[]): string[] {
  const out = values.flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean);
  for (const o of out) {
    let url: URL | null = null;
    try {
      url = new URL(o);
    } catch {}
    if (!url || !/^https?:$/.test(url.protocol) || url.origin !== o) {
      throw meshError('BAD_ARGUMENT', `--cors-origin "${o}" is not an origin: give scheme://host[:port] with no path, e.g. http://localhost:3000`);
    }
  }
  return out;
}
