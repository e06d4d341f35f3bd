// /v1/models, /v1/completions, /v1/chat/completions. The peer that receives a request drives it
// through the pipeline itself (any peer can: it has the tokenizer and the plan), so there is no
// extra HTTP hop to the coordinator.
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { z } from 'zod';
import type { GenerationResult } from '../../peer/generation.ts';
import type { Inference } from '../../peer/inference.ts';
import { defaults } from '../../core/defaults.ts';
import { HttpError, readJson, sendJson, toHttpError } from './http.ts';
import { ChatRequest, CompletionRequest } from './openai-schemas.ts';
import type { ApiServer } from './server.ts';
import { type Endpoint, refuseUnsupported } from './unsupported.ts';


/** `messages[1].content`, the way the parameter appears in the request. */
function paramName(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i ? `.${String(p)}` : String(p))).join('');
}

function issueError(issue: z.core.$ZodIssue): HttpError {
  if (issue.code === 'unrecognized_keys') {
    const at = paramName(issue.path);
    const [name, ...more] = issue.keys.map((k) => (at ? `${at}.${k}` : k));
    const others = more.length ? ` (and ${more.map((k) => `"${k}"`).join(', ')})` : '';
    return new HttpError(
      400,
      `unknown parameter "${name}"${others}: this API does not implement it, and refuses what it does not implement rather than ignore it; remove it`,
      'invalid_request_error',
      'unknown_parameter',
      name,
    );
  }
  const param = paramName(issue.path) || null;
  return new HttpError(400, `${param ? `${param}: ` : ''}${issue.message}`, 'invalid_request_error', 'invalid_value', param);
}

function parse<S extends typeof ChatRequest | typeof CompletionRequest>(schema: S, endpoint: Endpoint, body: unknown): z.infer<S> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new HttpError(400, 'request body must be a JSON object', 'invalid_request_error', 'invalid_json');
  }
  const r = schema.safeParse(refuseUnsupported(body as Record<string, unknown>, endpoint));
  if (!r.success) throw issueError(r.error.issues[0]);
  if (r.data.stream_options && !r.data.stream) {
    throw new HttpError(400, 'stream_options is only allowed when stream is true: set "stream": true or remove stream_options', 'invalid_request_error', 'invalid_value', 'stream_options');
  }
  return r.data as z.infer<S>;
}

interface Common {
  model?: string;
  temperature?: number | null;
  top_p?: number | null;
  seed?: number | null;
  stop?: string | string[] | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean | null } | null;
}

export function registerOpenAiRoutes(api: ApiServer, inference: Inference): void {
  const modelId = () => inference.plan?.meta.name ?? null;

  const checkModel = (requested: string | undefined) => {
    const served = modelId();
    if (!served) throw new HttpError(503, inference.notReadyReason() ?? 'no model is loaded yet', 'server_error', 'cluster_not_ready');
    if (requested && requested !== served && requested !== inference.plan?.model && requested !== 'default') {
      throw new HttpError(404, `model "${requested}" is not served by this cluster; it serves "${served}"`, 'invalid_request_error', 'model_not_found', 'model');
    }
    const reason = inference.notReadyReason();
    if (reason) throw new HttpError(503, reason, 'server_error', 'cluster_not_ready');
    return served;
  };

  // `created`: when this peer started serving the model (the cluster decides the model, not a vendor).
  const servedSince = new Map<string, number>();
  const since = (name: string) => {
    if (!servedSince.has(name)) servedSince.set(name, Math.floor(Date.now() / 1000));
    return servedSince.get(name)!;
  };
  inference.on('plan', (plan) => since(plan.meta.name));
  const modelObject = (id: string) => ({ id, object: 'model', created: since(id), owned_by: 'mlx-mesh', ready: inference.isReady() });

  api.route('GET', '/v1/models', (_req, res) => {
    const id = modelId();
    sendJson(res, 200, { object: 'list', data: id ? [modelObject(id)] : [] });
  });

  // Model ids may hold slashes (Hugging Face repo ids), sent raw or %2F-encoded: the rest of the path is the id.
  api.route('GET', '/v1/models/*id', (_req, res, _url, { id }) => {
    const served = modelId();
    if (!served || (id !== served && id !== inference.plan?.model)) {
      const why = served ? `this cluster serves "${served}"` : 'this cluster has no model loaded yet';
      throw new HttpError(404, `model "${id}" is not served here: ${why} (GET /v1/models lists it)`, 'invalid_request_error', 'model_not_found', 'model');
    }
    sendJson(res, 200, modelObject(served));
  });

  async function serve(
    res: ServerResponse,
    kind: 'completion' | 'chat',
    body: Common,
    promptTokens: number[],
    maxTokens: number,
  ): Promise<void> {
    const model = checkModel(body.model);
    const context = inference.plan!.meta.contextLength;
    if (promptTokens.length >= context) {
      throw new HttpError(400, `the prompt has ${promptTokens.length} tokens; the model's context is ${context}`, 'invalid_request_error', 'context_length_exceeded', 'messages');
    }
    const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomBytes(12).toString('hex')}`;
    res.setHeader('x-request-id', id); // GET /debug/requests/{id} shows its trace
    const meta = { id, endpoint: kind === 'chat' ? '/v1/chat/completions' : '/v1/completions' };
    const created = Math.floor(Date.now() / 1000);
    const object = kind === 'chat' ? 'chat.completion' : 'text_completion';
    // The engine's generator takes an unsigned 32-bit seed: any integer (OpenAI allows negative and
    // 64-bit ones) maps to one, the same every time, so a seed still reproduces its output.
    const seed = body.seed === undefined || body.seed === null ? null : body.seed >>> 0;
    const stops = body.stop === undefined || body.stop === null ? [] : Array.isArray(body.stop) ? body.stop : [body.stop];
    const abort = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    const request = {
      tokens: promptTokens,
      maxTokens,
      // top_p 0 keeps only the most likely token, which is greedy decoding.
      sampling: body.top_p === 0 ? { temperature: 0, topP: 1, seed } : { temperature: body.temperature ?? 1, topP: body.top_p ?? 1, seed },
      stop: stops,
      signal: abort.signal,
    };
    const usage = (r: GenerationResult) => ({
      prompt_tokens: r.promptTokens,
      completion_tokens: r.completionTokens,
      total_tokens: r.promptTokens + r.completionTokens,
    });

    if (!body.stream) {
      let result: GenerationResult;
      try {
        result = await inference.generate(request, () => {}, meta);
      } catch (err) {
        throw toHttpError(err);
      }
      const choice =
        kind === 'chat'
          ? { index: 0, message: { role: 'assistant', content: result.text }, finish_reason: result.finishReason, logprobs: null }
          : { index: 0, text: result.text, finish_reason: result.finishReason, logprobs: null };
      return sendJson(res, 200, { id, object, created, model, choices: [choice], usage: usage(result) });
    }

    const chunkObject = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    const send = (data: unknown) => res.write(`data: ${JSON.stringify(data)}\n\n`);
    const chunk = (delta: string | null, finish: string | null, first = false) =>
      kind === 'chat'
        ? { id, object: chunkObject, created, model, choices: [{ index: 0, delta: first ? { role: 'assistant', content: '' } : delta === null ? {} : { content: delta }, finish_reason: finish, logprobs: null }] }
        : { id, object: chunkObject, created, model, choices: [{ index: 0, text: delta ?? '', finish_reason: finish, logprobs: null }] };
    if (kind === 'chat') send(chunk(null, null, true));
    try {
      const result = await inference.generate(request, (text) => send(chunk(text, null)), meta);
      send(chunk(null, result.finishReason));
      if (body.stream_options?.include_usage) send({ id, object: chunkObject, created, model, choices: [], usage: usage(result) });
    } catch (err) {
      const e = toHttpError(err);
      send({ error: { message: e.message, type: e.type, code: e.code } });
    }
    res.end('data: [DONE]\n\n');
  }

  api.route('POST', '/v1/completions', async (req, res) => {
    const body = parse(CompletionRequest, 'completion', await readJson(req, defaults.apiBodyLimitBytes));
    checkModel(body.model);
    const prompt = Array.isArray(body.prompt) ? body.prompt[0] : body.prompt;
    const tokens = await inference.tokenize({ text: prompt }).catch((e) => Promise.reject(toHttpError(e)));
    await serve(res, 'completion', body, tokens, body.max_tokens ?? defaults.completionMaxTokens);
  });

  api.route('POST', '/v1/chat/completions', async (req, res) => {
    const body = parse(ChatRequest, 'chat', await readJson(req, defaults.apiBodyLimitBytes));
    checkModel(body.model);
    const messages = body.messages.map((m) => ({
      role: m.role === 'developer' ? 'system' : m.role,
      content: typeof m.content === 'string' ? m.content : m.content.map((p) => p.text).join(''),
    }));
    const tokens = await inference.tokenize({ messages }).catch((e) => Promise.reject(toHttpError(e)));
    await serve(res, 'chat', body, tokens, body.max_completion_tokens ?? body.max_tokens ?? defaults.chatMaxTokens);
  });
}
