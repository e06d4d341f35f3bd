// Each doctor check on controlled inputs: the verdict and, for a failure, a fix a user can act on.
import net from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseHostPort, peerTargets } from '../../src/commands/doctor.ts';
import { formatReport } from '../../src/doctor/check.ts';
import { checkBlas, checkDevice, checkMalloc, checkDisk, checkInterpreter, checkMlx, checkNode, checkPort, checkVenv, probePort } from '../../src/doctor/local.ts';
import { checkFirewall, checkLocalNetwork, checkMdns, firewallVerdict } from '../../src/doctor/network.ts';
import { checkResolve, checkTcp, engineVerdict, helloVerdict, peerIdVerdict, rttVerdict } from '../../src/doctor/remote.ts';
import type { PythonEnvCheck } from '../../peer/python-env.ts';

const okEnv: PythonEnvCheck = {
  ok: true,
  python: { path: '/d/venv/bin/python', source: 'venv' },
  versions: { python: '3.12.1', mlx: '0.32.4', 'mlx-lm': '0.32.2' },
  device: 'gpu (Metal)',
  problems: [],
  fix: '',
};
const brokenEnv: PythonEnvCheck = {
  ok: false,
  python: { path: 'python3', source: 'path' },
  versions: {},
  problems: ['no managed venv at /d/venv; falling back to python3 on PATH', "python3 (path) cannot run MLX: ModuleNotFoundError: No module named 'mlx'"],
  fix: 'run "mlx-mesh setup --data-dir /d"',
};

test('Node: 20+ passes, older fails with an install hint', () => {
  assert.is(checkNode('20.11.0').status, 'pass');
  const r = checkNode('18.19.0');
  assert.is(r.status, 'fail');
  assert.match(r.fix!, /Node ≥ 20/);
});

test('interpreter: found passes; none found fails listing what was refused', () => {
  const found = { path: 'python3', version: '3.12.1', major: 3, minor: 12, machine: 'arm64', executable: '/opt/homebrew/bin/python3.12' };
  assert.is(checkInterpreter({ found, rejected: [] }).status, 'pass');
  const r = checkInterpreter({ found: null, rejected: [{ path: '/usr/bin/python3', reason: 'Python 3.9.6 is older than 3.10' }] }, 'darwin');
  assert.is(r.status, 'fail');
  assert.match(r.detail, /3\.9\.6/);
  assert.match(r.fix!, /brew install python/);
});

test('venv: used passes; missing fails with the setup command; --python warns', () => {
  assert.is(checkVenv(okEnv, '/d').status, 'pass');
  const r = checkVenv(brokenEnv, '/d');
  assert.is(r.status, 'fail');
  assert.is(r.fix, 'run "mlx-mesh setup --data-dir /d"');
  assert.is(checkVenv({ ...okEnv, python: { path: '/x/python', source: 'flag' } }, '/d').status, 'warn');
});

test('mlx: versions shown; import failure fails with the fix', () => {
  assert.match(checkMlx(okEnv).detail, /mlx 0\.32\.4, mlx-lm 0\.32\.2/);
  const r = checkMlx(brokenEnv);
  assert.is(r.status, 'fail');
  assert.match(r.detail, /No module named 'mlx'/);
  assert.match(r.fix!, /mlx-mesh setup/);
});

test('device: Metal on Apple silicon, CPU there is a warning, CPU on Linux passes', () => {
  assert.is(checkDevice(okEnv, 'darwin', 'arm64').status, 'pass');
  assert.is(checkDevice({ ...okEnv, device: 'cpu' }, 'darwin', 'arm64').status, 'warn');
  assert.is(checkDevice({ ...okEnv, device: 'cpu' }, 'linux', 'x64').status, 'pass');
  assert.is(checkDevice(brokenEnv, 'linux', 'x64').status, 'fail');
});

test('BLAS: a library with rows_gemm passes on Linux, with its timed speed; slower than the BLAS, without it, or the bundled one, warns with what to install; other systems skip', () => {
  const withKernel = checkBlas({ ...okEnv, blas: 'libblis.so.4 + rows_gemm', rowsGemm: 'on' }, 'linux', undefined);
  assert.equal(withKernel, { group: checkNode().group, title: 'BLAS', status: 'pass', detail: 'libblis.so.4 + rows_gemm' });
  const timed = checkBlas({ ...okEnv, blas: 'libblis.so.4 + rows_gemm', rowsGemm: 'on', rowsGemmSpeed: 0.56 }, 'linux', undefined);
  assert.is(timed.status, 'pass');
  assert.match(timed.detail, /2 rows in 0\.56× the time of two single rows/);
  const slow = checkBlas({ ...okEnv, blas: 'libblis.so.4 + rows_gemm', rowsGemm: 'on', rowsGemmSpeed: 3.8 }, 'linux', undefined);
  assert.is(slow.status, 'warn', 'a kernel slower than the BLAS on this CPU is worth turning off');
  assert.match(slow.detail, /3\.80× the time of two single-row products/);
  assert.match(slow.fix!, /MLX_MESH_ROWS_GEMM=0/);
  const noCompiler = checkBlas({ ...okEnv, blas: 'libblis.so.4', rowsGemm: 'off: it could not be built (no working C compiler)' }, 'linux', undefined);
  assert.is(noCompiler.status, 'warn');
  assert.match(noCompiler.fix!, /apt install gcc/);
  const threaded = checkBlas({ ...okEnv, blas: 'libblis.so.4', rowsGemm: 'off: the BLAS runs 8 threads' }, 'linux', undefined);
  assert.is(threaded.status, 'pass', 'standing aside for a multi-threaded BLAS is no fault');
  assert.match(threaded.detail, /rows_gemm off: the BLAS runs 8 threads/);
  const bundled = checkBlas({ ...okEnv, blas: 'bundled' }, 'linux', undefined);
  assert.is(bundled.status, 'warn');
  assert.match(bundled.fix!, /apt install libblis4-pthread/);
  assert.match(checkBlas({ ...okEnv, blas: 'bundled' }, 'linux', 'bundled').fix!, /unset MLX_MESH_BLAS/);
  assert.is(checkBlas({ ...okEnv, blas: 'bundled' }, 'darwin').status, 'skip');
  assert.is(checkBlas(brokenEnv, 'linux').status, 'skip');
  assert.match(engineVerdict('g', { id: 'a', engine: 'ready', blas: 'libblis.so.4', capabilities: { mlxVersion: '0.32.4', backend: 'cpu' } }).detail, /mlx 0\.32\.4, cpu, BLAS libblis\.so\.4/);
  assert.match(engineVerdict('g', { id: 'a', engine: 'ready', blas: 'libblis.so.4', malloc: 'libjemalloc.so.2', capabilities: { mlxVersion: '0.32.4', backend: 'cpu' } }).detail, /BLAS libblis\.so\.4, malloc libjemalloc\.so\.2/);
  const withSched = engineVerdict('g', { id: 'a', engine: 'ready', blas: 'libblis.so.4', malloc: 'libjemalloc.so.2', sched: 'batch', capabilities: { mlxVersion: '0.32.4', backend: 'cpu' } });
  assert.match(withSched.detail, /malloc libjemalloc\.so\.2, sched batch/);
});

test("malloc: jemalloc passes on Linux; glibc's warns with the package to install, unless MLX_MESH_MALLOC=system asked for it; other systems skip", () => {
  assert.equal(checkMalloc({ ...okEnv, malloc: 'libjemalloc.so.2' }, 'linux', undefined), {
    group: checkNode().group,
    title: 'malloc',
    status: 'pass',
    detail: 'libjemalloc.so.2 (the engine preloads it)',
  });
  const glibc = checkMalloc({ ...okEnv, malloc: 'system' }, 'linux', undefined);
  assert.is(glibc.status, 'warn');
  assert.match(glibc.fix!, /apt install libjemalloc2/);
  assert.is(checkMalloc({ ...okEnv, malloc: 'system' }, 'linux', 'system').status, 'pass');
  assert.is(checkMalloc({ ...okEnv, malloc: 'system' }, 'darwin').status, 'skip');
  assert.is(checkMalloc(brokenEnv, 'linux').status, 'skip');
});

test('ports: free passes, held by mlx-mesh passes, held by something else fails with lsof', async () => {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
  const port = (server.address() as net.AddressInfo).port;
  const probe = await probePort(port);
  assert.is(probe, 'EADDRINUSE');
  const theirs = checkPort('peer', '--port', port, probe, null);
  assert.is(theirs.status, 'fail');
  assert.match(theirs.fix!, new RegExp(`lsof -nP -iTCP:${port}`));
  assert.match(checkPort('peer', '--port', port, probe, { peerId: 'mac-1', role: 'coordinator' }).detail, /mlx-mesh peer mac-1/);
  await new Promise((r) => server.close(r));
  assert.is(await probePort(port), true);
});

test('disk: under 2 GiB fails', () => {
  assert.is(checkDisk('/d', 1 * 2 ** 30).status, 'fail');
  assert.is(checkDisk('/d', 50 * 2 ** 30).status, 'pass');
});

test('mDNS skipped with --no-mdns; firewall and Local Network skipped on Linux with a reason', async () => {
  const m = await checkMdns({ disabled: true });
  assert.is(m.status, 'skip');
  assert.match(m.detail, /--no-mdns/);
  assert.match((await checkFirewall('linux')).detail, /not macOS/);
  assert.is(checkLocalNetwork('linux').status, 'skip');
  assert.is(checkLocalNetwork('darwin', '24.1.0').status, 'warn');
  assert.is(checkLocalNetwork('darwin', '23.6.0').status, 'pass');
});

test('macOS firewall verdicts from socketfilterfw output', () => {
  assert.is(firewallVerdict('Firewall is disabled. (State = 0)', 'Block all DISABLED!').status, 'pass');
  assert.is(firewallVerdict('Firewall is enabled. (State = 1)', 'Block all ENABLED!').status, 'fail');
  assert.is(firewallVerdict('Firewall is enabled. (State = 1)', 'Block all DISABLED!').status, 'warn');
});

test('remote: resolve, refused TCP names the host and port', async () => {
  assert.is((await checkResolve('g', '127.0.0.1')).status, 'pass');
  assert.is((await checkResolve('g', 'no-such-host.invalid')).status, 'fail');
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((r) => server.close(r));
  const tcp = await checkTcp('g', '127.0.0.1', port, 1000);
  assert.is(tcp.result.status, 'fail');
  assert.match(tcp.result.detail, new RegExp(`127\\.0\\.0\\.1:${port} ECONNREFUSED`));
});

test('hello verdicts: protocol and cluster mismatches fail with the fix', () => {
  const expect = { protocol: 1, cluster: 'home' };
  assert.is(helloVerdict('g', expect, { protocol: 1, cluster: 'home', peerId: 'a' }).status, 'pass');
  assert.match(helloVerdict('g', expect, { protocol: 2, cluster: 'home', peerId: 'a' }).fix!, /same mlx-mesh version/);
  assert.match(helloVerdict('g', expect, { protocol: 1, cluster: 'lab', peerId: 'a' }).fix!, /same --cluster/);
  assert.is(helloVerdict('g', expect, new Error('HTTP 404')).status, 'fail');
});

test('RTT and engine verdicts', () => {
  assert.is(rttVerdict('g', 0.4, 0.8).status, 'pass');
  assert.is(rttVerdict('g', 0.4, 120).status, 'warn');
  assert.is(engineVerdict('g', undefined).status, 'skip');
  assert.match(engineVerdict('g', { id: 'a', capabilities: { mlxVersion: '0.32.4', engine: 'ready' } }).detail, /ready \(mlx 0\.32\.4/);
  assert.is(engineVerdict('g', { id: 'a', engine: 'failed' }).status, 'fail');
  const older = engineVerdict('g', { id: 'a', engine: 'ready', capabilities: { mlxVersion: '0.31.0' } }, '0.32.4');
  assert.is(older.status, 'fail');
  assert.match(older.detail, /mlx 0\.31\.0, this machine has mlx 0\.32\.4/);
  assert.is(engineVerdict('g', { id: 'a', engine: 'ready', capabilities: { mlxVersion: '0.32.4' } }, '0.32.4').status, 'pass');
});

test('peer targets: hosts given plus the local view, deduplicated; unlinked static targets kept with their id', () => {
  const view = {
    self: { id: 's' },
    cluster: 'default',
    peers: [{ id: 'b', host: '10.0.0.2', port: 50051, state: 'connected' }],
    targets: [
      { address: '10.0.0.2:50051', id: 'b', linked: true },
      { address: '10.0.0.3:50051', id: 'c', linked: false },
      { address: '127.0.0.1:50051', self: true },
    ],
  };
  const t = peerTargets([parseHostPort('10.0.0.2', 50051), parseHostPort('mini:6000', 50051)], view as never);
  assert.equal(t.map((x) => `${x.host}:${x.port}`), ['10.0.0.2:50051', 'mini:6000', '10.0.0.3:50051']);
  assert.is(t[0].known?.id, 'b');
  assert.is(t[2].id, 'c');
});

test('the report marks each check and counts failures', () => {
  const text = formatReport([checkNode('20.1.0'), checkNode('18.0.0')]);
  assert.match(text, /✅ Node\.js/);
  assert.match(text, /❌ Node\.js/);
  assert.match(text, /fix: /);
  assert.match(text, /1 check\(s\) failed/);
});

test('peer ids: a DUPLICATE_ID refusal in the peer\'s view fails with the fix', () => {
  assert.is(peerIdVerdict([]).status, 'pass');
  assert.is(peerIdVerdict([{ code: 'AUTH_FAILED', from: 'x' }]).status, 'pass');
  const r = peerIdVerdict([{ code: 'DUPLICATE_ID', from: 'vm-1 (10.0.0.2)', message: 'live on another link' }]);
  assert.is(r.status, 'fail');
  assert.match(r.detail, /vm-1 \(10\.0\.0\.2\)/);
  assert.match(r.fix!, /peer-id/);
});

test.run();
