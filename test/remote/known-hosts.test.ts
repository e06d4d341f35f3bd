// known_hosts matching without sockets: plain, hashed, [host]:port, wildcards, negation, @revoked, and
// "mismatch" only for a known key of the same type.
import { createHmac, randomBytes } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { checkHostKey, fingerprint, hostKeyName, keyTypeOf, knownKeyTypes, parseKnownHosts, patternsMatch } from '../../src/remote/known-hosts.ts';

function blob(type: string, body = randomBytes(32)): Buffer {
  const t = Buffer.from(type);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(t.length);
  return Buffer.concat([len, t, body]);
}

function hashed(name: string): string {
  const salt = randomBytes(20);
  return `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update(name).digest('base64')}`;
}

const ED = blob('ssh-ed25519');
const ED2 = blob('ssh-ed25519');
const RSA = blob('ssh-rsa');

test('host key names follow OpenSSH: bare on 22, [host]:port otherwise', () => {
  assert.is(hostKeyName('mac.local', 22), 'mac.local');
  assert.is(hostKeyName('10.0.0.2', 2222), '[10.0.0.2]:2222');
});

test('plain, hashed and bracketed entries match the right name only', () => {
  const text = [
    `# comment`,
    `mac.local,10.0.0.2 ssh-ed25519 ${ED.toString('base64')}`,
    `${hashed('[studio]:2222')} ssh-ed25519 ${ED.toString('base64')} comment`,
  ].join('\n');
  const entries = parseKnownHosts(text, 'kh');
  assert.is(entries.length, 2);
  assert.is(checkHostKey(entries, 'mac.local', 22, ED).status, 'match');
  assert.is(checkHostKey(entries, '10.0.0.2', 22, ED).status, 'match');
  assert.is(checkHostKey(entries, 'studio', 2222, ED).status, 'match');
  assert.is(checkHostKey(entries, 'studio', 22, ED).status, 'unknown', 'port 22 is a different name');
  assert.is(checkHostKey(entries, 'mac.local', 2222, ED).status, 'unknown');
});

test('a different key of the same type is a mismatch naming the line; another type is unknown', () => {
  const entries = parseKnownHosts(`\nmac.local ssh-ed25519 ${ED.toString('base64')}\n`, '/home/u/.ssh/known_hosts');
  const v = checkHostKey(entries, 'mac.local', 22, ED2);
  assert.is(v.status, 'mismatch');
  if (v.status === 'mismatch') assert.is(v.entries[0].line, 2);
  assert.is(checkHostKey(entries, 'mac.local', 22, RSA).status, 'unknown');
  assert.equal(knownKeyTypes(entries, 'mac.local', 22), ['ssh-ed25519']);
});

test('wildcards and negation', () => {
  assert.ok(patternsMatch('*.lan', 'a.lan'));
  assert.ok(patternsMatch('host?', 'host1'));
  assert.not.ok(patternsMatch('*.lan,!b.lan', 'b.lan'));
  assert.not.ok(patternsMatch('a.lan', 'b.lan'));
});

test('@revoked wins over a matching entry; @cert-authority lines are not host keys', () => {
  const entries = parseKnownHosts(
    [`@revoked * ssh-ed25519 ${ED.toString('base64')}`, `mac.local ssh-ed25519 ${ED.toString('base64')}`, `@cert-authority * ssh-ed25519 ${ED2.toString('base64')}`].join('\n'),
  );
  assert.is(checkHostKey(entries, 'mac.local', 22, ED).status, 'revoked');
  assert.is(checkHostKey(entries, 'mac.local', 22, ED2).status, 'mismatch', 'a CA key is not accepted as the host key');
});

test('key type and fingerprint come from the blob', () => {
  assert.is(keyTypeOf(RSA), 'ssh-rsa');
  assert.match(fingerprint(ED), /^SHA256:[A-Za-z0-9+/]{43}$/);
});

test.run();
