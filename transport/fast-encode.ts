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
const ARRAY = 4;

function tensor(w: CborWriter, t: Tensor): void {
  w.head(MAP, 3);
  w.raw(K.dtype);
  w.value(t.dtype);
  w.raw(K.shape);
  w.value(t.shape);
  w.raw(K.data);
  w.value(t.data);
}

/** sentAt and trace, when present. */
function timing(w: CborWriter, m: { sentAt?: number; trace?: unknown[] }): void {
  if (m.sentAt !== undefined) w.raw(K.sentAt), w.value(m.sentAt);
  if (m.trace !== undefined) w.raw(K.trace), w.value(m.trace);
}

const present = (v: unknown) => (v === undefined ? 0 : 1);

function forward(w: CborWriter, m: Of<'forward'>): void {
  w.head(MAP, 8 + present(m.hidden) + present(m.tokens) + present(m.sentAt) + present(m.trace));
  w.raw(TYPE_FORWARD);
  w.raw(K.request);
  w.value(m.request);
  w.raw(K.origin);
  w.value(m.origin);
  w.raw(K.planVersion);
  w.value(m.planVersion);
  w.raw(K.step);
  w.value(m.step);
  w.raw(K.offset);
  w.value(m.offset);
  if (m.hidden !== undefined) w.raw(K.hidden), tensor(w, m.hidden);
  if (m.tokens !== undefined) {
    w.raw(K.tokens);
    w.head(ARRAY, m.tokens.length);
    for (const t of m.tokens) w.value(t);
  }
  w.raw(K.sample);
  w.value(m.sample);
  w.raw(K.sampling);
  w.head(MAP, 3);
  w.raw(K.temperature);
  w.value(m.sampling.temperature);
  w.raw(K.topP);
  w.value(m.sampling.topP);
  w.raw(K.seed);
  w.value(m.sampling.seed);
  timing(w, m);
}

function token(w: CborWriter, m: Of<'token'>): void {
  w.head(MAP, 4 + present(m.sentAt) + present(m.trace));
  w.raw(TYPE_TOKEN);
  w.raw(K.request);
  w.value(m.request);
  w.raw(K.step);
  w.value(m.step);
  w.raw(K.token);
  w.value(m.token);
  timing(w, m);
}

function benchEcho(w: CborWriter, m: Of<'bench-echo'>): void {
  w.head(MAP, 4);
  w.raw(TYPE_ECHO);
  w.raw(K.seq);
  w.value(m.seq);
  w.raw(K.answer);
  w.value(m.answer);
  w.raw(K.tensor);
  tensor(w, m.tensor);
}

/** A hot message's CBOR parts (as CborWriter.parts gives them), or null for any other message. */
export function fastEncode(w: CborWriter, msg: Message, headroom = 0): Uint8Array[] | null {
  switch (msg.type) {
    case 'forward':
      return w.written(forward, msg, headroom);
    case 'token':
      return w.written(token, msg, headroom);
    case 'bench-echo':
      return w.written(benchEcho, msg, headroom);
    default:
      return null;
  }
}
