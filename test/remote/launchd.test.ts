// The macOS LaunchAgent and the remote command lines, checked as text (no Mac needed): the plist is
// valid XML that plutil would accept in shape, and quoting survives hostile paths.
import { execFileSync } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { agentLabel, agentPlist, explainBootstrapFailure } from '../../src/remote/launchd.ts';
import { loginShell, rpath, sq } from '../../src/remote/shell.ts';

test('one agent label per data dir, the plain label for the default one', () => {
  assert.is(agentLabel('/Users/ada/.mlx-mesh', true), 'com.mlx-mesh.peer');
  const a = agentLabel('/Users/ada/mesh-a', false);
  assert.match(a, /^com\.mlx-mesh\.peer\.[0-9a-f]{8}$/);
  assert.is.not(a, agentLabel('/Users/ada/mesh-b', false));
});

test('the plist runs the program with PATH, logs to the log file, and escapes XML', () => {
  const xml = agentPlist({
    label: 'com.mlx-mesh.peer',
    program: ['/opt/homebrew/bin/node', '/Users/ada/.mlx-mesh/app/node_modules/mlx-mesh/bin/mlx-mesh.js', 'join', '--name', 'Ada & <Bob>'],
    logFile: '/Users/ada/.mlx-mesh/logs/peer.log',
    workingDir: '/Users/ada/.mlx-mesh',
    env: { PATH: '/opt/homebrew/bin:/usr/bin:/bin' },
  });
  assert.match(xml, /<string>Ada &amp; &lt;Bob&gt;<\/string>/);
  assert.match(xml, /<key>StandardErrorPath<\/key>\s*<string>\/Users\/ada\/\.mlx-mesh\/logs\/peer\.log<\/string>/);
  assert.match(xml, /<key>PATH<\/key>\s*<string>\/opt\/homebrew\/bin:/);
  assert.match(xml, /<key>RunAtLoad<\/key>\s*<true\/>/);
  // Well-formed: Python's plistlib parses it back.
  const parsed = execFileSync('python3', ['-c', 'import plistlib,sys,json; print(json.dumps(plistlib.loads(sys.stdin.buffer.read())))'], { input: xml, encoding: 'utf8' });
  assert.is(JSON.parse(parsed).ProgramArguments[4], 'Ada & <Bob>');
});

test('a bootstrap failure without a GUI session says to log in on the Mac', () => {
  assert.match(explainBootstrapFailure('studio', 'Bootstrap failed: 125: Domain does not support specified action'), /Log in on studio's screen/);
  assert.match(explainBootstrapFailure('studio', 'Bootstrap failed: 17: File exists'), /launchctl bootstrap failed on studio/);
});

test('quoting survives spaces, quotes and $ in paths; ~ stays for the remote $HOME', () => {
  const hostile = `/tmp/it's a $HOME dir`;
  const out = execFileSync('sh', ['-c', `printf %s ${sq(hostile)}`], { encoding: 'utf8' });
  assert.is(out, hostile);
  assert.is(sq('plain/path-1.2'), 'plain/path-1.2');
  assert.is(execFileSync('sh', ['-c', `HOME=/h; printf %s ${rpath('~/a b')}`], { encoding: 'utf8' }), '/h/a b');
  const viaLogin = execFileSync('sh', ['-c', loginShell(`printf %s ${sq("x'y")}`)], { encoding: 'utf8', env: { ...process.env, SHELL: '/bin/sh' } });
  assert.is(viaLogin, "x'y");
});

test.run();
