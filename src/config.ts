// Every default of the product in one place. Lower layers take these as options, so tests can pass
// faster timings without touching globals.
import os from 'node:os';
import path from 'node:path';

export const PROTOCOL_VERSION = 1;

export const defaults = {
  port: 50051,
  apiPort: 8100,
  apiHost: '127.0.0.1',
  cluster: 'default',
  dataDir: process.env.MLX_MESH_DATA_DIR ?? path.join(os.homedir(), '.mlx-mesh'),
  mdnsServiceType: 'mlx-mesh',
  /** Largest WebSocket frame accepted: big enough for a long prefill chunk of a large model's activations. */
  maxPayloadBytes: 256 * 1024 * 1024,
  /** Sends in flight on one link before send() waits for the socket to drain. */
  sendWindow: 8,
  heartbeatMs: 1000,
  /** A link that misses this many heartbeats in a row is dead. */
  heartbeatMisses: 3,
  handshakeTimeoutMs: 5000,
  dialBackoffMinMs: 200,
  dialBackoffMaxMs: 5000,
  /** How long a new peer listens for an existing coordinator before electing one itself. */
  settleMs: 1500,
} as const;

export type PeerTimings = Pick<
  typeof defaults,
  'heartbeatMs' | 'heartbeatMisses' | 'handshakeTimeoutMs' | 'dialBackoffMinMs' | 'dialBackoffMaxMs' | 'settleMs'
>;
