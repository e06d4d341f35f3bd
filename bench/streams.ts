// Client-side measurements over a peer's OpenAI-compatible API: one greedy stream, and k streams at
// once (aggregate tokens/s), as `mlx-mesh bench inference` reports them for a local mesh or --api.
import { streamCompletion } from '../src/commands/generate.ts';

export interface StreamRun {
  /** Time to the first generated text (prefill, plus HTTP and tokenizing). */
  ttftS: number;
  seconds: number;
  promptTokens: number;
  tokens: number;
  /** Tokens after the first ÷ the time after the first. */
  generationTps: number;
  text: string;
}

export interface ConcurrentRun {
  streams: number;
  /** From sending the first request to the end of the last. */
  seconds: number;
  tokens: number;
  /** All generated tokens ÷ seconds. */
  aggregateTps: number;
  meanTtftS: number;
  /** The last stream's time to its first text: the others are decoding while its prompt goes through. */
  lastTtftS: number;
  meanGenerationTps: number;
  /** Tokens ÷ seconds while every stream was generating (from the last stream's first text to the
   *  first stream's end): the pipeline's rate without the ramp of k prompts at the start and the
   *  streams ending apart. With one stream, its generation rate. */
  steadyTps: number;
}

/** Short, different openings: concurrent streams are distinct requests, as real clients send. */
export const SHORT_PROMPTS = [
  'Once upon a time, a little robot found a key in the garden.',
  'The old train stopped at the last station, and a girl stepped out.',
  'Every morning the baker opened his shop before the sun came up.',
  'On the top of the hill there was a house with a red door.',
  'The cat watched the rain from the window and waited for the boy.',
  'In the middle of the forest, two friends built a small boat.',
  'The teacher opened the box, and the children saw a tiny bird.',
  'When the snow melted, the river carried a letter to the town.',
];

/** One greedy plain completion (no chat template), streamed; `onFirstText` runs when the first text
 *  arrives, `onText` on every piece. */
export async function oneStream(api: string, prompt: string, maxTokens: number, onFirstText?: () => void, onText?: () => void): Promise<StreamRun> {
  let first = true;
  const r = await streamCompletion(api, { prompt, maxTokens, temperature: 0, raw: true }, () => {
    if (first) onFirstText?.();
    first = false;
    onText?.();
  });
  const ttftS = r.firstTokenSeconds ?? r.seconds;
  const after = r.seconds - ttftS;
  return {
    ttftS,
    seconds: r.seconds,
    promptTokens: r.promptTokens,
    tokens: r.completionTokens,
    generationTps: r.completionTokens > 1 && after > 0 ? (r.completionTokens - 1) / after : 0,
    text: r.text,
  };
}

/** `k` streams started together, each with its own short prompt. */
export async function concurrentStreams(api: string, k: number, maxTokens: number): Promise<ConcurrentRun> {
  const started = performance.now();
  const pieces: number[][] = Array.from({ length: k }, () => []);
  const runs = await Promise.all(
    Array.from({ length: k }, (_, i) => oneStream(api, SHORT_PROMPTS[i % SHORT_PROMPTS.length], maxTokens, undefined, () => pieces[i].push(performance.now()))),
  );
  const seconds = (performance.now() - started) / 1000;
  const tokens = runs.reduce((s, r) => s + r.tokens, 0);
  const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
  return {
    streams: k,
    seconds,
    tokens,
    aggregateTps: tokens / seconds,
    meanTtftS: mean(runs.map((r) => r.ttftS)),
    lastTtftS: Math.max(...runs.map((r) => r.ttftS)),
    meanGenerationTps: mean(runs.map((r) => r.generationTps)),
    steadyTps: steadyRate(pieces, runs.map((r) => r.tokens)),
  };
}

/**
 * Tokens per second while every stream was generating: from the last stream's first piece of text to
 * the first stream's last. A piece is about one token (the detokenizer holds back a partial character
 * or a lone space); each stream's pieces in the window are scaled by its tokens ÷ pieces. 0 when the
 * streams never all generated at once.
 */
export function steadyRate(pieces: number[][], tokens: number[]): number {
  if (!pieces.length || pieces.some((p) => p.length < 2)) return 0;
  const from = Math.max(...pieces.map((p) => p[0]));
  const to = Math.min(...pieces.map((p) => p[p.length - 1]));
  if (to <= from) return 0;
  const inWindow = pieces.reduce((sum, p, i) => sum + (p.filter((t) => t > from && t <= to).length * tokens[i]) / p.length, 0);
  return inWindow / ((to - from) / 1000);
}
