// One mDNS peer for the namespace tests: publishes and browses with discovery/mdns.ts and prints every
// event as a JSON line on stdout. A line "stop" on stdin (or stdin closing) stops it, which sends the goodbye.
// Usage: node --import tsx test/helpers/mdns-node.ts --id a --cluster c --port 50051 [--interface ip] [--protocol n]
import { parseArgs } from 'node:util';
import { createInterface } from 'node:readline';
import dgram from 'node:dgram';
import { MdnsDiscovery } from '../../discovery/mdns.ts';

const { values } = parseArgs({
  options: {
    id: { type: 'string' },
    cluster: { type: 'string', default: 'default' },
    port: { type: 'string', default: '50051' },
    protocol: { type: 'string', default: '1' },
    interface: { type: 'string' },
    bind: { type: 'string' },
    'query-interval': { type: 'string', default: '2000' },
    // Holds UDP 5353 without SO_REUSEADDR first, so start() must fail with EADDRINUSE.
    occupy: { type: 'boolean', default: false },
  },
});

const print = (event: string, data: object = {}) => process.stdout.write(`${JSON.stringify({ event, ...data })}\n`);

const discovery = new MdnsDiscovery({
  id: values.id!,
  cluster: values.cluster!,
  port: Number(values.port),
  protocol: Number(values.protocol),
  serviceType: 'mlx-mesh',
  interface: values.interface,
  bind: values.bind,
  queryIntervalMs: Number(values['query-interval']),
});
discovery.on('peer', (peer) => print('peer', { peer }));
discovery.on('ignored', (ignored) => print('ignored', ignored));
discovery.on('down', (down) => print('down', down));
discovery.on('error', (err: Error & { code?: string }) => {
  print('error', { message: err.message, code: err.code });
  process.exitCode = 1;
});

if (values.occupy) {
  const blocker = dgram.createSocket({ type: 'udp4', reuseAddr: false });
  await new Promise<void>((resolve) => blocker.bind(5353, '0.0.0.0', resolve));
  blocker.unref();
}
try {
  // Twice on purpose: start() is idempotent, so this must publish once and bind one socket.
  await Promise.all([discovery.start(), discovery.start()]);
} catch (err) {
  print('start-failed', { message: (err as Error).message, code: (err as { code?: string }).code });
  process.exit(1);
}
print('started');

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await Promise.all([discovery.stop(), discovery.stop()]);
  await discovery.stop();
  print('stopped');
};
const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (line.trim() === 'stop') void stop().then(() => lines.close());
});
lines.on('close', () => void stop());
