// The CLI as a user meets it: help everywhere, clear errors and the documented exit codes.
import { spawnSync } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createTestMesh, getJson, waitFor } from './helpers/mesh.ts';
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

test('status prints the cluster table, or the JSON of /distributed/gpu-info', async () => {
  const mesh = await createTestMesh(2);
  try {
    const api = mesh.nodes[1].api.url;
    await waitFor(async () => (await getJson(`${api}/distributed/gpu-info`)).cluster_status === 'healthy');
    // spawnSync would block this process, which hosts the peers: run the CLI asynchronously.
    const { execFile } = await import('node:child_process');
    const run = (...args: string[]) =>
      new Promise<string>((resolve, reject) =>
        execFile(process.execPath, [BIN, ...args], { cwd: ROOT }, (err, stdout) => (err ? reject(err) : resolve(stdout))),
      );
    const table = await run('status', '--api', api);
    assert.match(table, /^cluster healthy, 2 device\(s\), term 1/);
    assert.match(table, /RANK +ROLE +NAME +DEVICE/);
    assert.match(table, new RegExp(`0 +coordinator +p0 +${mesh.nodes[0].peer.id}`));
    assert.match(table, new RegExp(`1 +worker +p1 +${mesh.nodes[1].peer.id}`));
    const json = JSON.parse(await run('status', '--api', api, '--json'));
    assert.is(json.world_size, 2);
    assert.is(json.coordinator, mesh.nodes[0].peer.id);
  } finally {
    await mesh.stop();
  }
});

test.run();
