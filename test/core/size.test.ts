// Sizes as `--memory` takes them, and as MODEL_TOO_LARGE shows them.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { isMeshError } from '../../core/errors.ts';
import { formatBytes, parseSize } from '../../core/size.ts';

test('decimal and binary units, any case, a bare number is bytes', () => {
  assert.is(parseSize('8GB'), 8e9);
  assert.is(parseSize('8GiB'), 8 * 2 ** 30);
  assert.is(parseSize('8g'), 8 * 2 ** 30);
  assert.is(parseSize('512MiB'), 512 * 2 ** 20);
  assert.is(parseSize('1.5 GB'), 1.5e9);
  assert.is(parseSize('1073741824'), 2 ** 30);
});

test('anything else is BAD_ARGUMENT naming the flag', () => {
  for (const bad of ['', 'lots', '8 parsecs', '-1GB', '0', 'GB']) {
    try {
      parseSize(bad, '--memory');
      assert.unreachable(bad);
    } catch (err) {
      assert.ok(isMeshError(err, 'BAD_ARGUMENT'), bad);
      assert.match((err as Error).message, /--memory must be/);
    }
  }
});

test('figures: GiB from 1 GiB up, MiB below', () => {
  assert.is(formatBytes(140 * 2 ** 30), '140.00 GiB');
  assert.is(formatBytes(80 * 2 ** 20), '80.0 MiB');
});

test.run();
