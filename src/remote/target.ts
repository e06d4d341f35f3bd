// An SSH target as the user typed it (`host`, `user@host`, `user@host:port`, `ssh://user@host:port`,
// or a ~/.ssh/config alias) resolved to where we actually connect.
import os from 'node:os';
import path from 'node:path';
import { meshError } from '../../core/errors.ts';
import { readSshConfig, type SshHostConfig } from './ssh-config.ts';

export interface SshTarget {
  /** What the user typed; used in messages. */
  label: string;
  /** The name looked up in ~/.ssh/config. */
  alias: string;
  host: string;
  port: number;
  user: string;
  identityFiles: string[];
  identitiesOnly: boolean;
  knownHostsFiles?: string[];
}

export function parseTargetSpec(spec: string): { user?: string; host: string; port?: number } {
  let s = spec.replace(/^ssh:\/\//, '').replace(/\/$/, '');
  let user: string | undefined;
  const at = s.lastIndexOf('@');
  if (at >= 0) {
    user = s.slice(0, at);
    s = s.slice(at + 1);
  }
  let port: number | undefined;
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (bracket) {
    s = bracket[1];
    if (bracket[2]) port = Number(bracket[2]);
  } else if ((s.match(/:/g) ?? []).length === 1) {
    const [h, p] = s.split(':');
    if (!/^\d+$/.test(p)) throw meshError('BAD_ARGUMENT', `bad SSH target "${spec}": the part after ":" must be a port`);
    s = h;
    port = Number(p);
  }
  if (!s || (user !== undefined && !user)) throw meshError('BAD_ARGUMENT', `bad SSH target "${spec}": expected [user@]host[:port]`);
  if (port !== undefined && (port < 1 || port > 65535)) throw meshError('BAD_ARGUMENT', `bad SSH target "${spec}": port out of range`);
  return { user, host: s, port };
}

export const DEFAULT_KEYS = ['id_ed25519', 'id_ecdsa', 'id_rsa'];

/** Explicit values (target spec, flags) win over ~/.ssh/config, which wins over ssh's defaults. */
export function resolveTarget(
  spec: string,
  opts: { port?: number; identity?: string; config?: SshHostConfig; home?: string } = {},
): SshTarget {
  const parsed = parseTargetSpec(spec);
  const cfg = opts.config ?? readSshConfig(parsed.host);
  const home = opts.home ?? os.homedir();
  const identityFiles = opts.identity
    ? [opts.identity]
    : cfg.identityFiles.length
      ? cfg.identityFiles
      : DEFAULT_KEYS.map((k) => path.join(home, '.ssh', k));
  return {
    label: spec,
    alias: parsed.host,
    host: cfg.hostName ?? parsed.host,
    port: parsed.port ?? opts.port ?? cfg.port ?? 22,
    user: parsed.user ?? cfg.user ?? os.userInfo().username,
    identityFiles,
    identitiesOnly: !!opts.identity || !!cfg.identitiesOnly,
    knownHostsFiles: cfg.userKnownHostsFiles,
  };
}
