// Single-process mlx_lm, the baseline of `mlx-mesh bench inference` (bench/mlx_lm_baseline.py does the
// generating). Two ways to run it:
// - `servedBaseline`: one process keeps the model loaded and runs a generation each time it is asked,
//   so the bench takes the baseline's trials in turn with the mesh's. On a shared machine the speed of a
//   core drifts by tens of percent from one minute to the next; two figures taken back to back see the
//   same machine, two taken minutes apart do not.
// - `mlxLmOnce`: a generation with a given prefill step, for its text only (the mesh's reference).
import { execFile, spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { promisify } from 'node:util';
import { meshError } from '../core/errors.ts';
import { ENGINE_DIR, PACKAGE_ROOT } from '../core/paths.ts';
import { pinPrefix } from './peer-processes.ts';

const SCRIPT = path.join(PACKAGE_ROOT, 'bench', 'mlx_lm_baseline.py');

export interface BaselineRun {
  prompt_s: number;
  prompt_tps: number;
  generation_tps: number;
  tokens: number;
  text: string;
}

/** What the baseline says once its model is loaded and warmed up. */
export interface BaselineInfo {
  /** The prompt text, about -p tokens: the mesh gets the same. */
  prompt: string;
  prompt_tokens: number;
  blas: string;
  /** The malloc it ran with ("libjemalloc.so.2" or "system"), as the engine chooses it. */
  malloc?: string;
  /** Its scheduling policy ("batch" or "normal"), as the engine sets it. */
  sched?: string;
  /** BLIS's thread count as it ran ("1" unless BLIS_NUM_THREADS said otherwise); null without BLIS. */
  blis_threads?: string | null;
  versions: Record<string, string>;
}

export interface BaselineMemory {
  /** MLX's peak memory, GB. */
  peak_memory: number;
  peak_rss_bytes: number;
}

export interface BaselineSpec {
  model: string;
  python: string;
  env: NodeJS.ProcessEnv;
  /** The core to pin it to, or null. */
  core: number | null;
  promptTokens: number;
  generationTokens: number;
}

export interface ServedBaseline {
  info: BaselineInfo;
  /** Runs one measured generation. */
  trial(): Promise<BaselineRun>;
  /** Ends the process; resolves with its peak memory. */
  finish(): Promise<BaselineMemory>;
  /** Ends the process at once (after a failure elsewhere). */
  kill(): void;
}

/** Starts the baseline, loads the model and runs its warm-up generation. */
export async function servedBaseline(spec: BaselineSpec): Promise<ServedBaseline> {
  const cmd = [...pinPrefix(spec.core), spec.python, SCRIPT, spec.model, String(spec.promptTokens), String(spec.generationTokens), 'serve'];
  const child = spawn(cmd[0], cmd.slice(1), { env: { ...spec.env, PYTHONPATH: ENGINE_DIR }, stdio: ['pipe', 'pipe', 'pipe'] });
  const stderr: string[] = [];
  child.stderr.setEncoding('utf8').on('data', (s: string) => stderr.push(s));
  const lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  // How it ended: its exit code, or why it could not start (no python or taskset at that path).
  const exited = new Promise<string>((resolve) => {
    child.once('close', (code) => resolve(`exited with code ${code}`));
    child.once('error', (err) => resolve(`could not run: ${err.message}`));
  });
  const next = async <T>(what: string): Promise<T> => {
    const line = await lines.next();
    if (line.done) {
      const how = await exited;
      throw meshError('ENGINE_FAILED', `the mlx_lm baseline ${how} before ${what}: ${stderr.join('').trim().split('\n').slice(-5).join(' | ')}`);
    }
    return JSON.parse(line.value) as T;
  };
  try {
    const info = await next<BaselineInfo>('loading its model');
    return {
      info,
      trial() {
        child.stdin.write('run\n');
        return next<BaselineRun>('finishing a generation');
      },
      async finish() {
        child.stdin.end();
        const memory = await next<BaselineMemory>('reporting its memory');
        await exited;
        return memory;
      },
      kill: () => child.kill('SIGKILL'),
    };
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
}

/** One generation with prefill step `step`, without a warm-up: its text is what a mesh chunking its
 *  prompt into `step`-token pieces must generate. */
export async function mlxLmOnce(spec: BaselineSpec, step: number): Promise<string> {
  const cmd = [...pinPrefix(spec.core), spec.python, SCRIPT, spec.model, String(spec.promptTokens), String(spec.generationTokens), '0', String(step)];
  const { stdout } = await promisify(execFile)(cmd[0], cmd.slice(1), { env: { ...spec.env, PYTHONPATH: ENGINE_DIR }, maxBuffer: 64 << 20 });
  return (JSON.parse(stdout) as { runs: BaselineRun[] }).runs[0].text;
}
