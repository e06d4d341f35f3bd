// `mlx-mesh generate "<prompt>"`: one chat completion through the mesh, streamed to the terminal.
import { parseArgs } from 'node:util';
import { meshError } from '../../core/errors.ts';
import { API_KEY_HELP, API_KEY_OPTION, apiKeyFrom, authHeaders, keyRefused } from '../api-client.ts';
import type { Command } from '../command.ts';
import { sseEvents } from '../sse.ts';
import { defaults } from '../../core/defaults.ts';

const usage = `
Usage: mlx-mesh generate "<prompt>" [options]

Sends the prompt to a peer's API as a chat message and streams the answer, then prints tokens/s.

Options:
  --api <url>            the peer's HTTP API (default http://${defaults.apiHost}:${defaults.apiPort})
  ${API_KEY_HELP}
  --max-tokens <n>       at most this many tokens (default 256)
  --temperature <t>      sampling temperature (default 0: greedy)
  --raw                  plain completion of the prompt text, without the chat template
  --json                 print the final result as JSON instead of streaming text
`;

export interface StreamResult {
  text: string;
  completionTokens: number;
  promptTokens: number;
  seconds: number;
  firstTokenSeconds: number | null;
  finishReason: string | null;
}

/** Streams one request from a peer's API (with `apiKey`, else MLX_MESH_API_KEY); `onText` sees each piece. Throws on an error event. */
export async function streamCompletion(
  api: string,
  opts: { prompt: string; maxTokens: number; temperature: number; raw?: boolean; apiKey?: string },
  onText: (t: string) => void,
): Promise<StreamResult> {
  const body = {
    max_tokens: opts.maxTokens,
    temperature: opts.temperature,
    stream: true,
    stream_options: { include_usage: true },
    ...(opts.raw ? { prompt: opts.prompt } : { messages: [{ role: 'user', content: opts.prompt }] }),
  };
  const url = `${api}/v1/${opts.raw ? 'completions' : 'chat/completions'}`;
  const key = opts.apiKey ?? apiKeyFrom(undefined);
  const started = performance.now();
  let res: Response;
  try {
    res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...authHeaders(key) }, body: JSON.stringify(body) });
  } catch (err) {
    throw meshError('API_UNREACHABLE', `cannot reach ${url}: ${(err as Error).message}. Is "mlx-mesh join" running?`);
  }
  if (res.status === 401) throw keyRefused(url, key);
  if (!res.ok) {
    const err = (await res.json().catch(() => ({}))) as { error?: { message?: string } };
    throw meshError('REQUEST_FAILED', `${res.status}: ${err.error?.message ?? res.statusText}`);
  }
  const result: StreamResult = { text: '', completionTokens: 0, promptTokens: 0, seconds: 0, firstTokenSeconds: null, finishReason: null };
  for await (const { data: raw } of sseEvents(res.body!)) {
    if (raw === '[DONE]') continue;
    const data = JSON.parse(raw);
    if (data.error) throw meshError('REQUEST_FAILED', data.error.message);
    if (data.usage) {
      result.completionTokens = data.usage.completion_tokens;
      result.promptTokens = data.usage.prompt_tokens;
    }
    const choice = data.choices?.[0];
    if (!choice) continue;
    const piece: string = choice.delta?.content ?? choice.text ?? '';
    if (piece) {
      result.firstTokenSeconds ??= (performance.now() - started) / 1000;
      result.text += piece;
      onText(piece);
    }
    if (choice.finish_reason) result.finishReason = choice.finish_reason;
  }
  result.seconds = (performance.now() - started) / 1000;
  return result;
}

export function throughputLine(r: StreamResult): string {
  const decodeSeconds = r.seconds - (r.firstTokenSeconds ?? 0);
  const tps = r.completionTokens > 1 && decodeSeconds > 0 ? (r.completionTokens - 1) / decodeSeconds : 0;
  return `${r.completionTokens} tokens in ${r.seconds.toFixed(2)} s · first token ${(r.firstTokenSeconds ?? 0).toFixed(2)} s · ${tps.toFixed(1)} tok/s decoding`;
}

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      api: { type: 'string' },
      'max-tokens': { type: 'string' },
      temperature: { type: 'string' },
      raw: { type: 'boolean' },
      json: { type: 'boolean' },
      ...API_KEY_OPTION,
    },
    allowPositionals: true,
    strict: true,
  });
  const prompt = positionals.join(' ').trim();
  if (!prompt) throw meshError('BAD_ARGUMENT', 'give a prompt: mlx-mesh generate "Tell me a story"');
  const maxTokens = Number(values['max-tokens'] ?? 256);
  const temperature = Number(values.temperature ?? 0);
  if (!Number.isInteger(maxTokens) || maxTokens < 1) throw meshError('BAD_ARGUMENT', '--max-tokens must be a whole number ≥ 1');
  if (!(temperature >= 0 && temperature <= 2)) throw meshError('BAD_ARGUMENT', '--temperature must be between 0 and 2');
  const api = (values.api ?? `http://${defaults.apiHost}:${defaults.apiPort}`).replace(/\/$/, '');
  const r = await streamCompletion(api, { prompt, maxTokens, temperature, raw: values.raw, apiKey: apiKeyFrom(values['api-key']) }, (t) => {
    if (!values.json) process.stdout.write(t);
  });
  if (values.json) process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
  else process.stdout.write(`\n\n${throughputLine(r)}\n`);
  return 0;
}

const command: Command = { usage, run };
export default command;
