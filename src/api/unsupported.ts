// OpenAI parameters the mesh does not implement. Each is accepted at its neutral value (the one that
// asks for nothing, e.g. `n: 1`, `tools: []`) and refused with a 400 naming it otherwise, so a client
// never receives plain text where it asked for a tool call, JSON, log-probabilities or penalties.
// A few parameters that never change the output (`user`, `metadata`, …) are accepted and ignored.
import { HttpError } from './http.ts';

export type Endpoint = 'chat' | 'completion';

interface Rule {
  endpoints: Endpoint[];
  /** True when the value asks for nothing this parameter could change. */
  neutral(value: unknown, body: Record<string, unknown>): boolean;
  /** What is unsupported and what to do, after "<param>: ". */
  why: string;
}

const isNull = (v: unknown) => v === null || v === undefined;
const empty = (v: unknown) => isNull(v) || (Array.isArray(v) && v.length === 0);
const TOOLS = 'tool and function calling are not supported by this mesh (the model answers in plain text)';

// Maps, not object literals: a body key such as "constructor" must not find Object.prototype's.
const RULES = new Map<string, Rule>(Object.entries({
  tools: { endpoints: ['chat'], neutral: empty, why: `${TOOLS}; remove "tools"` },
  tool_choice: {
    endpoints: ['chat'],
    neutral: (v, b) => isNull(v) || v === 'none' || (v === 'auto' && empty(b.tools)),
    why: `${TOOLS}; remove "tool_choice" or set it to "none"`,
  },
  functions: { endpoints: ['chat'], neutral: empty, why: `${TOOLS}; remove "functions"` },
  function_call: {
    endpoints: ['chat'],
    neutral: (v, b) => isNull(v) || v === 'none' || (v === 'auto' && empty(b.functions)),
    why: `${TOOLS}; remove "function_call"`,
  },
  logprobs: {
    endpoints: ['chat', 'completion'],
    // Chat takes a boolean; the legacy completions endpoint a count, where even 0 returns the sampled token's.
    neutral: (v) => isNull(v) || v === false,
    why: 'log-probabilities are not returned by this mesh; remove "logprobs"',
  },
  top_logprobs: { endpoints: ['chat'], neutral: (v) => isNull(v) || v === 0, why: 'log-probabilities are not returned by this mesh; remove "top_logprobs"' },
  response_format: {
    endpoints: ['chat'],
    neutral: (v) => isNull(v) || (typeof v === 'object' && (v as { type?: unknown }).type === 'text' && Object.keys(v as object).length === 1),
    why: 'only plain text output is supported: JSON mode and JSON schemas are not enforced by this mesh; remove "response_format" or use {"type":"text"}',
  },
  logit_bias: {
    endpoints: ['chat', 'completion'],
    neutral: (v) => isNull(v) || (typeof v === 'object' && !Array.isArray(v) && Object.values(v as object).every((x) => x === 0)),
    why: 'token biases are not applied by this mesh; remove "logit_bias"',
  },
  presence_penalty: { endpoints: ['chat', 'completion'], neutral: (v) => isNull(v) || v === 0, why: 'penalties are not applied by this mesh; remove "presence_penalty" or set it to 0' },
  frequency_penalty: { endpoints: ['chat', 'completion'], neutral: (v) => isNull(v) || v === 0, why: 'penalties are not applied by this mesh; remove "frequency_penalty" or set it to 0' },
  n: { endpoints: ['chat', 'completion'], neutral: (v) => isNull(v) || v === 1, why: 'only one choice per request is supported; send n separate requests' },
  best_of: { endpoints: ['completion'], neutral: (v) => isNull(v) || v === 1, why: 'only one candidate per request is generated; remove "best_of" or set it to 1' },
  echo: { endpoints: ['completion'], neutral: (v) => isNull(v) || v === false, why: 'the prompt is not echoed by this mesh; remove "echo" and prepend the prompt yourself' },
  suffix: { endpoints: ['completion'], neutral: (v) => isNull(v) || v === '', why: 'insertion (text after the completion) is not supported; remove "suffix"' },
  modalities: {
    endpoints: ['chat'],
    neutral: (v) => isNull(v) || (Array.isArray(v) && v.length === 1 && v[0] === 'text'),
    why: 'only text output is supported; remove "modalities" or use ["text"]',
  },
  audio: { endpoints: ['chat'], neutral: isNull, why: 'audio output is not supported; remove "audio"' },
  web_search_options: { endpoints: ['chat'], neutral: isNull, why: 'web search is not supported; remove "web_search_options"' },
  reasoning_effort: { endpoints: ['chat'], neutral: isNull, why: 'the mesh does not control reasoning effort; remove "reasoning_effort"' },
  verbosity: { endpoints: ['chat'], neutral: isNull, why: 'the mesh does not control verbosity; remove "verbosity" and use max_tokens or the prompt' },
  store: { endpoints: ['chat'], neutral: (v) => isNull(v) || v === false, why: 'completions are not stored by this mesh; remove "store"' },
} satisfies Record<string, Rule>));

/** Accepted and ignored: they never change what the model generates. */
const IGNORED = new Map<string, Endpoint[]>(Object.entries({
  user: ['chat', 'completion'],
  metadata: ['chat'],
  service_tier: ['chat'],
  prompt_cache_key: ['chat'],
  safety_identifier: ['chat'],
  parallel_tool_calls: ['chat'],
  // A latency hint: the output is the same with or without it.
  prediction: ['chat'],
} satisfies Record<string, Endpoint[]>));

/**
 * Throws a 400 naming the first unsupported parameter set to a value that matters; returns the body
 * without the unsupported-but-neutral and the ignored parameters, for the strict schema to check.
 */
export function refuseUnsupported(body: Record<string, unknown>, endpoint: Endpoint): Record<string, unknown> {
  // In the table's order, so `tools` is named before `tool_choice` whatever order the client wrote.
  for (const [key, rule] of RULES) {
    if (Object.hasOwn(body, key) && rule.endpoints.includes(endpoint) && !rule.neutral(body[key], body)) {
      throw new HttpError(400, `${key}: ${rule.why}`, 'invalid_request_error', 'unsupported_parameter', key);
    }
  }
  // fromEntries defines own properties: a "__proto__" key stays a key (and is refused as unknown).
  const rest: Record<string, unknown> = Object.fromEntries(
    Object.entries(body).filter(([key]) => !RULES.get(key)?.endpoints.includes(endpoint) && !IGNORED.get(key)?.includes(endpoint)),
  );
  if (endpoint === 'chat' && Array.isArray(body.messages)) rest.messages = body.messages.map(refuseUnsupportedMessage);
  return rest;
}

const PART_ADVICE: Record<string, string> = {
  image_url: 'the model reads text only; describe the image in a text part',
  input_audio: 'the model reads text only; send a transcript in a text part',
  file: 'the model reads text only; paste the text into a text part',
  refusal: 'send the refusal as a text part',
};

/**
 * A chat message that asks for what the mesh cannot do (tool turns, images, audio) gets a 400 saying
 * so; otherwise the message without its neutral tool and audio fields.
 */
function refuseUnsupportedMessage(m: unknown, i: number): unknown {
  if (m === null || typeof m !== 'object' || Array.isArray(m)) return m; // the schema says what a message must be
  const msg = m as Record<string, unknown>;
  const at = `messages[${i}]`;
  const refuse = (param: string, why: string) => {
    throw new HttpError(400, `${param}: ${why}`, 'invalid_request_error', 'unsupported_parameter', param);
  };
  if (msg.role === 'tool' || msg.role === 'function') {
    refuse(`${at}.role`, `"${msg.role}" messages (tool results) are not supported: ${TOOLS}; put the result into a user message as text`);
  }
  if (!empty(msg.tool_calls)) refuse(`${at}.tool_calls`, `assistant tool calls are not supported: ${TOOLS}; send the assistant's turn as text content`);
  if (!isNull(msg.function_call)) refuse(`${at}.function_call`, `assistant function calls are not supported: ${TOOLS}; send the assistant's turn as text content`);
  if (!isNull(msg.audio)) refuse(`${at}.audio`, 'audio turns are not supported; send the assistant\'s turn as text content');
  if (msg.content === null || msg.content === undefined) {
    refuse(`${at}.content`, `content is ${msg.content === null ? 'null' : 'missing'}: every message needs its text, as a string or an array of text parts`);
  }
  if (Array.isArray(msg.content)) {
    msg.content.forEach((p, j) => {
      const type = (p as { type?: unknown } | null)?.type;
      if (typeof type === 'string' && type !== 'text') {
        refuse(`${at}.content[${j}]`, `"${type}" content parts are not supported: ${Object.hasOwn(PART_ADVICE, type) ? PART_ADVICE[type] : 'only {"type":"text"} parts are'}`);
      }
    });
  }
  const { tool_calls: _t, function_call: _f, audio: _a, ...rest } = msg;
  return rest;
}
