// Follows a peer's dashboard stream (`GET /dashboard/stream`, server-sent events) from the CLI: calls
// onEvent(name, data) per event until the stream ends or the signal aborts.
import { meshError } from '../../core/errors.ts';
import { authHeaders, keyRefused } from '../api-client.ts';
import { sseEvents } from '../sse.ts';

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
  try {
    for await (const { event, data } of sseEvents(res.body)) onEvent(event, data);
  } catch (err) {
    if (!signal.aborted) throw meshError('API_UNREACHABLE', `the stream from ${url} broke: ${(err as Error).message}`);
  }
}
