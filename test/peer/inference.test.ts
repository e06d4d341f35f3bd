// The inference wiring on one real peer: what a user sees when the engine cannot get its layers back.
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createTestMesh, getJson, STORIES, waitFor } from '../helpers/mesh.ts';

test('a re-load that fails after an engine crash shows as failed with the reason, not as loading forever', async () => {
  const mesh = await createTestMesh(1, { inference: true, model: STORIES });
  try {
    const node = mesh.nodes[0];
    const url = node.api.url;
    await waitFor(async () => (await getJson(`${url}/distributed/gpu-info`)).cluster_status === 'healthy', 60_000, 'a healthy peer');
    // Move the converted model away, then crash the engine: the supervisor's re-load cannot find it.
    const models = path.join(node.dataDir, 'models');
    const dir = fs.readdirSync(models).find((d) => d.startsWith('stories260K-'))!;
    fs.renameSync(path.join(models, dir), path.join(models, `${dir}.moved`));
    const pid = node.inference!.engine.pid!;
    process.kill(pid, 'SIGKILL');
    const device = await waitFor(async () => {
      const v = await getJson(`${url}/distributed/gpu-info`);
      return v.devices[0].status === 'failed' ? v.devices[0] : null;
    }, 30_000, 'the device shown as failed');
    assert.is(device.device_id, node.peer.id);
    const res = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'Once upon a time', max_tokens: 5 }),
    });
    assert.is(res.status, 503);
    const { error } = await res.json();
    assert.match(error.message, /could not re-load its layers after an engine restart/);
    assert.not.match(error.message, /waiting for/);
    assert.is(node.inference!.engine.state, 'idle', 'the engine itself runs on, without layers');
  } finally {
    await mesh.stop();
  }
});

test.run();
