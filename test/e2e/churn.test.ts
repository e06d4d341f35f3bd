// Membership churn costs no request: a fourth peer that joins and leaves while a stream runs changes
// nothing — no new plan version, no re-load, the same text as an undisturbed run.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createTestMesh, STORIES, waitFor } from '../helpers/mesh.ts';

const greedy = { temperature: 0, topP: 1, seed: null };

test('a fourth peer joins and leaves during a stream: the stream completes unchanged, nobody re-plans or re-loads', async () => {
  const mesh = await createTestMesh(3, { inference: true, model: STORIES });
  try {
    const [origin] = mesh.nodes;
    const inference = origin.inference!;
    await waitFor(() => mesh.nodes.every((n) => n.inference!.isReady()) && inference.plan?.stages.length === 3, 90_000, '3 ready stages');
    const tokens = await inference.tokenize({ text: 'Once upon a time' });
    const request = { tokens, maxTokens: 800, sampling: greedy, stop: [] };
    const reference = (await inference.generate(request, () => {})).text;

    const version = inference.plan!.version;
    const events: string[] = [];
    for (const n of mesh.nodes) {
      n.inference!.on('plan', (p) => events.push(`${n.peer.identity.name}: plan ${p.version}`));
      n.inference!.on('status', (id, st) => {
        if (id === n.peer.id && !st.ready) events.push(`${n.peer.identity.name}: not ready (${st.engine})`);
      });
    }
    let pieces = 0;
    let joined: Promise<void> | null = null;
    let finished = false;
    let leftWhileRunning = false;
    const churn = async () => {
      const fourth = await mesh.add({ inference: true, model: STORIES, name: 'fourth' });
      await waitFor(() => origin.peer.live().length === 4, 30_000, 'the fourth peer linked');
      await fourth.stop();
      mesh.nodes.pop();
      await waitFor(() => origin.peer.live().length === 3, 30_000, 'the fourth peer gone');
      leftWhileRunning = !finished;
    };
    const result = await inference.generate(request, () => {
      if (++pieces === 10) joined = churn();
    });
    finished = true;
    await joined;
    assert.ok(leftWhileRunning, 'the fourth peer joined and left while the stream ran');
    assert.is(result.text, reference, 'the same text as the undisturbed run');
    assert.is(inference.plan!.version, version, 'no new plan version');
    assert.equal(events, [], 'no plan and no re-load on any peer');
  } finally {
    await mesh.stop();
  }
});

test.run();
