// Frames <-> messages. CBOR options chosen so a plain CBOR decoder in any language reads our frames:
// no records extension, byte strings untagged. Every decoded frame is validated before anyone uses it.
import { Encoder } from 'cbor-x';
import { meshError, MeshError } from '../core/errors.ts';
import { MessageSchema, type Message } from './messages.ts';

const cbor = new Encoder({
  useRecords: false,
  tagUint8Array: false,
  mapsAsObjects: true,
  variableMapSize: true,
  pack: false,
});

export function encodeMessage(msg: Message): Uint8Array {
  return cbor.encode(msg);
}

/** Raw CBOR, for tests that need frames the schema would never produce. */
export function encodeRaw(value: unknown): Uint8Array {
  return cbor.encode(value);
}

export function decodeMessage(frame: Uint8Array, maxBytes = Infinity): Message {
  if (frame.byteLength > maxBytes) {
    throw meshError('FRAME_TOO_LARGE', `frame of ${frame.byteLength} bytes exceeds the limit of ${maxBytes}`);
  }
  let value: unknown;
  try {
    value = cbor.decode(frame);
  } catch (err) {
    throw meshError('BAD_FRAME', `frame is not valid CBOR: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value) || value instanceof Uint8Array) {
    throw meshError('BAD_FRAME', 'frame is not a CBOR map');
  }
  const type = (value as { type?: unknown }).type;
  if (typeof type !== 'string') throw meshError('BAD_FRAME', 'frame has no string `type`');
  const parsed = MessageSchema.safeParse(value);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    if (first?.code === 'invalid_union' && (first as { note?: string }).note === 'No matching discriminator') {
      throw meshError('BAD_FRAME', `unknown message type "${type}"`);
    }
    const tensorIssue = parsed.error.issues.find((i) => i.code === 'custom' && i.message.startsWith('tensor '));
    if (tensorIssue) throw meshError('TENSOR_SIZE', tensorIssue.message);
    const where = first?.path.join('.') || '(root)';
    throw meshError('SCHEMA', `invalid "${type}" message at ${where}: ${first?.message ?? 'schema mismatch'}`);
  }
  return parsed.data as Message;
}

export { MeshError };
