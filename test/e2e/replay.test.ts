// A stage lost mid-request, with real processes: three peers, a long greedy stream from the
// coordinator, kill -9 of the peer holding the middle layers. When the survivors can hold the model
// the stream goes on (re-plan + replay) with exactly the undisturbed text; when they cannot, it ends
// with an error event naming the lost peer within 3 s. No hang, no leaked engine.
// MLX_MESH_REPLAY_CYCLES=10 node test/run.mjs replay   is the soak (default 2 cycles).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { alive, children, type CliPeer as Proc, gpuInfo, healthy, startPeer, streamCompletion } from '../helpers/cli-peers.ts';
import { waitFor } from '../helpers/mesh.ts';

const CYCLES = Number(process.env.MLX_MESH_REPLAY_CYCLES ?? 2);
const REQUEST = { prompt: 'Once upon a time', max_tokens: 600, temperature: 0 };

/** Streams REQUEST from `origin`; after `after` chunks calls `midway` once. Returns the text and any error event. */
async function stream(origin: Proc, after: number, midway: () => Promise<void>): Promise<{ text: string; error: string | null; ms: number }> {
  const got = await streamCompletion(origin, REQUEST, after, midway);
  return { text: got.text, error: got.error?.message ?? null, ms: got.ms };
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
    const after = await gpuInfo(a);
    assert.is(after.world_size, 2);
  } finally {
    await Promise.all(procs.map((x) => x.p.kill('SIGTERM')));
  }
});

test.run();
