// The messages every token step sends (forward, token, bench-echo), written field by field: keys are
// CBOR written once, ahead of time, and each field is read by name. The general writer has to list an
// object's keys and look each value up by a key it only knows at run time, and for an 8 KiB message
// that cost as much as the socket's write. The bytes are the same CBOR map (fields in the schema's
// order, absent and undefined optional fields left out), so any decoder reads it.
import type { CborWriter } from './cbor-writer.ts';
import type { Message } from './messages.ts';
import type { Tensor } from './tensor.ts';

type Of<T extends Message['type']> = Extract<Message, { type: T }>;

/** A text string's CBOR, written once. */
function cborText(s: string): Buffer {
  const bytes = Buffer.from(s);
  if (bytes.length >= 24) throw new Error(`key too long for a one-byte head: ${s}`);
  return Buffer.concat([Buffer.from([0x60 | bytes.length]), bytes]);
}

const K = {
  type: cborText('type'),
  request: cborText('request'),
  origin: cborText('origin'),
  planVersion: cborText('planVersion'),
  step: cborText('step'),
  offset: cborText('offset'),
  hidden: cborText('hidden'),
  tokens: cborText('tokens'),
  sample: cborText('sample'),
  sampling: cborText('sampling'),
  temperature: cborText('temperature'),
  topP: cborText('topP'),
  seed: cborText('seed'),
  sentAt: cborText('sentAt'),
  trace: cborText('trace'),
  token: cborText('token'),
  seq: cborText('seq'),
  answer: cborText('answer'),
  tensor: cborText('tensor'),
  dtype: cborText('dtype'),
  shape: cborText('shape'),
  data: cborText('data'),
};
const TYPE_FORWARD = Buffer.concat([K.type, cborText('forward')]);
const TYPE_TOKEN = Buffer.concat([K.type, cborText('token')]);
const TYPE_ECHO = Buffer.concat([K.type, cborText('bench-echo')]);

const MAP = 5;

/** One map entry: its key's CBOR, made ahead of time, then the value. */
function entry(w: CborWriter, key: Uint8Array, value: unknown): void {
  w.raw(key);
  w.value(value);
}

function tensor(w: CborWriter, t: Tensor): void {
  w.head(MAP, 3);
  entry(w, K.dtype, t.dtype);
  entry(w, K.shape, t.shape);
  entry(w, K.data, t.data);
}

/** sentAt and trace, when present. */
function timing(w: CborWriter, m: { sentAt?: number; trace?: unknown[] }): void {
  if (m.sentAt !== undefined) entry(w, K.sentAt, m.sentAt);
  if (m.trace !== undefined) entry(w, K.trace, m.trace);
}

const present = (v: unknown) => (v === undefined ? 0 : 1);

function forward(w: CborWriter, m: Of<'forward'>): void {
  w.head(MAP, 8 + present(m.hidden) + present(m.tokens) + present(m.sentAt) + present(m.trace));
  w.raw(TYPE_FORWARD);
  entry(w, K.request, m.request);
  entry(w, K.origin, m.origin);
  entry(w, K.planVersion, m.planVersion);
  entry(w, K.step, m.step);
  entry(w, K.offset, m.offset);
  if (m.hidden !== undefined) w.raw(K.hidden), tensor(w, m.hidden);
  if (m.tokens !== undefined) entry(w, K.tokens, m.tokens);
  entry(w, K.sample, m.sample);
  w.raw(K.sampling);
  w.head(MAP, 3);
  entry(w, K.temperature, m.sampling.temperature);
  entry(w, K.topP, m.sampling.topP);
  entry(w, K.seed, m.sampling.seed);
  timing(w, m);
}

function token(w: CborWriter, m: Of<'token'>): void {
  w.head(MAP, 4 + present(m.sentAt) + present(m.trace));
  w.raw(TYPE_TOKEN);
  entry(w, K.request, m.request);
  entry(w, K.step, m.step);
  entry(w, K.token, m.token!);
  timing(w, m);
}

function benchEcho(w: CborWriter, m: Of<'bench-echo'>): void {
  w.head(MAP, 4);
  w.raw(TYPE_ECHO);
  entry(w, K.seq, m.seq);
  entry(w, K.answer, m.answer);
  w.raw(K.tensor);
  tensor(w, m.tensor);
}

/** A hot message's CBOR parts (as CborWriter.parts gives them), or null for any other message. */
export function fastEncode(w: CborWriter, msg: Message, headroom = 0): Uint8Array[] | null {
  switch (msg.type) {
    // A split head's steps (once per token) take the general writer, which writes every field.
    case 'forward':
      return msg.head === undefined && msg.finish === undefined ? w.written(forward, msg, headroom) : null;
    case 'token':
      return msg.head === undefined && msg.token !== undefined ? w.written(token, msg, headroom) : null;
    case 'bench-echo':
      return w.written(benchEcho, msg, headroom);
    default:
      return null;
  }
}
