// Peers as separate OS processes (`node bin/mlx-mesh.js join ...`), the way users run them.
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.join(ROOT, 'bin/mlx-mesh.js');

/** A port free on 127.0.0.1 right now (the bench starts its peers the same way). */
export { freePort } from '../../bench/peer-processes.ts';

export interface CliResult {
  code: number;
  out: string;
  err: string;
  seconds: number;
}

/** Runs `mlx-mesh <args>` to completion without blocking this process (which may host peers). */
export function runCli(args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CliResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(child);
    let out = '';
    let err = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 300_000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      running.delete(child);
      resolve({ code: code ?? (signal ? 128 : 1), out, err, seconds: (Date.now() - started) / 1000 });
    });
  });
}

export interface PeerProcess {
  child: ChildProcess;
  /** stdout and stderr so far. */
  output(): string;
  waitForOutput(re: RegExp, timeoutMs?: number): Promise<string>;
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

/** `cwd` (default the package root) is where relative paths among `args` resolve: two peers on one machine
 *  with their own working directories see different files under one relative `--model` path. */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv = {}, prefix?: string[], cwd = ROOT): PeerProcess {
  const cmd = prefix ? prefix[0] : process.execPath;
  const cmdArgs = prefix ? [...prefix.slice(1), process.execPath, BIN, ...args] : [BIN, ...args];
  const child = spawn(cmd, cmdArgs, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code, signal) => {
      running.delete(child);
      resolve(code ?? (signal ? -1 : null));
    }),
  );
  return {
    child,
    output: () => out,
    exited,
    async waitForOutput(re, timeoutMs = 15_000) {
      const end = Date.now() + timeoutMs;
      while (!re.test(out)) {
        if (Date.now() > end) throw new Error(`timed out waiting for ${re} in output:\n${out}`);
        if (child.exitCode !== null) throw new Error(`process exited (${child.exitCode}) before ${re}:\n${out}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      return out;
    },
    async kill(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
