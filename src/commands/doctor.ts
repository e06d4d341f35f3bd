// `mlx-mesh doctor [host...]`: the usual diagnosis (python on PATH? venv used? ports? firewall? can the
// peers reach each other?) as a list of ✅/❌ checks, each failure with the one thing to do.
import path from 'node:path';
import { parseArgs } from 'node:util';
import { checkPythonEnv, findInterpreter } from '../../peer/python-env.ts';
import { meshError } from '../../core/errors.ts';
import { API_KEY_HELP, API_KEY_OPTION, apiKeyFrom, authHeaders } from '../api-client.ts';
import { type Command, EXIT } from '../command.ts';
import { defaults, PROTOCOL_VERSION } from '../../core/defaults.ts';
import { type CheckResult, fail, formatReport, pass, skip, warn } from '../doctor/check.ts';
import { checkBlas, checkDataDir, checkMalloc, checkDevice, checkDisk, checkInterpreter, checkMemory, checkMlx, checkNode, checkPort, checkVenv, type PortOwner, probePort } from '../doctor/local.ts';
import { checkFirewall, checkLocalNetwork, checkMdns } from '../doctor/network.ts';
import { checkResolve, checkTcp, engineVerdict, helloVerdict, type PeerTarget, peerIdVerdict, probeHello, rttVerdict } from '../doctor/remote.ts';
import type { ClusterView } from '../remote/local-view.ts';
import { parsePort } from './join.ts';

const usage = `
Usage: mlx-mesh doctor [host[:port]...] [options]

Checks this machine (Node, Python, venv, MLX, memory, ports, mDNS, firewall, data dir, disk) and every
peer: each host given plus each peer the local peer knows (name, TCP, WebSocket handshake, RTT, engine).
Prints ✅/❌ per check with a fix for each ❌. Exit code 4 when a check fails.

Options:
  --data-dir <dir>    data dir (default ${defaults.dataDir})
  --python <path>     interpreter the engine would be given with --python
  --port <n>          peer port to check (default ${defaults.port})
  --api-port <n>      API port to check (default ${defaults.apiPort})
  --api <url>         the local peer's API (default http://${defaults.apiHost}:<api-port>)
  ${API_KEY_HELP}
  --cluster <name>    expected cluster name (default: the local peer's, else "${defaults.cluster}")
  --no-mdns           skip the mDNS check (peers found only through --peer)
  --timeout <ms>      per network check (default 3000)
  --json              print {ok, checks:[...]} as JSON
`;

/** The peer answering at `api` (/health needs no key), and its view when it accepts our key. */
async function portOwner(api: string, key: string | undefined): Promise<(PortOwner & { view: ClusterView | null; keyRefused: boolean }) | null> {
  try {
    const res = await fetch(`${api}/health`, { signal: AbortSignal.timeout(2000) });
    if (!res.ok) return null;
    const h = (await res.json()) as { status?: string; peer_id?: string; role?: string };
    if (h.status !== 'ok' || !h.peer_id) return null;
    const cluster = await fetch(`${api}/cluster`, { headers: authHeaders(key), signal: AbortSignal.timeout(3000) });
    const view = cluster.ok ? ((await cluster.json()) as ClusterView) : null;
    return { peerId: h.peer_id, role: h.role, port: view?.self.port, apiPort: view?.self.apiPort, view, keyRefused: cluster.status === 401 };
  } catch {
    return null;
  }
}

export function parseHostPort(spec: string, defaultPort: number): { host: string; port: number } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(spec) ?? /^([^:]+)(?::(\d+))?$/.exec(spec);
  if (!m) throw meshError('BAD_ARGUMENT', `expected host or host:port, got "${spec}"`);
  return { host: m[1], port: m[2] ? Number(m[2]) : defaultPort };
}

/** Hosts from the command line, then every peer and static target the local peer knows, once each. */
export function peerTargets(hosts: { host: string; port: number }[], view: ClusterView | null): PeerTarget[] {
  const out = new Map<string, PeerTarget>();
  const add = (t: PeerTarget) => {
    const key = `${t.host}:${t.port}`;
    const prev = out.get(key);
    if (!prev) out.set(key, t);
    else if (t.known && !prev.known) prev.known = t.known;
  };
  for (const h of hosts) add({ ...h, known: view?.peers.find((p) => p.port === h.port && (p.host === h.host || p.hostname === h.host || (p as { addresses?: string[] }).addresses?.includes(h.host))) });
  for (const p of view?.peers ?? []) {
    const host = p.host ?? (p as { addresses?: string[] }).addresses?.[0] ?? p.hostname;
    if (host && p.port) add({ host, port: p.port, known: p });
  }
  const targets = (view as { targets?: { address: string; self?: boolean; linked?: boolean; id?: string | null }[] } | null)?.targets ?? [];
  for (const t of targets) {
    if (t.self || t.linked) continue;
    const { host, port } = parseHostPort(t.address, defaults.port);
    add({ host, port, id: t.id ?? undefined });
  }
  return [...out.values()];
}

async function remoteChecks(t: PeerTarget, expect: { protocol: number; cluster: string; mlx?: string }, timeoutMs: number): Promise<CheckResult[]> {
  const name = t.known
    ? `${t.known.name ?? t.known.id} (${t.known.id})`
    : t.id
      ? `${t.id}, no longer linked to the local peer`
      : 'not linked to the local peer';
  const group = `peer ${t.host}:${t.port} — ${name}`;
  const out: CheckResult[] = [await checkResolve(group, t.host)];
  if (out[0].status === 'fail') return out;
  const tcp = await checkTcp(group, t.host, t.port, timeoutMs);
  out.push(tcp.result);
  if (tcp.result.status === 'fail') return out;
  out.push(helloVerdict(group, expect, await probeHello(t.host, t.port, timeoutMs).catch((e: Error) => e)));
  out.push(rttVerdict(group, tcp.ms, t.known?.rttMs));
  out.push(engineVerdict(group, t.known, expect.mlx));
  return out;
}

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      'data-dir': { type: 'string' },
      python: { type: 'string' },
      port: { type: 'string' },
      'api-port': { type: 'string' },
      api: { type: 'string' },
      cluster: { type: 'string' },
      'no-mdns': { type: 'boolean' },
      timeout: { type: 'string' },
      json: { type: 'boolean' },
      ...API_KEY_OPTION,
    },
    allowPositionals: true,
    strict: true,
  });
  const dataDir = path.resolve(values['data-dir'] ?? defaults.dataDir);
  const port = parsePort(values.port, '--port', defaults.port);
  const apiPort = parsePort(values['api-port'], '--api-port', defaults.apiPort);
  const api = (values.api ?? `http://${defaults.apiHost}:${apiPort}`).replace(/\/$/, '');
  const timeoutMs = Number(values.timeout ?? 3000);
  if (!(timeoutMs > 0)) throw meshError('BAD_ARGUMENT', '--timeout must be a number of milliseconds');
  const hosts = positionals.map((h) => parseHostPort(h, defaults.port));
  const json = !!values.json;
  const results: CheckResult[] = [];
  const record = (r: CheckResult | CheckResult[]) => {
    for (const x of [r].flat()) {
      results.push(x);
      if (!json) process.stdout.write(formatReport([x]).split('\n').filter((l) => l.startsWith('  ') || l.startsWith('     ')).map((l) => `${l}\n`).join(''));
    }
  };
  if (!json) process.stdout.write('this machine\n');

  record(checkNode());
  record(checkInterpreter(await findInterpreter({ python: values.python })));
  const env = await checkPythonEnv({ dataDir, python: values.python, timeRowsGemm: true });
  record(checkVenv(env, dataDir));
  record(checkMlx(env));
  record(checkDevice(env));
  record(checkBlas(env));
  record(checkMalloc(env));
  record(checkMemory());

  const apiKey = apiKeyFrom(values['api-key']);
  const owner = await portOwner(api, apiKey);
  const view = owner?.view ?? null;
  const peerOwner = owner && owner.port === port ? owner : null;
  const apiOwner = owner && (owner.apiPort === apiPort || values.api) ? owner : null;
  record(checkPort('peer', '--port', port, await probePort(port), peerOwner));
  record(checkPort('API', '--api-port', apiPort, await probePort(apiPort, defaults.apiHost), apiOwner));
  record(await checkMdns({ disabled: !!values['no-mdns'], timeoutMs }));
  record(await checkFirewall());
  record(checkLocalNetwork());
  record(checkDataDir(dataDir));
  record(checkDisk(dataDir));
  if (view?.ignored?.length) {
    record(warn('this machine', 'ignored peers', `${view.ignored.length} peer(s) of another cluster or protocol: ${JSON.stringify(view.ignored).slice(0, 200)}`, 'start every peer with the same --cluster and mlx-mesh version'));
  }
  if (view) record(peerIdVerdict(view.refused));
  if (owner?.keyRefused) record(fail('this machine', 'local peer', `${owner.peerId} answers at ${api} but refuses ${apiKey ? 'this API key' : 'requests without an API key'}`, 'pass --api-key <key> or set MLX_MESH_API_KEY to the key the peer was started with'));
  else if (owner) record(pass('this machine', 'local peer', `${owner.peerId} answers at ${api} (${owner.role ?? 'role unknown'})`));
  else record(skip('this machine', 'local peer', `no peer answers at ${api}: only the hosts given are checked`));

  const expect = { protocol: PROTOCOL_VERSION, cluster: values.cluster ?? view?.cluster ?? defaults.cluster, mlx: env.versions.mlx };
  for (const t of peerTargets(hosts, view)) {
    const rs = await remoteChecks(t, expect, timeoutMs);
    if (!json) process.stdout.write(`\n${rs[0].group}\n`);
    record(rs);
  }

  const failed = results.filter((r) => r.status === 'fail');
  if (json) process.stdout.write(`${JSON.stringify({ ok: failed.length === 0, checks: results }, null, 2)}\n`);
  else process.stdout.write(`\n${failed.length ? `${failed.length} check(s) failed` : 'all checks passed'}\n`);
  return failed.length ? EXIT.checksFailed : EXIT.ok;
}

const command: Command = { usage, run };
export default command;
