// `mlx-mesh status --watch` under a real pseudo-terminal (util-linux `script`), against a 2-peer mesh
// with the tiny model: it redraws in place (every frame starts at the cursor's home and fits the
// terminal, so nothing scrolls), shows tokens/s per peer while a request runs, and Ctrl-C ends it
// cleanly with the cursor shown again.
import { spawn } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createTestMesh, getJson, STORIES, waitFor } from '../helpers/mesh.ts';
import { BIN } from '../helpers/process.ts';

const COLS = 110;
const ROWS = 20;
const plain = (s: string) => s.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r/g, '');

test('status --watch redraws in place without scrolling and shows tokens/s per peer', async () => {
  const mesh = await createTestMesh(2, { inference: true, model: STORIES });
  const url = mesh.nodes[0].api.url;
  const cmd = `stty cols ${COLS} rows ${ROWS}; exec '${process.execPath}' '${BIN}' status --watch --api ${url} --interval 0.2`;
  const child = spawn('script', ['-q', '-c', cmd, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '' } });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    await waitFor(async () => (await getJson(`${url}/distributed/gpu-info`)).cluster_status === 'healthy', 60_000, 'a healthy cluster');
    const frames = () => out.split('\x1b[H').slice(1);
    await waitFor(() => frames().filter((f) => /HEALTHY/.test(f) && / p0 /.test(plain(f)) && / p1 /.test(plain(f))).length >= 3, 30_000, 'three frames with both peers');

    // While a request runs, both peers' rows show tokens/s above zero.
    const req = fetch(`${url}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt: 'Once upon a time', max_tokens: 200, temperature: 0 }) });
    const rate = (f: string, name: string) => Number(new RegExp(`^\\d+\\s+\\w+\\s+${name}\\s.*?\\s(\\d+\\.\\d)\\s+\\d+\\s`, 'm').exec(plain(f))?.[1] ?? 0);
    await waitFor(() => frames().some((f) => rate(f, 'p0') > 0 && rate(f, 'p1') > 0), 60_000, 'a frame with tokens/s on both peers');
    assert.is((await req).status, 200);

    child.stdin.write('\x03'); // Ctrl-C, through the terminal
    const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('still running after 15 s'), 15_000).unref())]);
    assert.is(code, 0);
    assert.ok(out.includes('\x1b[?25h'), 'the cursor is shown again');
    const all = frames();
    assert.ok(all.length >= 5, `${all.length} frames`);
    for (const f of all) {
      const lines = plain(f).replace(/\n$/, '').split('\n');
      assert.ok(lines.length <= ROWS - 1, `a frame of ${lines.length} lines would scroll a ${ROWS}-row terminal`);
      for (const l of lines) assert.ok([...l].length <= COLS, `a line of ${[...l].length} columns would wrap: ${l}`);
    }
    assert.is(out.split('\x1b[2J').length - 1, 1, 'the screen is cleared once, then redrawn in place');
  } finally {
    child.kill('SIGKILL');
    await mesh.stop();
  }
});

test.run();
