// Small HTTP helpers shared by the API routes: JSON replies, OpenAI-shaped errors, bounded body reads.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isMeshError } from '../../core/errors.ts';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type = 'invalid_request_error',
    readonly code: string | null = null,
    readonly param: string | null = null,
  ) {
    super(message);
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function sendError(res: ServerResponse, err: HttpError): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  // RFC 6750: a 401 names the scheme the client should use.
  if (err.status === 401) res.setHeader('www-authenticate', 'Bearer');
  sendJson(res, err.status, { error: { message: err.message, type: err.type, param: err.param, code: err.code } });
}

export async function readJson(req: IncomingMessage, limitBytes: number): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limitBytes) throw new HttpError(413, `request body exceeds ${limitBytes} bytes`, 'invalid_request_error', 'body_too_large');
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text.trim()) throw new HttpError(400, 'request body is empty: send a JSON object', 'invalid_request_error', 'invalid_json');
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, `request body is not valid JSON: ${(err as Error).message}`, 'invalid_request_error', 'invalid_json');
  }
  const lone = findLoneSurrogate(body);
  if (lone) {
    const param = lone.path || null;
    throw new HttpError(
      400,
      `${param ?? 'body'}: character ${lone.index} is a lone UTF-16 surrogate (\\u${lone.unit.toString(16)}), which cannot be encoded as text; send well-formed Unicode`,
      'invalid_request_error',
      'invalid_unicode',
      param,
    );
  }
  return body;
}

// JSON's \uXXXX escapes can spell half of a surrogate pair: a valid JS string that no UTF-8 encoder
// (nor the engine's tokenizer) can carry.
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** The first string in a parsed JSON value holding a lone surrogate: its path and code-unit index. */
export function findLoneSurrogate(value: unknown, path = ''): { path: string; index: number; unit: number } | undefined {
  if (typeof value === 'string') {
    const m = LONE_SURROGATE.exec(value);
    return m ? { path, index: m.index, unit: value.charCodeAt(m.index) } : undefined;
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = findLoneSurrogate(value[i], `${path}[${i}]`);
      if (found) return found;
    }
  } else if (value !== null && typeof value === 'object') {
    for (const [key, v] of Object.entries(value)) {
      const found = findLoneSurrogate(v, path ? `${path}.${key}` : key);
      if (found) return found;
    }
  }
  return undefined;
}

/**
 * A failure as the client sees it. The cluster or an engine that cannot serve right now (no plan yet, an
 * engine crashed or restarting) is a 503, which clients retry; other mesh errors are a 500 with the code.
 */
export function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  if (isMeshError(err) && err.details?.engineCode === 'NO_CHAT_TEMPLATE') {
    return new HttpError(400, `${err.message}: use /v1/completions with a plain prompt`, 'invalid_request_error', 'no_chat_template');
  }
  if (isMeshError(err)) {
    if (err.code === 'PLAN_FAILED') return new HttpError(503, err.message, 'server_error', 'cluster_not_ready');
    if (err.code === 'ENGINE_FAILED') return new HttpError(503, err.message, 'server_error', 'engine_failed');
    return new HttpError(500, err.message, 'server_error', err.code.toLowerCase());
  }
  return new HttpError(500, (err as Error).message, 'server_error', 'internal_error');
}
