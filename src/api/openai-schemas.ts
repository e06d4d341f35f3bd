// Request bodies of the OpenAI-compatible endpoints. Unknown fields are ignored, as OpenAI clients
// send many; values we cannot honour are refused with a 400 that names the parameter.
import { z } from 'zod';

const stop = z.union([z.string().min(1), z.array(z.string().min(1)).max(4)]).nullish();

const common = {
  model: z.string().optional(),
  max_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  seed: z.number().int().nullish(),
  stop,
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).nullish(),
  n: z.literal(1, { message: 'only n=1 is supported' }).nullish(),
};

export const CompletionRequest = z.object({
  ...common,
  prompt: z.union([z.string(), z.array(z.string()).length(1, { message: 'send one prompt per request' })]),
});

const textPart = z.object({ type: z.literal('text'), text: z.string() });

export const ChatRequest = z.object({
  ...common,
  max_completion_tokens: z.number().int().min(1).nullish(),
  messages: z
    .array(
      z.object({
        role: z.enum(['system', 'developer', 'user', 'assistant']),
        content: z.union([z.string(), z.array(textPart)]),
      }),
    )
    .min(1, { message: 'messages must not be empty' }),
});

export type CompletionRequest = z.infer<typeof CompletionRequest>;
export type ChatRequest = z.infer<typeof ChatRequest>;
