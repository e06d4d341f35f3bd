// mlx-lm's streaming detokenizers (tokenizer_utils.py), rule for rule, so that the peer driving a
// request turns token ids into text itself: no engine round trip per token, and the text never waits
// behind a forward in the engine's queue. The engine hands over the rules and the token map once per
// model (its `detok_spec` op); a tokenizer whose detokenizer is mlx-lm's naive one (it decodes whole
// lines with the tokenizer) keeps using the engine's streams (text-stream.ts).
//
// - bpe (GPT-2 style byte-level BPE, e.g. SmolLM2, Llama 3, Qwen): each piece's characters stand for
//   bytes; text is released once it is whole UTF-8, a lone space piece waits for the next token.
// - spm (SentencePiece, e.g. Llama 2, the stories models): pieces are bytes, "▁" is a space, `<0xNN>`
//   pieces are single bytes; text is released once it is whole UTF-8.
// Both drop the first space of the whole text (spm unless its decoder keeps it: `trim_space`).
// Pure logic, no I/O.
import { meshError } from '../core/errors.ts';

/** The engine's `detok_spec` reply. */
export type DetokSpec =
  | { kind: 'bpe'; pieces: string[] }
  | { kind: 'spm'; trim_space: boolean; pieces: Uint8Array[] }
  | { kind: 'naive' };

/** One request's detokenizer: `add` returns the text that became final, `finalize` the rest. */
export interface StreamingDetokenizer {
  add(token: number): string;
  finalize(): string;
}

/** A detokenizer for the spec, or null for `naive` (the engine's stream must do it). */
export function createDetokenizer(spec: DetokSpec): StreamingDetokenizer | null {
  if (spec.kind === 'bpe') return new BpeDetokenizer(spec.pieces);
  if (spec.kind === 'spm') return new SpmDetokenizer(spec.pieces, spec.trim_space);
  return null;
}

const REPLACEMENT = '\ufffd';
// Python's bytes.decode('utf-8', 'replace'): a leading BOM is text, not a marker to drop.
const utf8 = new TextDecoder('utf-8', { ignoreBOM: true });
const encoder = new TextEncoder();

function vocabCheck(token: number, size: number): void {
  if (!Number.isInteger(token) || token < 0 || token >= size) {
    throw meshError('REQUEST_FAILED', `token id ${token} is outside the tokenizer's vocabulary (size ${size})`);
  }
}

/** GPT-2's byte ↔ printable character table (mlx-lm's `_byte_decoder`): character → byte. */
export const BYTE_DECODER: ReadonlyMap<string, number> = (() => {
  const table = new Map<string, number>();
  const limits = [0, 0x21, 0x7e + 1, 0xa1, 0xac + 1, 0xae, 0xff + 1];
  let n = 0;
  for (let i = 0; i + 1 < limits.length; i++) {
    for (let b = limits[i]; b < limits[i + 1]; b++) {
      if (i % 2 === 0) table.set(String.fromCodePoint(256 + n++), b);
      else table.set(String.fromCodePoint(b), b);
    }
  }
  return table;
})();

export class BpeDetokenizer implements StreamingDetokenizer {
  private unflushed = '';
  private empty = true;

  constructor(private readonly pieces: string[]) {}

  add(token: number): string {
    vocabCheck(token, this.pieces.length);
    const piece = this.pieces[token];
    this.unflushed += piece;
    const text = decodePieces(this.unflushed);
    // A partial character waits for its other bytes; a lone space waits for the next token.
    if (text.endsWith(REPLACEMENT) || isSpacePiece(piece)) return '';
    this.unflushed = '';
    return this.emit(text);
  }

  finalize(): string {
    // mlx-lm maps every character through the table here, byte 0's too (a character outside the table,
    // which mlx-lm would fail on, is taken as its UTF-8 bytes).
    const text = decodePieces(this.unflushed, true);
    this.unflushed = '';
    return this.emit(text);
  }

  private emit(text: string): string {
    if (this.empty && text.startsWith(' ')) text = text.slice(1);
    if (text) this.empty = false;
    return text;
  }
}

/** Pieces as text: table characters as their bytes, others as their UTF-8, decoded with replacement
 *  characters. mlx-lm's `_decode_bytes` (add) takes byte 0's character as UTF-8 too (its `if res:`
 *  skips 0); its finalize does not (`withZero`). */
function decodePieces(seq: string, withZero = false): string {
  const bytes: number[] = [];
  for (const c of seq) {
    const b = BYTE_DECODER.get(c);
    if (b !== undefined && (b !== 0 || withZero)) bytes.push(b);
    else bytes.push(...encoder.encode(c));
  }
  return utf8.decode(new Uint8Array(bytes));
}

function isSpacePiece(piece: string): boolean {
  return piece.length === 1 && BYTE_DECODER.get(piece) === 0x20;
}

const SPM_SPACE = encoder.encode('\u2581');

export class SpmDetokenizer implements StreamingDetokenizer {
  private unflushed: number[] = [];
  private empty = true;

  constructor(
    private readonly pieces: Uint8Array[],
    private readonly trimSpace: boolean,
  ) {}

  add(token: number): string {
    vocabCheck(token, this.pieces.length);
    for (const b of this.pieces[token]) this.unflushed.push(b);
    return this.flush(false);
  }

  finalize(): string {
    return this.flush(true);
  }

  private flush(force: boolean): string {
    let text = utf8.decode(spacesFor(this.unflushed));
    if (!force && text.endsWith(REPLACEMENT)) return '';
    if (this.empty && this.trimSpace && text.startsWith(' ')) text = text.slice(1);
    if (text) this.empty = false;
    this.unflushed = [];
    return text;
  }
}

/** The bytes with every "▁" (E2 96 81) replaced by a space, as mlx-lm's bytes.replace does. */
function spacesFor(bytes: number[]): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] === SPM_SPACE[0] && bytes[i + 1] === SPM_SPACE[1] && bytes[i + 2] === SPM_SPACE[2]) {
      out.push(0x20);
      i += 2;
    } else {
      out.push(bytes[i]);
    }
  }
  return new Uint8Array(out);
}
