// The part of ~/.ssh/config that decides where and as whom we connect: Host blocks with HostName,
// User, Port, IdentityFile, IdentitiesOnly, UserKnownHostsFile (ssh2 reads none of it). As in ssh, the
// first value obtained for a keyword wins, IdentityFile accumulates, Include is followed, Match is skipped.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface SshHostConfig {
  hostName?: string;
  user?: string;
  port?: number;
  identityFiles: string[];
  identitiesOnly?: boolean;
  userKnownHostsFiles?: string[];
}

interface Block {
  patterns: string[] | null; // null: a Match block, never applied
  options: [string, string][];
}

function expandHome(p: string, home: string): string {
  return p === '~' ? home : p.startsWith('~/') ? path.join(home, p.slice(2)) : p;
}

function tokenize(line: string): [string, string] | null {
  const m = /^\s*([A-Za-z]+)\s*(?:=\s*|\s+)(.*?)\s*$/.exec(line);
  if (!m) return null;
  let value = m[2];
  if (value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
  return [m[1].toLowerCase(), value];
}

export function parseSshConfig(text: string, opts: { home?: string; baseDir?: string; depth?: number } = {}): Block[] {
  const home = opts.home ?? os.homedir();
  const baseDir = opts.baseDir ?? path.join(home, '.ssh');
  const blocks: Block[] = [{ patterns: ['*'], options: [] }];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/(^|\s)#.*$/, '');
    const kv = tokenize(line);
    if (!kv) continue;
    const [key, value] = kv;
    if (key === 'host') blocks.push({ patterns: value.split(/\s+/).filter(Boolean), options: [] });
    else if (key === 'match') blocks.push({ patterns: null, options: [] });
    else if (key === 'include' && (opts.depth ?? 0) < 8) {
      // Included files apply inside the current block, as ssh does.
      for (const spec of value.split(/\s+/)) {
        const full = expandHome(spec, home);
        const abs = path.isAbsolute(full) ? full : path.join(baseDir, full);
        for (const file of expandGlob(abs)) {
          const sub = parseSshConfig(fs.readFileSync(file, 'utf8'), { ...opts, depth: (opts.depth ?? 0) + 1 });
          blocks[blocks.length - 1].options.push(...sub[0].options);
          blocks.push(...sub.slice(1));
        }
      }
    } else blocks[blocks.length - 1].options.push([key, value]);
  }
  return blocks;
}

function expandGlob(file: string): string[] {
  if (!/[*?]/.test(path.basename(file))) return fs.existsSync(file) ? [file] : [];
  const dir = path.dirname(file);
  const re = new RegExp(`^${path.basename(file).replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
  try {
    return fs.readdirSync(dir).filter((f) => re.test(f)).sort().map((f) => path.join(dir, f));
  } catch {
    return [];
  }
}

function hostMatches(patterns: string[], alias: string): boolean {
  let matched = false;
  for (const p of patterns) {
    const negated = p.startsWith('!');
    const re = new RegExp(`^${(negated ? p.slice(1) : p).replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 'i');
    if (re.test(alias)) {
      if (negated) return false;
      matched = true;
    }
  }
  return matched;
}

/** Applies every matching block in order; %h, %u, %r, %p, %d, %% are expanded in paths. */
export function resolveHostConfig(blocks: Block[], alias: string, opts: { home?: string; localUser?: string } = {}): SshHostConfig {
  const home = opts.home ?? os.homedir();
  const seen = new Map<string, string>();
  const identityFiles: string[] = [];
  const knownHosts: string[] = [];
  for (const b of blocks) {
    if (!b.patterns || !hostMatches(b.patterns, alias)) continue;
    for (const [k, v] of b.options) {
      if (k === 'identityfile') identityFiles.push(v);
      else if (k === 'userknownhostsfile' && !seen.has(k)) {
        seen.set(k, v);
        knownHosts.push(...v.split(/\s+/));
      } else if (!seen.has(k)) seen.set(k, v);
    }
  }
  const hostName = (seen.get('hostname') ?? alias).replace(/%h/g, alias);
  const user = seen.get('user');
  const port = seen.has('port') ? Number(seen.get('port')) : undefined;
  const tokens = (p: string) =>
    expandHome(
      p
        .replace(/%%/g, '\u0000')
        .replace(/%d/g, home)
        .replace(/%h/g, hostName)
        .replace(/%r/g, user ?? opts.localUser ?? os.userInfo().username)
        .replace(/%u/g, opts.localUser ?? os.userInfo().username)
        .replace(/%p/g, String(port ?? 22))
        .replace(/\u0000/g, '%'),
      home,
    );
  return {
    hostName: seen.has('hostname') ? hostName : undefined,
    user,
    port: port !== undefined && Number.isInteger(port) ? port : undefined,
    identityFiles: identityFiles.map(tokens),
    identitiesOnly: seen.has('identitiesonly') ? seen.get('identitiesonly')!.toLowerCase() === 'yes' : undefined,
    userKnownHostsFiles: knownHosts.length ? knownHosts.filter((f) => f !== 'none').map(tokens) : undefined,
  };
}

export function readSshConfig(alias: string, file = path.join(os.homedir(), '.ssh', 'config')): SshHostConfig {
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return { identityFiles: [] };
  }
  return resolveHostConfig(parseSshConfig(text, { baseDir: path.dirname(file) }), alias);
}
