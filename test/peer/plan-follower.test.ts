// The plan follower with a real supervisor and engine on the golden tiny model: a plan that arrives
// while the engine restarts after a crash is loaded once the engine is back, and the peer is ready for it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createLogger } from '../../core/log.ts';
import { DeviceStates } from '../../peer/device-states.ts';
import { PlanFollower } from '../../peer/plan-follower.ts';
import { EngineSupervisor } from '../../peer/supervisor.ts';
import type { MessageOf } from '../../transport/messages.ts';
import { waitFor } from '../helpers/mesh.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const STORIES_GGUF = path.resolve(repoRoot, '../shared/models/stories260K.gguf');
const dataDir = process.env.MLX_MESH_DATA_DIR ?? path.join(os.homedir(), '.mlx-mesh');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mlx-mesh-follower-'));
const SELF = 'self';

function plan(version: number, layers: [number, number]): MessageOf<'plan'> {
  return {
    type: 'plan',
    term: 1,
    version,
    model: 'stories',
    stages: [{ id: SELF, rank: 0, layers }],
    excluded: [],
    meta: { name: 'stories260K', nLayers: 5, contextLength: 512, eosTokenIds: [2] },
  };
}

const engine = new EngineSupervisor({ dataDir, restartDelayMs: 300 });
let modelDir = '';

test.after(async () => {
  await engine.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('a plan that arrives while the engine restarts is loaded once it is back', async () => {
  const states = new DeviceStates(SELF);
  const follower = new PlanFollower({
    selfId: SELF,
    engine,
    states,
    log: createLogger('inference'),
    resolve: async () => ({ path: modelDir }),
    term: () => 1,
  });
  await follower.startEngine();
  modelDir = (await engine.convert(STORIES_GGUF, path.join(tmp, 'stories260K'))).path;
  const v1 = plan(1, [0, 5]);
  follower.accept(v1);
  await waitFor(() => states.isReadyFor(SELF, v1), 60_000, 'ready for plan 1');
  assert.is(engine.loaded?.last, true);

  const restarting = new Promise<void>((resolve) => engine.on('state', (st) => st === 'restarting' && resolve()));
  process.kill(engine.pid!, 'SIGKILL');
  await restarting;
  const v2 = plan(2, [0, 3]);
  assert.is(follower.accept(v2), 'new-stages');
  await waitFor(() => states.isReadyFor(SELF, v2), 60_000, 'ready for plan 2 after the restart');
  assert.is(engine.loaded?.last, false, 'the layers of plan 2, not those loaded before the crash');
  assert.is(states.self.error, undefined);
  await follower.stop();
});

test.run();
