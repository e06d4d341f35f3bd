// The CLI as a user meets it: help everywhere, clear errors and the documented exit codes.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
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

test('a busy API port is a clear PORT_IN_USE error, exit 1, no stack trace', async () => {
  const net = await import('node:net');
  const blocker = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => blocker.once('listening', r));
  const apiPort = (blocker.address() as import('node:net').AddressInfo).port;
  try {
    const { execFile } = await import('node:child_process');
    const r = await new Promise<{ code: number | null; err: string }>((resolve) =>
      execFile(process.execPath, [BIN, 'join', '--no-mdns', '--port', '0', '--api-port', String(apiPort), '--data-dir', fs.mkdtempSync(path.join(os.tmpdir(), 'mlx-mesh-cli-'))], { cwd: ROOT }, (e, _o, err) =>
        resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, err }),
      ),
    );
    assert.is(r.code, 1);
    assert.match(r.err, new RegExp(`API port ${apiPort} is already in use.*\\[PORT_IN_USE\\]`));
    assert.not.match(r.err, /unexpected error|\n\s+at /);
  } finally {
    blocker.close();
  }
});

test('the package ships the compiled CLI and the engine, not the tests, and tsx only for development', () => {
  const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  assert.is(r.status, 0, r.stderr);
  const files: string[] = JSON.parse(r.stdout)[0].files.map((f: { path: string }) => f.path);
  assert.ok(files.includes('dist/src/cli.js'), 'dist/src/cli.js is packed');
  assert.ok(files.includes('peer/engine/mlx_mesh_engine/server.py'), 'the engine is packed');
  assert.ok(files.includes('peer/engine/requirements.txt'));
  assert.equal(files.filter((f) => f.startsWith('test/') || f.includes('/tests/') || f.endsWith('.ts')), []);
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  assert.not.ok('tsx' in pkg.dependencies, 'tsx is not a runtime dependency');
});

test.run();
