// A private test network made of Linux network namespaces (needs root), so real mDNS can run without a
// single packet reaching the host's interfaces:
//
//   peer ns 0..n-1 (eth0 10.231.X.i+1/25) ──veth── hub ns: bridge br0 (.126), routes ──veth── root ns (.130)
//
// Peers share one L2 segment (the bridge) for multicast. The root namespace reaches them only through a
// routed /30 link to the hub, and routing does not forward multicast, so mDNS stays inside.
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { writeFileSync } from 'node:fs';

export interface NetNamespace {
  name: string;
  address: string;
}

export interface TestNetwork {
  namespaces: NetNamespace[];
  /** Address of the root namespace's end of the link, for servers the peers should reach. */
  hostAddress: string;
  /** First three octets of the private /24, e.g. '10.231.57'; peers use .1-.125. */
  prefix: string;
  /** Runs `ip -n <ns> ...args` (e.g. to renumber a peer); throws with ip's message on failure. */
  ip(ns: string, ...args: string[]): string;
  run(ns: string, cmd: string, args: string[], options?: SpawnOptions): ChildProcess;
  /** Takes a peer's only interface down (`ip link set eth0 down`): it is cut off from every other peer. */
  cut(ns: string): void;
  /** Brings it back up with the routes the link's going down removed (default and multicast). */
  restore(ns: string): void;
  teardown(): Promise<void>;
}

let counter = 0;
const live = new Set<() => void>();

function ip(...args: string[]): string {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT') {
    throw new Error('the `ip` command is missing: install iproute2 (e.g. `apt-get install iproute2`) to run the mDNS tests');
  }
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')} failed: ${r.stderr.trim()}`);
  return r.stdout;
}

function inNs(ns: string, script: string): void {
  ip('netns', 'exec', ns, 'sh', '-c', script);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function deleteNamespace(ns: string): void {
  // Processes keep a namespace alive after `ip netns del`, so end them first.
  const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout ?? '';
  for (const pid of pids.split(/\s+/).filter(Boolean)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {}
  }
  spawnSync('ip', ['netns', 'del', ns]);
}

/** Removes namespaces left by earlier runs that were killed before their teardown ran. */
function sweepStale(): void {
  for (const line of ip('netns', 'list').split('\n')) {
    const m = /^(mm(\d+)n\d+-\S+)/.exec(line);
    if (m && !pidAlive(Number(m[2]))) deleteNamespace(m[1]);
  }
}

function pickSubnet(): string {
  const used = ip('-4', 'addr') + ip('-4', 'route');
  for (let i = 0; i < 50; i++) {
    const prefix = `10.231.${1 + Math.floor(Math.random() * 254)}`;
    if (!used.includes(`${prefix}.`)) return prefix;
  }
  throw new Error('no free 10.231.x.0/24 for the test network');
}

export function run(ns: string, cmd: string, args: string[], options: SpawnOptions = {}): ChildProcess {
  return spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['pipe', 'pipe', 'pipe'], ...options });
}

export async function createNetwork(n: number): Promise<TestNetwork> {
  if (process.getuid?.() !== 0) throw new Error('the network namespace tests must run as root');
  sweepStale();
  const tag = `mm${process.pid}n${counter++}`;
  const prefix = pickSubnet();
  const hub = `${tag}-hub`;
  const rootLink = `${tag}r`;
  const names = Array.from({ length: n }, (_, i) => `${tag}-${i}`);
  const children = new Set<ChildProcess>();
  let removed = false;

  const linkUp = (ns: string) => {
    ip('-n', ns, 'link', 'set', 'eth0', 'up');
    // bonjour-service sends on the default-route interface and joins groups per interface.
    ip('-n', ns, 'route', 'replace', 'default', 'via', `${prefix}.126`);
    ip('-n', ns, 'route', 'replace', '224.0.0.0/4', 'dev', 'eth0');
  };

  const removeAll = () => {
    if (removed) return;
    removed = true;
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const ns of [...names, hub]) deleteNamespace(ns);
    spawnSync('ip', ['link', 'del', rootLink]);
    live.delete(removeAll);
  };
  live.add(removeAll);

  try {
    const quietV6 = 'for f in /proc/sys/net/ipv6/conf/all/disable_ipv6 /proc/sys/net/ipv6/conf/default/disable_ipv6; do [ -e $f ] && echo 1 > $f; done; true';
    ip('netns', 'add', hub);
    inNs(hub, `${quietV6}; echo 1 > /proc/sys/net/ipv4/ip_forward`);
    ip('-n', hub, 'link', 'set', 'lo', 'up');
    ip('-n', hub, 'link', 'add', 'br0', 'type', 'bridge');
    ip('-n', hub, 'addr', 'add', `${prefix}.126/25`, 'dev', 'br0');
    ip('-n', hub, 'link', 'set', 'br0', 'up');

    // Routed link root <-> hub, IPv6 off before it comes up so the host sends nothing on it.
    ip('link', 'add', rootLink, 'type', 'veth', 'peer', 'name', 'up0', 'netns', hub);
    try {
      writeFileSync(`/proc/sys/net/ipv6/conf/${rootLink}/disable_ipv6`, '1');
    } catch {}
    ip('addr', 'add', `${prefix}.130/30`, 'dev', rootLink);
    ip('link', 'set', rootLink, 'up');
    ip('-n', hub, 'addr', 'add', `${prefix}.129/30`, 'dev', 'up0');
    ip('-n', hub, 'link', 'set', 'up0', 'up');
    ip('route', 'add', `${prefix}.0/25`, 'via', `${prefix}.129`);

    names.forEach((ns, i) => {
      ip('netns', 'add', ns);
      inNs(ns, quietV6);
      ip('-n', ns, 'link', 'set', 'lo', 'up');
      ip('link', 'add', 'name', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', `p${i}`, 'netns', hub);
      ip('-n', hub, 'link', 'set', `p${i}`, 'master', 'br0', 'up');
      ip('-n', ns, 'addr', 'add', `${prefix}.${i + 1}/25`, 'dev', 'eth0');
      linkUp(ns);
    });
  } catch (err) {
    removeAll();
    throw err;
  }

  return {
    namespaces: names.map((name, i) => ({ name, address: `${prefix}.${i + 1}` })),
    hostAddress: `${prefix}.130`,
    prefix,
    ip: (ns, ...args) => ip('-n', ns, ...args),
    run(ns, cmd, args, options) {
      const child = run(ns, cmd, args, options);
      children.add(child);
      child.once('exit', () => children.delete(child));
      return child;
    },
    cut: (ns) => void ip('-n', ns, 'link', 'set', 'eth0', 'down'),
    restore: linkUp,
    async teardown() {
      const waits = [...children].map((c) => new Promise((r) => c.once('exit', r)));
      for (const child of children) child.kill('SIGKILL');
      await Promise.race([Promise.all(waits), new Promise((r) => setTimeout(r, 2000))]);
      removeAll();
    },
  };
}

// Last line of defence: a failed assertion or Ctrl-C still removes what was created.
process.once('exit', () => [...live].forEach((f) => f()));
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    [...live].forEach((f) => f());
    process.exit(130);
  });
}
