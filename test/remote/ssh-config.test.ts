// ~/.ssh/config resolution and SSH target parsing without a network.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseSshConfig, resolveHostConfig } from '../../src/remote/ssh-config.ts';
import { parseTargetSpec, resolveTarget } from '../../src/remote/target.ts';

const HOME = '/home/ada';
const CONFIG = `
# the studio
Host studio studio.lan
  HostName 192.168.1.20
  User ada
  Port 2200
  IdentityFile ~/.ssh/studio_ed25519

Host *.lan !printer.lan
  IdentityFile %d/.ssh/lan_%h
  User = lanuser

Match host foo
  User ignored

Host *
  IdentityFile ~/.ssh/id_ed25519
  Port 22
  UserKnownHostsFile ~/.ssh/known_hosts_mesh
`;

test('first value wins, IdentityFile accumulates, tokens and ~ expand', () => {
  const blocks = parseSshConfig(CONFIG, { home: HOME });
  const c = resolveHostConfig(blocks, 'studio', { home: HOME, localUser: 'ada' });
  assert.is(c.hostName, '192.168.1.20');
  assert.is(c.user, 'ada');
  assert.is(c.port, 2200);
  assert.equal(c.identityFiles, ['/home/ada/.ssh/studio_ed25519', '/home/ada/.ssh/id_ed25519']);
  assert.equal(c.userKnownHostsFiles, ['/home/ada/.ssh/known_hosts_mesh']);
});

test('wildcard blocks, negation, and Match blocks skipped', () => {
  const blocks = parseSshConfig(CONFIG, { home: HOME });
  const mini = resolveHostConfig(blocks, 'mini.lan', { home: HOME, localUser: 'ada' });
  assert.is(mini.user, 'lanuser');
  assert.is(mini.hostName, undefined);
  assert.is(mini.port, 22);
  assert.equal(mini.identityFiles, ['/home/ada/.ssh/lan_mini.lan', '/home/ada/.ssh/id_ed25519']);
  const printer = resolveHostConfig(blocks, 'printer.lan', { home: HOME });
  assert.is(printer.user, undefined);
  assert.is(resolveHostConfig(blocks, 'foo', { home: HOME }).user, undefined);
});

test('Include pulls in other files relative to ~/.ssh', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlx-mesh-sshcfg-'));
  fs.mkdirSync(path.join(dir, 'conf.d'));
  fs.writeFileSync(path.join(dir, 'conf.d', 'mesh.conf'), 'Host m1\n  HostName 10.1.1.1\n  User mesh\n');
  const blocks = parseSshConfig('Include conf.d/*.conf\nHost *\n  User other\n', { home: HOME, baseDir: dir });
  const c = resolveHostConfig(blocks, 'm1', { home: HOME });
  assert.is(c.hostName, '10.1.1.1');
  assert.is(c.user, 'mesh');
  fs.rmSync(dir, { recursive: true });
});

test('targets: user@host, host:port, [v6]:port, ssh:// and bad input', () => {
  assert.equal(parseTargetSpec('root@127.0.0.1:2222'), { user: 'root', host: '127.0.0.1', port: 2222 });
  assert.equal(parseTargetSpec('ssh://ada@mac.local'), { user: 'ada', host: 'mac.local', port: undefined });
  assert.equal(parseTargetSpec('[::1]:22'), { user: undefined, host: '::1', port: 22 });
  assert.equal(parseTargetSpec('studio'), { user: undefined, host: 'studio', port: undefined });
  assert.throws(() => parseTargetSpec('host:ssh'), /must be a port/);
  assert.throws(() => parseTargetSpec('@host'), /expected \[user@\]host/);
});

test('the target spec and flags win over the config, which wins over defaults', () => {
  const config = resolveHostConfig(parseSshConfig(CONFIG, { home: HOME }), 'studio', { home: HOME, localUser: 'ada' });
  const t = resolveTarget('bob@studio', { config, home: HOME });
  assert.is(t.host, '192.168.1.20');
  assert.is(t.user, 'bob');
  assert.is(t.port, 2200);
  assert.is(resolveTarget('studio:2201', { config, home: HOME }).port, 2201);
  const flagged = resolveTarget('studio', { config, identity: '/k', port: 9, home: HOME });
  assert.equal(flagged.identityFiles, ['/k']);
  assert.ok(flagged.identitiesOnly);
  assert.is(flagged.port, 9, '--ssh-port beats the config, as ssh -p does');
});

test.run();
