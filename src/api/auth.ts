// Who may use the API: a Bearer key compared in constant time, and the rule that an API reachable from
// other machines needs one (or an explicit --insecure-api).
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { meshError } from '../../core/errors.ts';
import { HttpError } from './http.ts';

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/** Compares equal-length digests, so neither the key's length nor its prefix leaks through timing. */
export function keyMatches(expected: string, given: string): boolean {
  return timingSafeEqual(digest(expected), digest(given));
}

/** Throws the OpenAI-shaped 401 unless the request carries `Authorization: Bearer <key>`. */
export function requireKey(req: IncomingMessage, key: string): void {
  const header = req.headers.authorization;
  if (!header) {
    throw new HttpError(401, 'this API needs a key: send the header "Authorization: Bearer <key>" with the key the peer was started with (--api-key or MLX_MESH_API_KEY)', 'invalid_request_error', 'missing_api_key');
  }
  const m = /^Bearer\s+(.+)$/i.exec(header.trim());
  if (!m) throw new HttpError(401, 'the Authorization header must read "Bearer <key>"', 'invalid_request_error', 'invalid_api_key');
  if (!keyMatches(key, m[1])) {
    throw new HttpError(401, "the API key is not this peer's: use the key it was started with (--api-key or MLX_MESH_API_KEY)", 'invalid_request_error', 'invalid_api_key');
  }
}

export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\./.test(h) || /^::ffff:127\./.test(h);
}

/** An API beyond loopback without a key would serve anyone on the network: refuse unless asked to. */
export function checkExposure(host: string, key: string | undefined, insecure: boolean): void {
  if (key || insecure || isLoopback(host)) return;
  throw meshError(
    'INSECURE_API',
    `the API would listen on ${host} without a key, open to anyone who can reach this machine. ` +
      'Set a key with --api-key <key> (or MLX_MESH_API_KEY), or keep --api-host 127.0.0.1; --insecure-api allows it anyway',
  );
}
