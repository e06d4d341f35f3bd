// The OpenAI-compatible API tells the truth: what the mesh does not implement is refused with a 400
// naming the parameter (accepted at its neutral value), unknown keys are refused, malformed messages
// get a message saying what is wrong, and /v1/models/{id} answers like OpenAI's.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createTestMesh, getJson, STORIES, type TestMesh, waitFor } from '../helpers/mesh.ts';

const GOLDEN_8 = ', there was a little girl';
const PROMPT = { prompt: 'Once upon a time', max_tokens: 8, temperature: 0 };
const CHAT = { messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: 8 };
let mesh: TestMesh;
let api: string;
let started: number;

function post(path: string, body: unknown) {
  return fetch(`${api}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
}

async function refused(path: string, body: unknown): Promise<{ message: string; type: string; param: string | null; code: string }> {
  const res = await post(path, body);
  const json = await res.json();
  assert.is(res.status, 400, `${JSON.stringify(body)} → ${JSON.stringify(json)}`);
  return json.error;
}

test.before(async () => {
  started = Math.floor(Date.now() / 1000);
  mesh = await createTestMesh(1, { inference: true, model: STORIES });
  api = mesh.nodes[0].api.url;
  await waitFor(async () => (await getJson(`${api}/distributed/gpu-info`)).cluster_status === 'healthy', 60_000, 'a healthy cluster');
});

test.after(async () => {
  await mesh?.stop();
});

// [endpoint, parameter, a value that matters]
const UNSUPPORTED: [string, string, unknown][] = [
  ['chat', 'tools', [{ type: 'function', function: { name: 'get_weather', parameters: {} } }]],
  ['chat', 'tool_choice', 'required'],
  ['chat', 'tool_choice', { type: 'function', function: { name: 'get_weather' } }],
  ['chat', 'functions', [{ name: 'f', parameters: {} }]],
  ['chat', 'function_call', { name: 'f' }],
  ['chat', 'logprobs', true],
  ['chat', 'top_logprobs', 3],
  ['chat', 'response_format', { type: 'json_object' }],
  ['chat', 'response_format', { type: 'json_schema', json_schema: { name: 'x', schema: {} } }],
  ['chat', 'logit_bias', { '50256': -100 }],
  ['chat', 'presence_penalty', 0.5],
  ['chat', 'frequency_penalty', -1],
  ['chat', 'n', 2],
  ['chat', 'modalities', ['text', 'audio']],
  ['chat', 'audio', { voice: 'alloy', format: 'wav' }],
  ['chat', 'web_search_options', {}],
  ['chat', 'reasoning_effort', 'high'],
  ['chat', 'verbosity', 'low'],
  ['chat', 'store', true],
  ['completion', 'logprobs', 2],
  ['completion', 'logprobs', 0],
  ['completion', 'echo', true],
  ['completion', 'best_of', 3],
  ['completion', 'suffix', ' The end.'],
  ['completion', 'logit_bias', { '13': 5 }],
  ['completion', 'presence_penalty', 1],
  ['completion', 'frequency_penalty', 2],
  ['completion', 'n', 3],
];

const pathOf = (endpoint: string) => (endpoint === 'chat' ? '/v1/chat/completions' : '/v1/completions');

test('each parameter the mesh does not implement is refused with a 400 naming it', async () => {
  for (const [endpoint, param, value] of UNSUPPORTED) {
    const e = await refused(pathOf(endpoint), { ...(endpoint === 'chat' ? CHAT : PROMPT), [param]: value });
    assert.is(e.param, param, `${endpoint} ${param}=${JSON.stringify(value)}`);
    assert.is(e.code, 'unsupported_parameter');
    assert.is(e.type, 'invalid_request_error');
    assert.ok(e.message.startsWith(`${param}: `), e.message);
    assert.match(e.message, /not |only /, 'says what is unsupported');
    assert.match(e.message, /remove|set it|use|send/, 'says what to do');
  }
});

test('neutral values of those parameters are accepted and change nothing', async () => {
  const neutral = { n: 1, logprobs: null, logit_bias: {}, presence_penalty: 0, frequency_penalty: 0, user: 'u-1' };
  const res = await post('/v1/completions', { ...PROMPT, ...neutral, echo: false, best_of: 1, suffix: null });
  const body = await res.json();
  assert.is(res.status, 200, JSON.stringify(body));
  assert.is(body.choices[0].text, GOLDEN_8);
  // The tiny model has no chat template: reaching that error means every parameter was accepted.
  const chat = await post('/v1/chat/completions', {
    ...CHAT,
    ...neutral,
    logprobs: false,
    top_logprobs: 0,
    tools: [],
    tool_choice: 'none',
    parallel_tool_calls: true,
    response_format: { type: 'text' },
    modalities: ['text'],
    store: false,
    metadata: { run: 'x' },
    service_tier: 'auto',
    stream_options: null,
  });
  assert.is((await chat.json()).error.code, 'no_chat_template');
  const auto = await post('/v1/chat/completions', { ...CHAT, tool_choice: 'auto' });
  assert.is((await auto.json()).error.code, 'no_chat_template', 'tool_choice "auto" without tools asks for nothing');
});

test('tools are named first, whatever order the request lists them in', async () => {
  const e = await refused('/v1/chat/completions', { ...CHAT, tool_choice: 'required', tools: [{ type: 'function', function: { name: 'f' } }] });
  assert.is(e.param, 'tools');
});

test('unknown parameters are refused, never silently dropped, at any depth', async () => {
  const top = await refused('/v1/completions', { ...PROMPT, top_k: 5, min_p: 0.1 });
  assert.is(top.code, 'unknown_parameter');
  assert.is(top.param, 'top_k');
  assert.match(top.message, /unknown parameter "top_k" \(and "min_p"\)/);
  const tools = await refused('/v1/completions', { ...PROMPT, tools: [] });
  assert.is(tools.param, 'tools', 'chat-only parameters are unknown to /v1/completions');
  const nested = await refused('/v1/chat/completions', { ...CHAT, messages: [{ role: 'user', content: 'hi', cache_control: {} }] });
  assert.is(nested.param, 'messages[0].cache_control');
  const opts = await refused('/v1/completions', { ...PROMPT, stream: true, stream_options: { include_usage: true, chunk: 1 } });
  assert.is(opts.param, 'stream_options.chunk');
  // Keys that name Object.prototype's members are keys like any other.
  for (const key of ['constructor', 'toString', 'hasOwnProperty']) {
    assert.is((await refused('/v1/chat/completions', { ...CHAT, [key]: 'x' })).param, key);
  }
  const proto = await fetch(`${api}/v1/completions`, { method: 'POST', body: '{"prompt":"Once upon a time","max_tokens":1,"__proto__":{"echo":true}}' });
  assert.is(proto.status, 400);
  assert.is((await proto.json()).error.param, '__proto__');
  const part = await refused('/v1/chat/completions', { messages: [{ role: 'user', content: [{ type: 'constructor' }] }] });
  assert.is(part.message, 'messages[0].content[0]: "constructor" content parts are not supported: only {"type":"text"} parts are');
});

test('stream_options needs stream; top_p 0 is greedy', async () => {
  const alone = await refused('/v1/completions', { ...PROMPT, stream_options: { include_usage: true } });
  assert.is(alone.param, 'stream_options');
  assert.match(alone.message, /only allowed when stream is true/);
  const off = await refused('/v1/completions', { ...PROMPT, stream: false, stream_options: { include_usage: true } });
  assert.is(off.param, 'stream_options');
  const streamed = await post('/v1/completions', { ...PROMPT, stream: true, stream_options: { include_usage: true } });
  assert.is(streamed.status, 200);
  assert.match(await streamed.text(), /"usage":\{"prompt_tokens":5,"completion_tokens":8/);
  // Any integer seed is taken, and reproduces its output.
  for (const seed of [-1, 2 ** 40, Number.MAX_SAFE_INTEGER]) {
    const twice = await Promise.all([0, 1].map(() => post('/v1/completions', { ...PROMPT, temperature: 1, seed }).then((r) => r.json())));
    assert.ok(twice[0].choices, JSON.stringify(twice[0]));
    assert.is(twice[0].choices[0].text, twice[1].choices[0].text, `seed ${seed}`);
  }
  const res = await post('/v1/completions', { ...PROMPT, temperature: 1.5, top_p: 0, seed: 7 });
  const body = await res.json();
  assert.is(res.status, 200, JSON.stringify(body));
  assert.is(body.choices[0].text, GOLDEN_8);
});

test('messages the mesh cannot read get a 400 saying what is unsupported', async () => {
  const toolCall = await refused('/v1/chat/completions', {
    messages: [
      { role: 'user', content: 'weather?' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'w', arguments: '{}' } }] },
      { role: 'tool', tool_call_id: 'c1', content: 'sunny' },
    ],
  });
  assert.is(toolCall.param, 'messages[1].tool_calls');
  assert.match(toolCall.message, /assistant tool calls are not supported/);
  const toolTurn = await refused('/v1/chat/completions', { messages: [{ role: 'tool', tool_call_id: 'c1', content: 'sunny' }] });
  assert.is(toolTurn.param, 'messages[0].role');
  assert.match(toolTurn.message, /"tool" messages \(tool results\) are not supported/);
  const image = await refused('/v1/chat/completions', {
    messages: [{ role: 'user', content: [{ type: 'text', text: 'what is this?' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }] }],
  });
  assert.is(image.param, 'messages[0].content[1]');
  assert.match(image.message, /"image_url" content parts are not supported: the model reads text only/);
  const nullContent = await refused('/v1/chat/completions', { messages: [{ role: 'assistant', content: null }] });
  assert.is(nullContent.param, 'messages[0].content');
  assert.match(nullContent.message, /content is null/);
  const role = await refused('/v1/chat/completions', { messages: [{ role: 'robot', content: 'hi' }] });
  assert.is(role.param, 'messages[0].role');
  assert.match(role.message, /role must be one of "system", "developer", "user", "assistant"/);
  const content = await refused('/v1/chat/completions', { messages: [{ role: 'user', content: 42 }] });
  assert.match(content.message, /messages\[0\]\.content: content must be a string or an array of/);
  const prompt = await refused('/v1/completions', { prompt: [1, 2, 3] });
  assert.match(prompt.message, /token-id prompts are not supported/);
  for (const e of [toolCall, toolTurn, image, nullContent, role, content, prompt]) assert.not.match(e.message, /^Invalid input$/);
});

// Every parameter name a client might send, with values of every JSON kind: each request ends in a
// 200 or a 4xx that names what it refused, never a 500, a hang, or a bare "Invalid input".
const FUZZ_KEYS = [
  'model', 'temperature', 'top_p', 'seed', 'stop', 'stream', 'stream_options', 'n', 'best_of', 'echo', 'suffix', 'logprobs',
  'top_logprobs', 'logit_bias', 'presence_penalty', 'frequency_penalty', 'tools', 'tool_choice', 'functions', 'function_call',
  'parallel_tool_calls', 'response_format', 'modalities', 'audio', 'store', 'metadata', 'user', 'service_tier', 'reasoning_effort',
  'prediction', 'top_k', 'messages', 'prompt', 'constructor', '__proto__',
];
const FUZZ_VALUES: unknown[] = [
  null, true, false, 0, 1, -1, 0.5, 3, 1e12, '', 'x', 'none', 'auto', 'required', 'text', [], ['text'], [1, 2], ['a', 'b'],
  {}, { type: 'text' }, { type: 'json_object' }, { include_usage: true }, { '13': 0 }, { '13': 1 },
  [{ role: 'user', content: 'hi' }], [{ role: 'assistant', content: null }], [{ role: 'user', content: [{ type: 'text', text: 'a' }] }],
];

test('randomized bodies: every one ends in a 200 or a 4xx naming the parameter, never a 500', async () => {
  // mulberry32: a fixed seed, so a failure can be replayed.
  let seed = 12345;
  const rand = (n: number) => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (((t ^ (t >>> 14)) >>> 0) % n);
  };
  const counts: Record<number, number> = {};
  for (let i = 0; i < 300; i++) {
    const chat = rand(2) === 0;
    const body: Record<string, unknown> = chat ? { ...CHAT, max_tokens: 1 } : { ...PROMPT, max_tokens: 1 };
    for (let k = 1 + rand(3); k > 0; k--) Object.defineProperty(body, FUZZ_KEYS[rand(FUZZ_KEYS.length)], { value: FUZZ_VALUES[rand(FUZZ_VALUES.length)], enumerable: true, writable: true, configurable: true });
    // JSON text, not JSON.stringify: a "__proto__" key must reach the server as a key.
    const json = `{${Object.entries(body).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`;
    const res = await fetch(`${api}${chat ? '/v1/chat/completions' : '/v1/completions'}`, { method: 'POST', body: json });
    const text = await res.text();
    counts[res.status] = (counts[res.status] ?? 0) + 1;
    assert.ok(res.status === 200 || (res.status >= 400 && res.status < 500), `${res.status} for ${json}: ${text}`);
    if (res.status === 200) continue;
    const e = JSON.parse(text).error;
    assert.type(e.message, 'string');
    assert.not.match(e.message, /Invalid input$/, `${json}: ${e.message}`);
    if (e.code !== 'no_chat_template' && e.code !== 'model_not_found') assert.ok(e.param, `${json}: ${text}`);
  }
  assert.ok(counts[200] > 0 && counts[400] > 0, JSON.stringify(counts));
});

test('/v1/models has a real created; /v1/models/{id} answers 200 for the served model and an OpenAI-shaped 404 otherwise', async () => {
  const list = await getJson(`${api}/v1/models`);
  const model = list.data[0];
  assert.is(model.id, 'stories260K');
  assert.ok(model.created >= started && model.created <= Math.ceil(Date.now() / 1000), `created ${model.created}`);
  const one = await fetch(`${api}/v1/models/${model.id}`);
  assert.is(one.status, 200);
  assert.equal(await one.json(), model);
  // The model as the cluster was asked for it (here a file path, slashes and all) names it too.
  const bySpec = await fetch(`${api}/v1/models/${encodeURIComponent(STORIES)}`);
  assert.is(bySpec.status, 200);
  assert.is((await bySpec.json()).id, 'stories260K');
  for (const id of ['gpt-4o', 'mlx-community/SmolLM2-135M-Instruct', encodeURIComponent('org/other')]) {
    const res = await fetch(`${api}/v1/models/${id}`);
    assert.is(res.status, 404, id);
    const e = (await res.json()).error;
    assert.is(e.code, 'model_not_found');
    assert.is(e.type, 'invalid_request_error');
    assert.match(e.message, /is not served here: this cluster serves "stories260K"/);
  }
});

test.run();
