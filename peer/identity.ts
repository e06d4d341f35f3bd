// Who this peer is: an id that survives restarts (kept in the data dir) and what the machine offers.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { PeerInfo } from '../transport/messages.ts';

export interface Identity {
  id: string;
  name: string;
}

/** Reads the peer id from `<dataDir>/peer-id`, creating it on first run. */
export function loadIdentity(dataDir: string, name?: string): Identity {
  fs.mkdirSync(dataDir, { recursive: true });
  const file = path.join(dataDir, 'peer-id');
  let id = '';
  try {
    id = fs.readFileSync(file, 'utf8').trim();
  } catch {
    // First run: fall through and create one.
  }
  if (!/^[a-z0-9-]{4,64}$/.test(id)) {
    id = `${os.hostname().toLowerCase().replace(/[^a-z0-9]+/g, '-').slice(0, 24)}-${randomBytes(4).toString('hex')}`;
    fs.writeFileSync(file, `${id}\n`);
  }
  return { id, name: name ?? os.hostname() };
}

/** The CPU's model and count: fixed while the process runs, and `os.cpus()` reads /proc each call. */
let cpuFacts: { chip: string | undefined; count: number } | undefined;
function cpuInfo(): { chip: string | undefined; count: number } {
  if (!cpuFacts) {
    const cpus = os.cpus();
    cpuFacts = { chip: cpus[0]?.model?.trim() || undefined, count: cpus.length };
  }
  return cpuFacts;
}

/** Non-internal IPv4 addresses, for display and doctor; links use the address each side observes. */
export function localAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) out.push(a.address);
  }
  return out;
}

export function describeSelf(
  identity: Identity,
  opts: { startedAt: number; port: number; apiPort: number; version: string; engine?: string; backend?: string; mlxVersion?: string },
): PeerInfo {
  return {
    id: identity.id,
    name: identity.name,
    hostname: os.hostname(),
    startedAt: opts.startedAt,
    port: opts.port,
    apiPort: opts.apiPort,
    addresses: localAddresses(),
    capabilities: {
      platform: process.platform,
      arch: process.arch,
      totalMemory: os.totalmem(),
      freeMemory: os.freemem(),
      cpus: cpuInfo().count,
      chip: cpuInfo().chip,
      mlxMeshVersion: opts.version,
      engine: opts.engine,
      backend: opts.backend,
      mlxVersion: opts.mlxVersion,
    },
  };
}
