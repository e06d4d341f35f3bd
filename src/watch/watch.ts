// `mlx-mesh status --watch`: follows a peer's dashboard stream and redraws the cluster in place every
// interval (cursor home, lines cleared, no scrolling) until Ctrl-C. A broken stream is retried and
// said on screen; a refused key ends the command with its error.
import { isMeshError } from '../../core/errors.ts';
import { frame, renderScreen, type WatchDevice, type WatchEvent, type WatchState } from './screen.ts';
import { followStream } from './stream.ts';

const EVENTS_KEPT = 50;
const GONE_KEPT_MS = 10 * 60_000;

export async function watchCluster(base: string, key: string | undefined, intervalMs: number, out: NodeJS.WriteStream = process.stdout): Promise<number> {
  const abort = new AbortController();
  const stop = () => abort.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  let state: WatchState | null = null;
  let events: WatchEvent[] = [];
  let problem: string | null = null;
  const seen = new Map<string, { device: WatchDevice; goneAt: number | null }>();

  const draw = () => {
    const now = Date.now();
    const live = new Set(state?.devices.map((d) => d.device_id));
    for (const d of state?.devices ?? []) seen.set(d.device_id, { device: d, goneAt: null });
    for (const [id, s] of seen) {
      if (live.has(id)) continue;
      s.goneAt ??= now;
      if (now - s.goneAt > GONE_KEPT_MS) seen.delete(id);
    }
    const gone = [...seen.values()].filter((s) => s.goneAt !== null).map((s) => ({ device: s.device, at: s.goneAt! }));
    const color = out.isTTY === true && !process.env.NO_COLOR;
    out.write(frame(renderScreen(state, events, { columns: out.columns || 100, rows: out.rows || 30, color, now, gone, problem })));
  };

  out.write('\x1b[?25l\x1b[2J');
  draw();
  const timer = setInterval(draw, intervalMs);
  try {
    while (!abort.signal.aborted) {
      try {
        await followStream(`${base}/dashboard/stream`, key, (name, data) => {
          if (name === 'state') {
            const first = state === null;
            state = JSON.parse(data) as WatchState;
            problem = null;
            if (first) draw();
          } else if (name === 'events') events = (JSON.parse(data) as WatchEvent[]).slice(-EVENTS_KEPT);
          else if (name === 'event') events = [...events, JSON.parse(data) as WatchEvent].slice(-EVENTS_KEPT);
        }, abort.signal);
        if (!abort.signal.aborted) problem = 'the stream ended; reconnecting…';
      } catch (err) {
        if (isMeshError(err, 'API_KEY_REFUSED')) throw err;
        problem = `${(err as Error).message}; retrying…`;
      }
      if (!abort.signal.aborted) await new Promise((r) => setTimeout(r, 1000));
    }
    return 0;
  } finally {
    clearInterval(timer);
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    out.write('\x1b[?25h\n');
  }
}
