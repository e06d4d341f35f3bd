// A stage lost mid-request, with real processes: three peers, a long greedy stream from the
// coordinator, kill -9 of the peer holding the middle layers. When the survivors can hold the model
// the stream goes on (re-plan + replay) with exactly the undisturbed text; when they cannot, it ends
// with an error event naming the lost peer within 3 s. No hang, no leaked engine.
// MLX_MESH_REPLAY_CYCLES=10 node test/run.mjs replay   is the soak (default 2 cycles).
import { execFileSync } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { getJson, STORIES, TEST_PYTHON, tempDir, waitFor } from '../helpers/mesh.ts';
import { sseEvents } from '../../src/sse.ts';
import { freePort, type PeerProcess, spawnCli } from '../helpers/process.ts';

const CYCLES = Number(process.env.MLX_MESH_REPLAY_CYCLES ?? 2);
const FAST_ENV = { MLX_MESH_HEARTBEAT_MS: '250', MLX_MESH_SETTLE_MS: '500', MLX_MESH_LOG: 'warn' };
const REQUEST = { prompt: 'Once upon a time', max_tokens: 600, temperature: 0 };

interface Proc {
  p: PeerProcess;
  id: string;
  port: number;
  api: number;
  dataDir: string;
  name: string;
}

async function startPeer(name: string, peers: number[], extra: string[] = [], prev?: Proc): Promise<Proc> {
  const port = prev?.port ?? (await freePort());
  const api = prev?.api ?? (await freePort());
  const dataDir = prev?.dataDir ?? tempDir();
  const args = ['join', '--no-mdns', '--host', '127.0.0.1', '--port', String(port), '--api-port', String(api), '--data-dir', dataDir, '--name', name];
  args.push('--model', STORIES, '--python', TEST_PYTHON, ...extra);
  for (const q of peers) args.push('--peer', `127.0.0.1:${q}`);
  const p = spawnCli(args, FAST_ENV);
  await p.waitForOutput(/API http/, 60_000);
  const id = (await getJson(`http://127.0.0.1:${api}/health`)).peer_id;
  return { p, id, port, api, dataDir, name };
}

const info = (x: Proc) => getJson(`http://127.0.0.1:${x.api}/distributed/gpu-info`);

async function healthy(procs: Proc[], n: number): Promise<any> {
  return waitFor(async () => {
    const v = await info(procs[0]);
    return v.cluster_status === 'healthy' && v.devices.filter((d: { layers: unknown }) => d.layers).length === n ? v : null;
  }, 90_000, `${n} healthy stages`);
}

/** The engine processes a peer process runs (its children). */
function children(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Streams REQUEST from `origin`; after `after` chunks calls `midway` once. Returns the text and any error event. */
async function stream(origin: Proc, after: number, midway: () => Promise<void>): Promise<{ text: string; error: string | null; ms: number }> {
  const res = await fetch(`http://127.0.0.1:${origin.api}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...REQUEST, stream: true }),
  });
  let text = '';
  let error: string | null = null;
  let chunks = 0;
  let killedAt = 0;
  for await (const { data: raw } of sseEvents(res.body!)) {
    if (raw === '[DONE]') continue;
    const data = JSON.parse(raw);
    if (data.error) error = data.error.message;
    else text += data.choices[0]?.text ?? '';
    if (++chunks === after) {
      await midway();
      killedAt = Date.now();
    }
  }
  return { text, error, ms: killedAt ? Date.now() - killedAt : 0 };
}

test(`kill -9 of the middle stage mid-stream: the stream goes on with the undisturbed text (${CYCLES} cycles)`, async () => {
  const procs: Proc[] = [];
  try {
    const a = await startPeer('a', []);
    procs.push(a);
    procs.push(await startPeer('b', [a.port]));
    procs.push(await startPeer('c', [a.port]));
    await healthy(procs, 3);
    const reference = (await (await fetch(`http://127.0.0.1:${a.api}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(REQUEST),
    })).json()).choices[0].text;
    assert.ok(reference.length > 1000, 'a long answer');

    for (let cycle = 0; cycle < CYCLES; cycle++) {
      const view = await healthy(procs, 3);
      const middleId = view.devices.find((d: { rank?: number }) => d.rank === 1).device_id;
      const middle = procs.find((x) => x.id === middleId)!;
      assert.ok(middle !== a, 'the coordinator drives the request; another peer is in the middle');
      let engines: number[] = [];
      const got = await stream(a, 20, async () => {
        engines = children(middle.p.child.pid!);
        middle.p.child.kill('SIGKILL');
        await middle.p.exited;
      });
      assert.is(got.error, null, `cycle ${cycle}: no error event`);
      assert.is(got.text, reference, `cycle ${cycle}: exactly the undisturbed text`);
      assert.ok(engines.length > 0, 'the killed peer had an engine');
      await waitFor(() => engines.every((pid) => !alive(pid)), 15_000, "the killed peer's engine gone");
      // The same peer comes back (same data dir and ports) for the next cycle.
      procs[procs.indexOf(middle)] = await startPeer(middle.name, [a.port], [], middle);
    }
  } finally {
    await Promise.all(procs.map((x) => x.p.kill('SIGTERM')));
  }
});

test('when the survivors cannot hold the model, the stream ends with an error event naming the lost peer within 3 s', async () => {
  const procs: Proc[] = [];
  // Each peer offers 500 KiB: three hold stories260K (about 1016 KiB with its embedding), two do not.
  const small = ['--memory', '500KiB'];
  try {
    const a = await startPeer('a', [], small);
    procs.push(a);
    procs.push(await startPeer('b', [a.port], small));
    procs.push(await startPeer('c', [a.port], small));
    const view = await healthy(procs, 3);
    const middleId = view.devices.find((d: { rank?: number }) => d.rank === 1).device_id;
    const middle = procs.find((x) => x.id === middleId)!;
    const got = await stream(a, 20, async () => {
      middle.p.child.kill('SIGKILL');
      await middle.p.exited;
    });
    assert.ok(got.error, 'an error event');
    assert.ok(got.error!.includes(middle.id), `it names the lost peer: ${got.error}`);
    assert.ok(got.ms < 3000, `within 3 s (${got.ms} ms)`);
    const after = await info(a);
    assert.is(after.world_size, 2);
  } finally {
    await Promise.all(procs.map((x) => x.p.kill('SIGTERM')));
  }
});

test.run();
