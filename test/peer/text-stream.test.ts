// The origin's detokenizer stream across an engine restart, with the real engine and the golden tiny
// model: kill -9 of the engine half-way through the golden text, and the stream's pieces still join
// into exactly that text (the new engine's stream is fed every token again; nothing repeats).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { EngineSupervisor } from '../../peer/supervisor.ts';
import { EngineTextStream } from '../../peer/text-stream.ts';
import { STORIES, STORIES_GREEDY, TEST_PYTHON, waitFor } from '../helpers/mesh.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mlx-mesh-text-stream-'));
const engine = new EngineSupervisor({ dataDir: tmp, python: TEST_PYTHON, restartDelayMs: 50 });

test.after(async () => {
  await engine.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('a kill -9 of the engine mid-text: the pieces still join into exactly the text, nothing repeated', async () => {
  await engine.start();
  const model = (await engine.convert(STORIES, path.join(tmp, 'stories260K'))).path;
  await engine.load({ model, start: 0, end: 0 }); // the tokenizer only, as for a peer left out of the plan
  // The golden continuation's token ids: the prompt with it, less the prompt.
  const prompt = (await engine.tokenize({ text: 'Once upon a time', addBos: true })).tokens;
  const tokens = (await engine.tokenize({ text: `Once upon a time${STORIES_GREEDY}`, addBos: true })).tokens.slice(prompt.length);
  assert.ok(tokens.length > 40);

  const text = new EngineTextStream(engine, 'r1');
  await text.open();
  let out = '';
  let failures = 0;
  const first = engine.instance;
  for (const [i, token] of tokens.entries()) {
    if (i === 25) process.kill(engine.pid!, 'SIGKILL');
    try {
      out += await text.add([token]);
    } catch {
      // As a request does: wait for the engine to serve again and go on (the stream kept the token).
      failures++;
      await waitFor(() => engine.state === 'ready', 60_000, 'the engine ready again');
    }
  }
  out += await text.close();
  assert.ok(engine.instance > first, 'the engine was restarted');
  assert.ok(failures >= 1, 'the stream saw the crash');
  assert.is(out, STORIES_GREEDY);
});

test.run();
