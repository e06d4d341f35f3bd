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
  meanGenerationTps: number;
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

/** One greedy plain completion (no chat template), streamed; `onFirstText` runs when the first text arrives. */
export async function oneStream(api: string, prompt: string, maxTokens: number, onFirstText?: () => void): Promise<StreamRun> {
  let first = true;
  const r = await streamCompletion(api, { prompt, maxTokens, temperature: 0, raw: true }, () => {
    if (first) onFirstText?.();
    first = false;
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
  const runs = await Promise.all(Array.from({ length: k }, (_, i) => oneStream(api, SHORT_PROMPTS[i % SHORT_PROMPTS.length], maxTokens)));
  const seconds = (performance.now() - started) / 1000;
  const tokens = runs.reduce((s, r) => s + r.tokens, 0);
  const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
  return {
    streams: k,
    seconds,
    tokens,
    aggregateTps: tokens / seconds,
    meanTtftS: mean(runs.map((r) => r.ttftS)),
    meanGenerationTps: mean(runs.map((r) => r.generationTps)),
  };
}
