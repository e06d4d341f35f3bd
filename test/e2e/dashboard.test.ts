// The dashboard in a real headless Chromium (Debian's, driven by playwright-core) against a 2-peer
// loopback cluster on the tiny model: the page asks for the API key, lists both peers with their layer
// ranges, its chat box streams the golden completion, and a peer killed with SIGKILL is shown as gone
// within 3 s. Screenshots land in test/artifacts/.
import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FAST, startTestNode, STORIES, tempDir, TEST_PYTHON, waitFor } from '../helpers/mesh.ts';
import { freePort, ROOT, spawnCli } from '../helpers/process.ts';

const GOLDEN =
  ', there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily';
const KEY = 'dashboard-test-key';
const ARTIFACTS = path.join(ROOT, 'test', 'artifacts');

test('the dashboard shows both peers and their layers, streams the golden completion, and shows a killed peer as gone within 3 s', async () => {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const a = await startTestNode({ name: 'p0', inference: true, model: STORIES, apiKey: KEY });
  const [bPort, bApi] = [await freePort(), await freePort()];
  // The second peer is a separate process (the compiled CLI from dist/), so it can be killed for real.
  const b = spawnCli(
    ['join', '--model', STORIES, '--port', String(bPort), '--api-port', String(bApi), '--peer', `127.0.0.1:${a.peer.port}`, '--no-mdns', '--data-dir', tempDir(), '--name', 'p1', '--python', TEST_PYTHON],
    { MLX_MESH_HEARTBEAT_MS: String(FAST.heartbeatMs), MLX_MESH_SETTLE_MS: String(FAST.settleMs) },
  );
  let browser: Browser | null = null;
  try {
    const auth = { authorization: `Bearer ${KEY}` };
    const gpuInfo = async () => (await fetch(`${a.api.url}/distributed/gpu-info`, { headers: auth })).json();
    const info = await waitFor(async () => {
      const v = await gpuInfo();
      return v.cluster_status === 'healthy' && v.world_size === 2 && v;
    }, 120_000, 'a healthy 2-peer cluster');
    const [d0, d1] = info.devices;

    // The peer running from dist/ finds its dashboard files too.
    const page1 = await fetch(`http://127.0.0.1:${bApi}/`);
    assert.is(page1.status, 200);
    assert.match(await page1.text(), /<title>mlx-mesh<\/title>/);
    assert.is((await fetch(`http://127.0.0.1:${bApi}/dashboard/app.js`)).status, 200);

    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
    const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(a.api.url);

    // The API has a key: the page asks for it before it shows anything about the cluster.
    await page.waitForSelector('#key-dialog[open]', { timeout: 30_000 });
    await page.fill('#key-input', KEY);
    await page.click('#key-form button');

    for (const d of [d0, d1]) {
      const card = page.locator(`.peer[data-peer="${d.device_id}"]`);
      await card.waitFor({ timeout: 30_000 });
      await waitFor(async () => (await card.getAttribute('data-layers')) === `${d.layers[0]}-${d.layers[1]}`, 30_000, `${d.name}'s layers on the page`);
      assert.match(await card.innerText(), new RegExp(`layers ${d.layers[0]}–${d.layers[1] - 1} · ${d.layers[1] - d.layers[0]} of 5`));
      assert.match(await card.innerText(), new RegExp(d.name));
    }
    assert.match(await page.locator(`.peer[data-peer="${d0.device_id}"]`).innerText(), /coordinator/);
    assert.is(await page.locator('#cluster-status').getAttribute('data-status'), 'healthy');

    await page.fill('#prompt', 'Once upon a time');
    await page.fill('#temperature', '0');
    await page.fill('#max-tokens', '60');
    // Nothing on the page moves while the answer streams in.
    const boxes = () => page.evaluate(() => [...document.querySelectorAll('main > .panel, #chat-log, #chat-form')].map((e) => JSON.stringify(e.getBoundingClientRect())));
    const before = await boxes();
    await page.click('#send');
    await page.waitForFunction(() => (document.querySelector('.turn.answer')?.textContent ?? '').length > 20, null, { timeout: 120_000 });
    const during = await boxes();
    await page.waitForSelector('.turn.answer[data-done]', { timeout: 120_000 });
    assert.equal(during, before, 'no layout jump while tokens stream');
    assert.equal(await boxes(), before, 'no layout jump when the answer ends');
    assert.is(await page.locator('.turn.answer').innerText(), GOLDEN);
    assert.is(await page.locator('#stat-tokens').innerText(), '60');
    assert.match(await page.locator('#stat-ttft').innerText(), /^[0-9.]+ m?s$/);
    assert.match(await page.locator('#stat-tps').innerText(), /^[0-9.]+ tok\/s$/);
    await waitFor(async () => /p0 .* → p1 /.test(await page.locator('#stat-trace').innerText()), 10_000, 'the per-stage trace under the chat');
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard.png') });

    await b.kill('SIGKILL');
    const killedAt = Date.now();
    await page.waitForSelector(`.peer[data-peer="${d1.device_id}"][data-status="gone"]`, { timeout: 60_000 });
    const shownAfter = Date.now() - killedAt;
    assert.ok(shownAfter <= 3000, `the killed peer was shown as gone after ${shownAfter} ms`);
    assert.is(await page.locator(`#topology .node[data-peer="${d1.device_id}"]`).getAttribute('data-status'), 'gone');
    await waitFor(async () => /p1 left/.test(await page.locator('#events').innerText()), 10_000, 'a leave in the recent events');
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-peer-gone.png') });
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-dark.png') });
    assert.equal(errors, [], 'no script errors on the page');
  } finally {
    await browser?.close();
    await b.kill('SIGKILL');
    await a.stop();
  }
});

test.run();
