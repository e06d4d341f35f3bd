// Follows a peer's dashboard stream (`GET /dashboard/stream`, server-sent events) from the CLI: calls
// onEvent(name, data) per event until the stream ends or the signal aborts.
import { meshError } from '../../core/errors.ts';
import { authHeaders, keyRefused } from '../api-client.ts';

export async function followStream(url: string, key: string | undefined, onEvent: (name: string, data: string) => void, signal: AbortSignal): Promise<void> {
  let res: Response;
  try {
    res = await fetch(url, { headers: authHeaders(key), signal });
  } catch (err) {
    if (signal.aborted) return;
    throw meshError('API_UNREACHABLE', `cannot reach ${url}: ${(err as Error).cause ?? (err as Error).message}. Is "mlx-mesh join" running there?`);
  }
  if (res.status === 401) throw keyRefused(url, key);
  if (!res.ok || !res.body) throw meshError('API_UNREACHABLE', `${url} answered ${res.status}`);
  let buffer = '';
  try {
    for await (const chunk of res.body.pipeThrough(new TextDecoderStream())) {
      buffer += chunk;
      for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const name = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
        const data = [...block.matchAll(/^data: (.*)$/gm)].map((m) => m[1]).join('\n');
        if (data) onEvent(name, data);
      }
    }
  } catch (err) {
    if (!signal.aborted) throw meshError('API_UNREACHABLE', `the stream from ${url} broke: ${(err as Error).message}`);
  }
}
