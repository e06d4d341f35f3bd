// `mlx-mesh bench transport`: tensors over the mesh's real link (handshake, codec, schemas, send window)
// against raw TCP with length prefixes (the limit) and gRPC moving raw bytes, per frame size, in one run;
// and the Node ↔ Python engine hop. Every figure is a ratio against a baseline measured alongside it.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import os from 'node:os';
import { defaults, PROTOCOL_VERSION } from '../core/defaults.ts';
import { meshError } from '../core/errors.ts';
import { createLogger } from '../core/log.ts';
import { EngineClient } from '../peer/engine-client.ts';
import { FrameReader } from '../peer/frame-reader.ts';
import { dataDirOption, EXIT, parseCommandArgs, SHARED_OPTIONS } from '../src/command.ts';
import { answerBenchEcho } from '../transport/bench-echo.ts';
import { dial } from '../transport/dialer.ts';
import type { EndpointOptions } from '../transport/endpoint.ts';
import type { Link } from '../transport/link.ts';
import type { Message } from '../transport/messages.ts';
import { LinkServer } from '../transport/server.ts';
import { writeRatioChart } from './inference-chart.ts';

export const usage = `
Usage: mlx-mesh bench transport [options]

Moves frames of each size over the mesh's real link (handshake, CBOR codec, zod schemas, send window)
and, in the same run, over raw TCP with 4-byte length prefixes (the limit) and gRPC (@grpc/grpc-js
moving raw bytes, when installed), then through the Node ↔ Python engine hop. Per size: one-way MB/s
(frames streamed with ${defaults.sendWindow} in flight, 2 to the engine) and ping-pong p50/p99 (the frame sent and
echoed back).

Ratios
  stream_vs_tcp   mesh MB/s ÷ raw TCP MB/s           stream_vs_grpc  mesh MB/s ÷ gRPC MB/s
  cpu_vs_tcp      raw TCP CPU ÷ mesh CPU per frame   cpu_vs_grpc     gRPC CPU ÷ mesh CPU per frame
  p50_vs_tcp      mesh ping-pong p50 ÷ raw TCP p50   p50_vs_grpc     mesh p50 ÷ gRPC p50
  CPU is this process's time while streaming (both ends run in it on loopback): the ratio that still
  means something when other work shares the cores.
  The engine hop's MB/s counts the tensor both ways (to the engine and back), several in flight.
  Each ratio is the median of the rounds' own ratios; the figures in the table pool every round.

Options:
  --sizes <list>          frame sizes (default 8K,64K,1M,16M)
  --stream-bytes <n>      bytes streamed per size and transport in each round (default 256M)
  --pings <n>             ping-pongs per size, at most (default 200; fewer for large frames)
  --rounds <n>            rounds, transports back to back in each (every other round in reverse
                          order); a ratio is the median of the rounds' ratios (default 3)
  --peer <host:port>      measure the link to a live peer instead of loopback (no baselines then)
  --secret <secret>       the cluster secret of that peer (or MLX_MESH_SECRET); without it a secured
                          peer refuses the bench
  --cluster <name>        the peer's cluster name (default ${defaults.cluster})
  --no-engine             skip the engine hop
  --json                  one JSON object on stdout: {meta, sizes, goals}
  --chart <file.svg>      the ratios as a bar chart
  --data-dir <dir>        the engine's data dir (default ${defaults.dataDir})
  --python <path>         the engine's Python (default: the data dir's venv)

Progress goes to stderr. On a loaded machine the figures lie: run it pinned and quiet
(taskset -c 0 mlx-mesh bench transport) and keep the load average with the figures.
`;

const OPTIONS = {
  ...SHARED_OPTIONS,
  sizes: { type: 'string', default: '8K,64K,1M,16M' },
  'stream-bytes': { type: 'string', default: '256M' },
  pings: { type: 'string', default: '200' },
  rounds: { type: 'string', default: '3' },
  peer: { type: 'string' },
  secret: { type: 'string' },
  cluster: { type: 'string', default: defaults.cluster },
  'no-engine': { type: 'boolean', default: false },
  chart: { type: 'string' },
} as const;

type Answer = 'none' | 'ack' | 'echo';

/** One way to move frames: `call` resolves once the frame is written ('none') or once answered. */
interface Channel {
  call(answer: Answer, payload: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

export interface Figures {
  mbps: number;
  p50_ms: number;
  p99_ms: number;
  /** This process's CPU time per streamed frame (both ends, on loopback); null for the engine hop. */
  cpu_ms_per_frame: number | null;
}

interface Unavailable {
  unavailable: string;
}

type Column = Figures | Unavailable | null;

export interface SizeResult {
  bytes: number;
  mesh: Figures;
  tcp: Column;
  grpc: Column;
  engine: Column;
  ratios: {
    stream_vs_tcp: number | null;
    stream_vs_grpc: number | null;
    cpu_vs_tcp: number | null;
    cpu_vs_grpc: number | null;
    p50_vs_tcp: number | null;
    p50_vs_grpc: number | null;
  };
}

const progress = (line: string) => process.stderr.write(`${line}\n`);

function parseBytes(s: string): number {
  const m = /^(\d+)([KMG]?)$/i.exec(s.trim());
  if (!m) throw meshError('BAD_ARGUMENT', `not a size: "${s}" (e.g. 8K, 16M)`);
  return Number(m[1]) * 1024 ** ' KMG'.indexOf((m[2] || ' ').toUpperCase());
}

export function formatBytes(n: number): string {
  for (const [unit, k] of [['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) {
    if (n >= k && n % k === 0) return `${n / k} ${unit}`;
  }
  return `${n} B`;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];

/** Frames streamed one way, `depth` in flight; the last one asks for an ack so the clock stops on arrival. */
async function streamMbps(ch: Channel, payload: Uint8Array, frames: number, depth: number): Promise<number> {
  const inFlight: Promise<void>[] = [];
  const start = performance.now();
  for (let i = 0; i < frames - 1; i++) {
    inFlight.push(ch.call('none', payload));
    if (inFlight.length >= depth) await inFlight.shift();
  }
  await Promise.all(inFlight);
  await ch.call('ack', payload);
  return (frames * payload.byteLength) / (performance.now() - start) / 1e3;
}

async function pingPongMs(ch: Channel, payload: Uint8Array, pings: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < pings; i++) {
    const t = performance.now();
    await ch.call('echo', payload);
    out.push(performance.now() - t);
  }
  return out;
}

// ---- the mesh's link -----------------------------------------------------------------------------

export function benchEndpoint(name: string, cluster: string, secret: string | undefined): EndpointOptions {
  return {
    protocol: PROTOCOL_VERSION,
    cluster,
    instance: randomBytes(8).toString('hex'),
    self: () => ({
      id: `${name}-${randomBytes(4).toString('hex')}`,
      name,
      hostname: os.hostname(),
      startedAt: Date.now(),
      port: 0,
      apiPort: 0,
      addresses: [],
      capabilities: { platform: process.platform, arch: process.arch, totalMemory: os.totalmem(), freeMemory: os.freemem() },
    }),
    timeoutMs: defaults.handshakeTimeoutMs,
    secret,
    maxPayloadBytes: defaults.maxPayloadBytes,
    sendWindow: defaults.sendWindow,
    heartbeatMs: defaults.heartbeatMs,
    heartbeatMisses: defaults.heartbeatMisses,
    logger: createLogger('bench'),
  };
}

function meshChannel(link: Link, onClose: () => Promise<void>): Channel {
  // The peer answers in the order it was asked, as TCP and gRPC do: one queue serves all three.
  const answers = answerQueue();
  link.on('message', (msg: Message) => {
    if (msg.type === 'bench-echo') answers.answer();
  });
  link.on('close', (info) => answers.fail(meshError('LINK_CLOSED', `the bench link closed: ${info.reason}`)));
  link.start();
  let seq = 0;
  return {
    call(answer, payload) {
      const sent = link.send({ type: 'bench-echo', seq: seq++, answer, tensor: { dtype: 'uint8', shape: [payload.byteLength], data: payload } });
      if (answer === 'none') return sent;
      // Like the TCP and gRPC channels, a call that waits for an answer waits for that alone; a send
      // that fails fails the bench.
      const answered = answers.wait();
      sent.catch(answers.fail);
      return answered;
    },
    async close() {
      link.close();
      await onClose();
    },
  };
}

async function loopbackMesh(secret: string | undefined): Promise<Channel> {
  const server = new LinkServer({ ...benchEndpoint('bench-peer', defaults.cluster, secret), host: '127.0.0.1', port: 0 });
  server.on('link', (link) => answerBenchEcho(link));
  await server.start();
  const link = await dial('127.0.0.1', server.port, { ...benchEndpoint('bench', defaults.cluster, secret), role: 'bench' });
  return meshChannel(link, () => server.stop());
}

async function remoteMesh(target: string, cluster: string, secret: string | undefined): Promise<Channel> {
  const m = /^(.+):(\d+)$/.exec(target);
  if (!m) throw meshError('BAD_ARGUMENT', `--peer wants host:port, got "${target}"`);
  const link = await dial(m[1].replace(/^\[|\]$/g, ''), Number(m[2]), { ...benchEndpoint('bench', cluster, secret), role: 'bench' });
  return meshChannel(link, async () => {});
}

// ---- raw TCP: [u32 length][answer byte][payload], the least any framing can do -----------------

const ANSWER_BYTE: Record<Answer, number> = { none: 0, ack: 1, echo: 2 };

function writeTcpFrame(socket: net.Socket, answer: number, payload: Uint8Array, done?: () => void): void {
  const head = Buffer.allocUnsafe(5);
  head.writeUInt32BE(payload.byteLength + 1, 0);
  head[4] = answer;
  socket.cork();
  socket.write(head);
  if (payload.byteLength) socket.write(payload, done);
  else if (done) socket.write(Buffer.alloc(0), done);
  socket.uncork();
}

/** FIFO of callers waiting for answers: TCP and gRPC answer in order. */
function answerQueue() {
  const q: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  return {
    wait: () => new Promise<void>((resolve, reject) => q.push({ resolve, reject })),
    answer: () => q.shift()?.resolve(),
    fail: (e: Error) => q.splice(0).forEach((w) => w.reject(e)),
  };
}

async function tcpChannel(): Promise<Channel> {
  const server = net.createServer((s) => {
    s.setNoDelay(true);
    const reader = new FrameReader(defaults.maxPayloadBytes, (frame) => {
      if (frame[0] === ANSWER_BYTE.echo) writeTcpFrame(s, 0, frame.subarray(1));
      else if (frame[0] === ANSWER_BYTE.ack) writeTcpFrame(s, 0, new Uint8Array(0));
    });
    s.on('data', (c: Buffer) => reader.push(c));
    s.on('error', () => s.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const socket = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.setNoDelay(true);
  const answers = answerQueue();
  const reader = new FrameReader(defaults.maxPayloadBytes, () => answers.answer());
  socket.on('data', (c: Buffer) => reader.push(c));
  socket.on('close', () => answers.fail(new Error('raw TCP socket closed')));
  return {
    call(answer, payload) {
      if (answer === 'none') return new Promise((resolve) => writeTcpFrame(socket, ANSWER_BYTE.none, payload, resolve));
      const answered = answers.wait();
      writeTcpFrame(socket, ANSWER_BYTE[answer], payload);
      return answered;
    },
    async close() {
      socket.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

// ---- gRPC: one bidirectional stream of raw byte messages (its best case) ------------------------

async function grpcChannel(): Promise<Channel | Unavailable> {
  let grpc: typeof import('@grpc/grpc-js');
  try {
    grpc = await import('@grpc/grpc-js');
  } catch {
    return { unavailable: '@grpc/grpc-js is not installed (a development dependency: npm install in a checkout)' };
  }
  const raw = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
  const path = '/mlxmesh.bench.Bench/Stream';
  const unlimited = { 'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1 };
  const server = new grpc.Server(unlimited);
  server.addService(
    {
      Stream: {
        path,
        requestStream: true,
        responseStream: true,
        originalName: 'stream',
        requestSerialize: raw.serialize,
        requestDeserialize: raw.deserialize,
        responseSerialize: raw.serialize,
        responseDeserialize: raw.deserialize,
      },
    },
    {
      Stream: (call: import('@grpc/grpc-js').ServerDuplexStream<Buffer, Buffer>) => {
        call.on('data', (m: Buffer) => {
          if (m[0] === ANSWER_BYTE.echo) call.write(m);
          else if (m[0] === ANSWER_BYTE.ack) call.write(Buffer.from([0]));
        });
        call.on('end', () => call.end());
        call.on('error', () => {});
      },
    },
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), unlimited);
  const stream = client.makeBidiStreamRequest(path, raw.serialize, raw.deserialize);
  const answers = answerQueue();
  stream.on('data', () => answers.answer());
  stream.on('error', (e: Error) => answers.fail(e));
  // gRPC messages are one buffer: the answer byte has to be joined to the payload (a copy).
  const message = (answer: Answer, payload: Uint8Array) => Buffer.concat([Buffer.from([ANSWER_BYTE[answer]]), payload]);
  return {
    call(answer, payload) {
      const m = message(answer, payload);
      if (answer === 'none') return new Promise((resolve) => stream.write(m, () => resolve()));
      const answered = answers.wait();
      stream.write(m);
      return answered;
    },
    async close() {
      stream.cancel();
      client.close();
      server.forceShutdown();
    },
  };
}

// ---- the engine hop ----------------------------------------------------------------------------

function engineChannel(engine: EngineClient): Channel {
  return {
    async call(_answer, payload) {
      await engine.request('echo', { hidden: { dtype: 'uint8', shape: [payload.byteLength], data: payload } });
    },
    async close() {
      await engine.stop();
    },
  };
}

// ---- the run -----------------------------------------------------------------------------------

interface Plan {
  sizes: number[];
  streamBytes: number;
  pings: number;
  rounds: number;
}

function framesFor(size: number, plan: Plan): number {
  return Math.max(4, Math.min(20_000, Math.floor(plan.streamBytes / size)));
}

function pingsFor(size: number, plan: Plan): number {
  return Math.max(3, Math.min(plan.pings, Math.floor(plan.streamBytes / 2 / size)));
}

async function measureSize(
  name: string,
  ch: Channel,
  size: number,
  plan: Plan,
  acc: Acc,
  { both = false, depth = defaults.sendWindow }: { both?: boolean; depth?: number },
) {
  const payload = randomBytes(size);
  const frames = framesFor(size, plan);
  await pingPongMs(ch, payload, 2); // warm-up: connection buffers, JIT
  const cpu = process.cpuUsage();
  const mbps = (await streamMbps(ch, payload, frames, depth)) * (both ? 2 : 1);
  const used = process.cpuUsage(cpu);
  if (!both) acc.cpu.push((used.user + used.system) / 1000 / frames);
  const lat = await pingPongMs(ch, payload, pingsFor(size, plan));
  acc.mbps.push(mbps);
  acc.lat.push(...lat);
  acc.p50.push(median(lat));
  progress(`  ${formatBytes(size).padStart(7)}  ${name.padEnd(6)} ${mbps.toFixed(0).padStart(6)} MB/s   ping-pong p50 ${median(lat).toFixed(3)} ms`);
}

/** One transport at one size: a figure per round (the latencies of every round pooled). */
interface Acc {
  mbps: number[];
  lat: number[];
  p50: number[];
  cpu: number[];
}

/**
 * The median over rounds of a[r] ÷ b[r]. Within a round the transports run back to back, so each
 * round's ratio compares them on the same machine; on a shared one the speed of a core drifts between
 * rounds by more than the differences measured here.
 */
function pairedRatio(a: number[], b: number[]): number {
  return round(median(a.map((x, r) => x / b[r])), 3);
}

function figures(acc: Acc): Figures {
  const sorted = [...acc.lat].sort((a, b) => a - b);
  return {
    mbps: round(median(acc.mbps)),
    p50_ms: round(quantile(sorted, 0.5), 4),
    p99_ms: round(quantile(sorted, 0.99), 4),
    cpu_ms_per_frame: acc.cpu.length ? round(median(acc.cpu), 4) : null,
  };
}

const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;
const isFigures = (c: Column): c is Figures => c !== null && 'mbps' in c;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, OPTIONS);
  const plan: Plan = {
    sizes: values.sizes.split(',').map(parseBytes),
    streamBytes: parseBytes(values['stream-bytes']),
    pings: Number(values.pings),
    rounds: Math.max(1, Number(values.rounds)),
  };
  if (plan.sizes.some((s) => !(s > 0) || s > defaults.maxPayloadBytes / 2) || !(plan.pings > 0)) {
    throw meshError('BAD_ARGUMENT', `sizes must be between 1 byte and ${formatBytes(defaults.maxPayloadBytes / 2)}; --pings at least 1`);
  }
  const secret = values.secret ?? (process.env.MLX_MESH_SECRET || undefined);
  const remote = values.peer;
  const channels: Array<{ name: 'mesh' | 'tcp' | 'grpc' | 'engine'; ch: Channel; both?: boolean; depth?: number }> = [];
  const columns: Record<'tcp' | 'grpc' | 'engine', Column> = { tcp: null, grpc: null, engine: null };
  try {
    progress(remote ? `linking to ${remote} …` : 'starting loopback servers …');
    channels.push({ name: 'mesh', ch: remote ? await remoteMesh(remote, values.cluster, secret) : await loopbackMesh(secret) });
    if (!remote) {
      channels.push({ name: 'tcp', ch: await tcpChannel() });
      const g = await grpcChannel();
      if ('call' in g) channels.push({ name: 'grpc', ch: g });
      else (columns.grpc = g), progress(`gRPC: ${g.unavailable}`);
    }
    if (!values['no-engine']) {
      const engine = new EngineClient({ dataDir: dataDirOption(values), python: values.python });
      try {
        await engine.start();
        // The engine serves one call at a time: two in flight keep its pipe busy without queueing tensors.
        channels.push({ name: 'engine', ch: engineChannel(engine), both: true, depth: 2 });
      } catch (err) {
        await engine.stop();
        columns.engine = { unavailable: (err as Error).message.split('\n')[0] };
        progress(`engine hop: ${columns.engine.unavailable}`);
      }
    }

    const acc = new Map<string, Acc>();
    for (let r = 0; r < plan.rounds; r++) {
      progress(`round ${r + 1} of ${plan.rounds}`);
      for (const size of plan.sizes) {
        // Every other round in reverse order, so no transport always goes first after a change of size.
        for (const { name, ch, both, depth } of r % 2 ? [...channels].reverse() : channels) {
          const key = `${name}/${size}`;
          if (!acc.has(key)) acc.set(key, { mbps: [], lat: [], p50: [], cpu: [] });
          await measureSize(name, ch, size, plan, acc.get(key)!, { both, depth });
        }
      }
    }

    const sizes: SizeResult[] = plan.sizes.map((bytes) => {
      const col = (name: string, fallback: Column): Column => (acc.has(`${name}/${bytes}`) ? figures(acc.get(`${name}/${bytes}`)!) : fallback);
      // Per-round figures of each transport at this size (none for a transport not measured).
      const m = acc.get(`mesh/${bytes}`)!;
      const [t, g] = (['tcp', 'grpc'] as const).map((name) => acc.get(`${name}/${bytes}`));
      const mesh = figures(m);
      const tcp = col('tcp', columns.tcp);
      const grpc = col('grpc', columns.grpc);
      return {
        bytes,
        mesh,
        tcp,
        grpc,
        engine: col('engine', columns.engine),
        ratios: {
          stream_vs_tcp: t ? pairedRatio(m.mbps, t.mbps) : null,
          stream_vs_grpc: g ? pairedRatio(m.mbps, g.mbps) : null,
          cpu_vs_tcp: t ? pairedRatio(t.cpu, m.cpu) : null,
          cpu_vs_grpc: g ? pairedRatio(g.cpu, m.cpu) : null,
          p50_vs_tcp: t ? pairedRatio(m.p50, t.p50) : null,
          p50_vs_grpc: g ? pairedRatio(m.p50, g.p50) : null,
        },
      };
    });
    const meta = {
      target: remote ?? 'loopback',
      sizes: plan.sizes,
      stream_bytes: plan.streamBytes,
      pings: plan.pings,
      rounds: plan.rounds,
      send_window: defaults.sendWindow,
      node: process.version,
      cpus: os.cpus().length,
      loadavg: os.loadavg().map((x) => round(x)),
      ws_masking: 'zero key (dialled links)',
    };
    const goals = goalsOf(sizes);
    if (values.json) process.stdout.write(`${JSON.stringify({ meta, sizes, goals }, null, 2)}\n`);
    else process.stdout.write(table(sizes, goals, meta.loadavg));
    if (values.chart) {
      writeRatioChart(values.chart, `mlx-mesh link vs baselines (${meta.target}, higher is better)`, chartBars(sizes));
      progress(`chart written to ${values.chart}`);
    }
    return EXIT.ok;
  } finally {
    for (const { ch } of channels.reverse()) await ch.close().catch(() => {});
  }
}

/** The reach, checked on whatever sizes were measured. */
function goalsOf(sizes: SizeResult[]) {
  const at = (n: number) => sizes.find((s) => s.bytes === n);
  const out: Array<{ goal: string; value: number | null; met: boolean | null }> = [];
  const add = (goal: string, value: number | null | undefined, ok: (v: number) => boolean) =>
    out.push({ goal, value: value ?? null, met: value == null ? null : ok(value) });
  add('16 MiB: mesh ≥ 0.9 × raw TCP throughput', at(16 << 20)?.ratios.stream_vs_tcp, (v) => v >= 0.9);
  add('16 MiB: mesh ≥ 0.9 × raw TCP, by CPU per frame', at(16 << 20)?.ratios.cpu_vs_tcp, (v) => v >= 0.9);
  for (const s of sizes.filter((x) => x.bytes >= 64 << 10)) {
    add(`${formatBytes(s.bytes)}: mesh ≥ 1.5 × gRPC throughput`, s.ratios.stream_vs_grpc, (v) => v >= 1.5);
  }
  add('8 KiB ping-pong p50 ≤ 1.25 × raw TCP', at(8 << 10)?.ratios.p50_vs_tcp, (v) => v <= 1.25);
  const engine = at(16 << 20)?.engine;
  add('engine hop ≥ 1 GB/s at 16 MiB (MB/s)', isFigures(engine ?? null) ? (engine as Figures).mbps : null, (v) => v >= 1000);
  return out;
}

function chartBars(sizes: SizeResult[]) {
  const bars: Array<{ label: string; value: number }> = [];
  for (const s of sizes) {
    const r = s.ratios;
    const size = formatBytes(s.bytes);
    if (r.stream_vs_tcp !== null) bars.push({ label: `${size} MB/s ÷ raw TCP`, value: r.stream_vs_tcp });
    if (r.stream_vs_grpc !== null) bars.push({ label: `${size} MB/s ÷ gRPC`, value: r.stream_vs_grpc });
    if (r.cpu_vs_tcp !== null) bars.push({ label: `${size} TCP CPU ÷ CPU`, value: r.cpu_vs_tcp });
    if (r.p50_vs_tcp !== null) bars.push({ label: `${size} TCP p50 ÷ p50`, value: round(1 / r.p50_vs_tcp, 3) });
    if (r.p50_vs_grpc !== null) bars.push({ label: `${size} gRPC p50 ÷ p50`, value: round(1 / r.p50_vs_grpc, 3) });
  }
  return bars;
}

function table(sizes: SizeResult[], goals: ReturnType<typeof goalsOf>, load: number[]): string {
  const cell = (c: Column, f: (x: Figures) => string) => (isFigures(c) ? f(c) : '–');
  const x = (v: number | null) => (v === null ? '–' : `${v.toFixed(2)}×`);
  const rows = [
    ['frame', 'mesh MB/s', 'TCP MB/s', 'gRPC MB/s', 'mesh÷TCP', 'mesh÷gRPC', 'CPU TCP÷mesh', 'CPU gRPC÷mesh', 'mesh p50 ms', 'TCP p50', 'gRPC p50', 'p50 ÷TCP', 'engine MB/s', 'engine p50'],
    ...sizes.map((s) => [
      formatBytes(s.bytes),
      s.mesh.mbps.toFixed(0),
      cell(s.tcp, (f) => f.mbps.toFixed(0)),
      cell(s.grpc, (f) => f.mbps.toFixed(0)),
      x(s.ratios.stream_vs_tcp),
      x(s.ratios.stream_vs_grpc),
      x(s.ratios.cpu_vs_tcp),
      x(s.ratios.cpu_vs_grpc),
      s.mesh.p50_ms.toFixed(3),
      cell(s.tcp, (f) => f.p50_ms.toFixed(3)),
      cell(s.grpc, (f) => f.p50_ms.toFixed(3)),
      x(s.ratios.p50_vs_tcp),
      cell(s.engine, (f) => f.mbps.toFixed(0)),
      cell(s.engine, (f) => f.p50_ms.toFixed(3)),
    ]),
  ];
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const lines = rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  '));
  const unavailable = sizes[0] && [sizes[0].grpc, sizes[0].engine].filter((c): c is Unavailable => c !== null && 'unavailable' in c);
  return [
    ...lines,
    ...(unavailable ?? []).map((u) => `(${u.unavailable})`),
    '',
    ...goals.map((g) => `${g.met === null ? '·' : g.met ? '✔' : '✘'} ${g.goal}: ${g.value ?? 'not measured'}`),
    `load average ${load.join(' ')}`,
    '',
  ].join('\n');
}
