// Request bodies of the OpenAI-compatible endpoints: the parameters the mesh implements, strictly.
// Parameters it does not implement are checked first (unsupported.ts); any other key is refused as
// unknown rather than dropped, so a client never gets an answer to a question it did not ask.
import { z } from 'zod';

const stop = z
  .union([z.string().min(1), z.array(z.string().min(1)).max(4)], { error: 'stop must be a non-empty string or an array of at most 4 of them' })
  .nullish();

const common = {
  model: z.string().optional(),
  max_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  // top_p 0 keeps only the most likely token: greedy (OpenAI accepts it too).
  top_p: z.number().min(0).max(1).nullish(),
  seed: z.number().int().nullish(),
  stop,
  stream: z.boolean().nullish(),
  stream_options: z.strictObject({ include_usage: z.boolean().nullish(), include_obfuscation: z.boolean().nullish() }).nullish(),
};

export const CompletionRequest = z.strictObject({
  ...common,
  prompt: z.union([z.string(), z.array(z.string()).length(1, { error: 'send one prompt per request (an array of exactly one string)' })], {
    error: 'prompt must be a string (token-id prompts are not supported: send the text)',
  }),
});

const textPart = z.strictObject({ type: z.literal('text'), text: z.string() });

const message = z.strictObject({
  role: z.enum(['system', 'developer', 'user', 'assistant'], { error: 'role must be one of "system", "developer", "user", "assistant"' }),
  content: z.union([z.string(), z.array(textPart)], { error: 'content must be a string or an array of {"type":"text","text":"…"} parts' }),
  // Neither changes what the model reads: the chat template sees role and content only.
  name: z.string().optional(),
  refusal: z.null().optional(),
});

export const ChatRequest = z.strictObject({
  ...common,
  max_completion_tokens: z.number().int().min(1).nullish(),
  messages: z.array(message, { error: 'messages must be an array of {"role","content"} objects' }).min(1, { error: 'messages must not be empty' }),
});

export type CompletionRequest = z.infer<typeof CompletionRequest>;
export type ChatRequest = z.infer<typeof ChatRequest>;
