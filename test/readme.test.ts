// The README is the user's manual: every error code and every command it names must be real.
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ErrorCodes } from '../core/errors.ts';
import { COMMANDS } from '../src/cli.ts';
import { ROOT } from './helpers/process.ts';

const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');

test('every error code is listed with its meaning', () => {
  for (const [code, meaning] of Object.entries(ErrorCodes)) {
    assert.ok(readme.includes(`| \`${code}\` | ${meaning} |`), `README lists ${code}`);
  }
});

test('the first two commands are the demo and the tests', () => {
  const block = /```sh\n([\s\S]*?)```/.exec(readme)![1].trim().split('\n');
  assert.match(block[0], /^npm ci && npx mlx-mesh demo/);
  assert.match(block[1], /^npm test/);
});

test('the command table and the CLI list the same commands', () => {
  const table = readme.slice(readme.indexOf('## Commands'), readme.indexOf('## HTTP API'));
  const documented = new Set([...table.matchAll(/^\| `([a-z]+)|\/ `([a-z]+)/gm)].map((m) => m[1] ?? m[2]));
  documented.delete('command');
  assert.equal([...documented].sort(), Object.keys(COMMANDS).sort());
});

test.run();
