// The CLI as a user meets it: help everywhere, clear errors and the documented exit codes.
import { spawnSync } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BIN, freePort, ROOT } from './helpers/process.ts';

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('every command has --help, and the top-level help lists them', () => {
  const top = cli('--help');
  assert.is(top.code, 0);
  const names = [...top.out.matchAll(/^ {2}([a-z]+) /gm)].map((m) => m[1]);
  assert.ok(names.includes('join') && names.includes('status') && names.includes('demo'));
  for (const name of names) {
    const r = cli(name, '--help');
    assert.is(r.code, 0, name);
    assert.match(r.out, new RegExp(`Usage: mlx-mesh ${name}`));
  }
});

test('usage errors exit 2 with a message', () => {
  const unknown = cli('frobnicate');
  assert.is(unknown.code, 2);
  assert.match(unknown.err, /unknown command "frobnicate"/);
  const flag = cli('join', '--bogus');
  assert.is(flag.code, 2);
  assert.match(flag.err, /bogus/);
  const port = cli('join', '--port', 'eighty');
  assert.is(port.code, 2);
  assert.match(port.err, /--port must be a port number/);
  const peer = cli('join', '--no-mdns', '--peer', 'http://x:1');
  assert.is(peer.code, 2);
  assert.match(peer.err, /--peer "http:\/\/x:1"/);
});

test('status against a peer that is not running exits 3 and says what to check', async () => {
  const r = cli('status', '--api', `http://127.0.0.1:${await freePort()}`);
  assert.is(r.code, 3);
  assert.match(r.err, /Is "mlx-mesh join" running there\?/);
});

test.run();
