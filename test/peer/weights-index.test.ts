// Which tensors a layer range fetches, the receiver's safetensors layout, and resume bookkeeping.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  badItem,
  bytesDone,
  isMetadataFile,
  itemsForRange,
  missingFor,
  parseSafetensorsHeader,
  remainingChunks,
  safetensorsHeaderLength,
  shardLayout,
  type WeightsIndex,
  type WeightsItem,
} from '../../peer/weights-index.ts';

const SHA = '0'.repeat(64);
const tensor = (name: string, size = 16): WeightsItem => ({ kind: 'tensor', name, size, sha256: SHA, dtype: 'F32', shape: [size / 4] });
const file = (name: string, size = 10): WeightsItem => ({ kind: 'file', name, size, sha256: SHA });

function model(opts: { tied?: boolean; layers?: number } = {}): WeightsIndex {
  const n = opts.layers ?? 4;
  const items = [file('config.json'), file('tokenizer.json'), tensor('model.embed_tokens.weight', 64), tensor('model.norm.weight')];
  for (let l = 0; l < n; l++) items.push(tensor(`model.layers.${l}.mlp.up_proj.weight`), tensor(`model.layers.${l}.input_layernorm.weight`, 8));
  if (!opts.tied) items.push(tensor('lm_head.weight', 64));
  return { name: 'm', digest: SHA, items };
}

const names = (items: WeightsItem[]) => items.map((i) => i.name).sort();

test('a middle stage fetches only its layers and the metadata files', () => {
  const got = names(itemsForRange(model(), [1, 3], 4));
  assert.equal(got, names([file('config.json'), file('tokenizer.json'), ...[1, 2].flatMap((l) => [tensor(`model.layers.${l}.mlp.up_proj.weight`), tensor(`model.layers.${l}.input_layernorm.weight`)])]));
});

test('the first stage adds the embedding; the last the norm and head, or the embedding when tied', () => {
  const first = names(itemsForRange(model(), [0, 2], 4));
  assert.ok(first.includes('model.embed_tokens.weight') && !first.includes('lm_head.weight') && !first.includes('model.norm.weight'));
  const last = names(itemsForRange(model(), [2, 4], 4));
  assert.ok(last.includes('lm_head.weight') && last.includes('model.norm.weight') && !last.includes('model.embed_tokens.weight'));
  const tiedLast = names(itemsForRange(model({ tied: true }), [2, 4], 4));
  assert.ok(tiedLast.includes('model.embed_tokens.weight') && tiedLast.includes('model.norm.weight'));
  assert.equal(names(itemsForRange(model(), [0, 0], 4)), ['config.json', 'tokenizer.json'], 'a peer outside the plan: the tokenizer only');
});

test('layer 1 does not match layer 10 or 11', () => {
  const got = names(itemsForRange(model({ layers: 12 }), [1, 2], 12)).filter((n) => n.includes('layers'));
  assert.equal(got, ['model.layers.1.input_layernorm.weight', 'model.layers.1.mlp.up_proj.weight']);
});

test('missingFor names what a source lacks for a range', () => {
  assert.equal(missingFor(model(), [0, 4], 4), []);
  const partial: WeightsIndex = { ...model(), items: model().items.filter((i) => !i.name.startsWith('model.layers.2.') && i.name !== 'tokenizer.json') };
  assert.equal(missingFor(partial, [1, 4], 4), ['a tokenizer', 'layer 2']);
  const headless: WeightsIndex = { ...model(), items: model().items.filter((i) => !/embed|lm_head|norm\.weight$/.test(i.name) || i.name.includes('layers')) };
  assert.equal(missingFor(headless, [0, 4], 4), ['the embedding', 'the final norm', 'the output head']);
});

test('metadata files: config, tokenizer, templates; never weights, code or hidden files', () => {
  for (const ok of ['config.json', 'tokenizer.json', 'tokenizer.model', 'chat_template.jinja', 'merges.txt', 'generation_config.json']) assert.ok(isMetadataFile(ok), ok);
  for (const no of ['model.safetensors', 'model.safetensors.index.json', 'modeling_llama.py', '.hidden.json', '../config.json', 'a/b.json']) assert.not.ok(isMetadataFile(no), no);
});

test('items whose names or sizes cannot be written as given are refused', () => {
  assert.is(badItem(file('tokenizer.json')), null);
  assert.is(badItem(tensor('model.norm.weight', 64)), null);
  assert.match(badItem(file('../../.bashrc.json'))!, /not a metadata file name/);
  assert.match(badItem(file('evil.py'))!, /not a metadata file name/);
  assert.match(badItem({ ...tensor('x', 64), shape: [3] })!, /is 64 bytes, not F32 \[3\]/);
  assert.match(badItem({ ...tensor('x', 64), dtype: 'F32", "shape' })!, /unknown dtype/);
  assert.equal(names(itemsForRange({ ...model(), items: [...model().items, file('../x.json')] }, [0, 0], 4)), ['config.json', 'tokenizer.json']);
});

test('the shard layout is a valid safetensors file that parses back to the same tensors', () => {
  const tensors = [tensor('a.weight', 12), tensor('b.weight', 40), tensor('c.weight', 4)];
  const layout = shardLayout(tensors);
  assert.is((layout.header.byteLength) % 8, 0, 'data starts 8-byte aligned');
  const n = safetensorsHeaderLength(layout.header.subarray(0, 8));
  const parsed = parseSafetensorsHeader(layout.header.subarray(8, 8 + n), layout.size);
  assert.equal(parsed.map((t) => [t.name, t.end - t.start, t.start]), tensors.map((t) => [t.name, t.size, layout.offsets.get(t.name)]));
  assert.is(layout.size, layout.header.byteLength + 56);
});

test('a malformed safetensors header is refused, not trusted', () => {
  assert.throws(() => parseSafetensorsHeader('{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', 20), /outside the file/);
  assert.throws(() => parseSafetensorsHeader('{"x":{"dtype":"F32","shape":[4],"data_offsets":[8,4]}}', 1000), /malformed/);
  assert.throws(() => parseSafetensorsHeader('not json', 1000), /not JSON/);
  const huge = Buffer.alloc(8);
  huge.writeBigUInt64LE(10n ** 12n);
  assert.throws(() => safetensorsHeaderLength(huge), /header of/);
});

test('remaining chunks resume each item where its written bytes end and skip verified ones', () => {
  const items = [tensor('a', 10), tensor('b', 25), file('c', 0)];
  const fresh = remainingChunks(items, null, 8);
  assert.equal(fresh.map((c) => [c.item.name, c.offset, c.length]), [['a', 0, 8], ['a', 8, 2], ['b', 0, 8], ['b', 8, 8], ['b', 16, 8], ['b', 24, 1]]);
  const progress = { digest: SHA, done: { 'tensor:a': { bytes: 10, verified: true }, 'tensor:b': { bytes: 16, verified: false } } };
  assert.equal(remainingChunks(items, progress, 8).map((c) => [c.item.name, c.offset, c.length]), [['b', 16, 8], ['b', 24, 1]]);
  assert.is(bytesDone(items, progress), 26);
  assert.is(bytesDone(items, null), 0);
});

test.run();
