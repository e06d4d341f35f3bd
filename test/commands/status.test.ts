// The `status` table: one row per device; a device fetching its weights from a peer shows how far.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type Device, formatTable } from '../../src/commands/status.ts';

const device = (over: Partial<Device>): Device => ({
  device_id: 'id-a',
  name: 'a',
  hostname: 'host-a',
  status: 'healthy',
  role: 'coordinator',
  rank: 0,
  layers: [0, 4],
  memory_bytes: 2 ** 30,
  backend: 'cpu',
  ...over,
});

test('a device fetching its weights shows the percentage and the source in its status', () => {
  const out = formatTable({
    devices: [
      device({}),
      device({ device_id: 'id-b', name: 'b', role: 'worker', rank: 1, layers: [4, 8], status: 'loading', fetch: { state: 'fetching', from: 'a', bytes_done: 45, bytes_total: 100 } }),
      device({ device_id: 'id-c', name: 'c', role: 'worker', rank: 2, layers: null, status: 'healthy', fetch: { state: 'done', from: 'a', bytes_done: 9, bytes_total: 9 } }),
    ],
    cluster_status: 'forming',
    world_size: 3,
    term: 1,
    model: 'm',
  });
  const rows = out.trim().split('\n');
  assert.match(rows[3], /\bb\s+id-b\s+host-a\s+loading \(fetching 45% from a\)\s+4-7/);
  assert.match(rows[4], /id-c\s+host-a\s+healthy\s+-/, 'a finished transfer is not shown');
});

test.run();
