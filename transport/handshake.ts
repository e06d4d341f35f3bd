// The first exchange on every socket: both sides send `hello` at once and check the other's
// protocol version and cluster name; with a cluster secret, both then prove they know it (`auth`).
// Nothing else is accepted before that.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type WebSocket from 'ws';
import { defaults } from '../core/defaults.ts';
import { newNonce, proof, verifyProof } from './auth.ts';
import { decodeMessage, encodeMessage } from './codec.ts';
import { CloseCode } from './close-codes.ts';
import { type ErrorCode, isMeshError, meshError, MeshError } from '../core/errors.ts';
import type { MessageOf, PeerInfo } from './messages.ts';

export interface HandshakeOptions {
  protocol: number;
  cluster: string;
  instance: string;
  self: () => PeerInfo;
  timeoutMs: number;
  maxPayloadBytes: number;
  /** Bytes a socket may send before its handshake completes (defaults.preHandshakeMaxBytes). */
  preHandshakeMaxBytes?: number;
  /**
   * Last word on a peer that passed every check (and proved the secret, with one): throws the
   * MeshError to refuse it with, e.g. DUPLICATE_ID when its id is live on another link.
   */
  admit?: (remote: PeerInfo, instance: string) => void;
  /** The cluster secret (--secret); peers without it are refused, and so are peers with another. */
  secret?: string;
  /** 'bench' for `mlx-mesh bench transport`'s side of a link (see transport/bench-echo.ts). */
  role?: 'bench';
}

export interface HandshakeResult {
  remote: PeerInfo;
  instance: string;
  role: 'peer' | 'bench';
  /** Frames that arrived right behind the handshake, in order, for the link to process. */
  pending: Buffer[];
}

export const CLOSE_FOR: Partial<Record<ErrorCode, number>> = {
  PROTOCOL_MISMATCH: CloseCode.PROTOCOL_MISMATCH,
  CLUSTER_MISMATCH: CloseCode.CLUSTER_MISMATCH,
  SELF_CONNECTION: CloseCode.SELF,
  DUPLICATE_ID: CloseCode.DUPLICATE_ID,
  HANDSHAKE_TIMEOUT: CloseCode.HANDSHAKE_TIMEOUT,
  AUTH_FAILED: CloseCode.AUTH_FAILED,
  FRAME_TOO_LARGE: CloseCode.TOO_BIG,
  TOO_MANY_HANDSHAKES: CloseCode.TRY_AGAIN,
};

/** Checks a hello against our own settings; throws the MeshError to refuse it with. */
function checkHello(msg: MessageOf<'hello'>, opts: HandshakeOptions, self: PeerInfo): void {
  if (msg.protocol !== opts.protocol) {
    throw meshError(
      'PROTOCOL_MISMATCH',
      `peer ${msg.peer.id} speaks protocol ${msg.protocol}, this peer speaks ${opts.protocol}: run the same mlx-mesh version on both`,
    );
  }
  if (msg.cluster !== opts.cluster) {
    throw meshError('CLUSTER_MISMATCH', `peer ${msg.peer.id} is in cluster "${msg.cluster}", this peer is in "${opts.cluster}"`);
  }
  if (msg.peer.id === self.id) {
    if (msg.instance === opts.instance) throw meshError('SELF_CONNECTION', 'connected to itself');
    throw meshError(
      'DUPLICATE_ID',
      `peer on ${msg.peer.hostname} uses this peer's id ${self.id}: give one of them its own --data-dir (cloned data dir?)`,
    );
  }
  if (!!msg.secured !== !!opts.secret) {
    throw meshError(
      'AUTH_FAILED',
      opts.secret
        ? `peer ${msg.peer.id} has no cluster secret: start it with the same --secret (or MLX_MESH_SECRET)`
        : `peer ${msg.peer.id} requires a cluster secret: start this peer with the same --secret (or MLX_MESH_SECRET)`,
    );
  }
  if (msg.secured && msg.nonce?.byteLength !== 16) throw meshError('AUTH_FAILED', `peer ${msg.peer.id} sent no valid challenge`);
}

/**
 * Runs the handshake on `ws`. `socket` is its TCP socket when already known (an accepted socket);
 * a dialled one is found at the upgrade.
 */
export function handshake(ws: WebSocket, opts: HandshakeOptions, socket?: Duplex): Promise<HandshakeResult> {
  return new Promise((resolve, reject) => {
    const self = opts.self();
    const nonce = opts.secret ? newNonce() : undefined;
    let hello: MessageOf<'hello'> | null = null;
    let done = false;
    const pending: Buffer[] = [];
    // Until the handshake completes the other side is a stranger: its bytes are counted as they arrive
    // on the TCP socket, so an oversize frame is refused before ws has buffered it.
    const maxBytes = opts.preHandshakeMaxBytes ?? defaults.preHandshakeMaxBytes;
    let received = 0;
    let raw: Duplex | undefined;
    const onBytes = (chunk: Buffer) => {
      received += chunk.length;
      if (received <= maxBytes || done) return;
      raw?.pause();
      fail(meshError('FRAME_TOO_LARGE', `sent over ${maxBytes} bytes before completing the handshake`), false);
    };
    const watch = (s: Duplex) => {
      raw = s;
      s.on('data', onBytes);
    };
    // A dialled socket is known at the upgrade, but a 'data' listener added before ws attaches its own
    // would take the first frames from it: count from 'open' on (ws has the upgrade's leftover bytes).
    let upgraded: Duplex | undefined;
    const onUpgrade = (res: IncomingMessage) => (upgraded = res.socket);
    const onOpen = () => upgraded && watch(upgraded);

    // A dialler calls this before the socket opens: the other side's hello can arrive in the same
    // TCP read as the upgrade response, so the listener must already be in place.
    const sayHello = () =>
      ws.send(
        encodeMessage({
          type: 'hello',
          protocol: opts.protocol,
          cluster: opts.cluster,
          instance: opts.instance,
          secured: !!opts.secret,
          nonce,
          role: opts.role,
          peer: self,
        }),
      );

    const fail = (err: MeshError, tellRemote: boolean) => {
      cleanup();
      // The socket is being discarded: whatever it still reports must not surface as an unhandled error.
      ws.on('error', () => {});
      if (tellRemote && ws.readyState === ws.OPEN) {
        ws.send(encodeMessage({ type: 'reject', code: err.code, message: err.message }));
      }
      ws.close(CLOSE_FOR[err.code] ?? CloseCode.POLICY, err.message.slice(0, 120));
      setTimeout(() => ws.terminate(), 500).unref();
      reject(err);
    };

    const succeed = (remote: MessageOf<'hello'>) => {
      try {
        opts.admit?.(remote.peer, remote.instance);
      } catch (err) {
        const e = isMeshError(err) ? err : meshError('BAD_FRAME', String(err));
        Object.assign(e, { details: { ...e.details, peer: remote.peer.id, name: remote.peer.name } });
        return fail(e, true);
      }
      done = true;
      // Resolve after the frames already parsed from this chunk have been collected.
      queueMicrotask(() => {
        cleanup();
        resolve({ remote: remote.peer, instance: remote.instance, role: remote.role ?? 'peer', pending });
      });
    };

    const onMessage = (data: Buffer, isBinary: boolean) => {
      if (done) {
        pending.push(data);
        return;
      }
      try {
        if (!isBinary) throw meshError('BAD_FRAME', 'text frames are not allowed');
        const msg = decodeMessage(data, opts.maxPayloadBytes);
        if (msg.type === 'reject') {
          const code = (msg.code in CLOSE_FOR ? msg.code : 'HANDSHAKE_REQUIRED') as ErrorCode;
          return fail(meshError(code, `refused by the other side: ${msg.message}`), false);
        }
        if (!hello) {
          if (msg.type !== 'hello') throw meshError('HANDSHAKE_REQUIRED', `expected hello, got "${msg.type}"`);
          try {
            checkHello(msg, opts, self);
          } catch (err) {
            // Say who was refused: the log and /cluster show the peer, not just an address.
            if (isMeshError(err)) Object.assign(err, { details: { ...err.details, peer: msg.peer.id, name: msg.peer.name } });
            throw err;
          }
          hello = msg;
          if (!opts.secret) return succeed(msg);
          const mac = proof(opts.secret, {
            cluster: opts.cluster,
            proverId: self.id,
            proverNonce: nonce!,
            verifierId: msg.peer.id,
            verifierNonce: msg.nonce!,
          });
          ws.send(encodeMessage({ type: 'auth', mac }));
          return;
        }
        if (msg.type !== 'auth') throw meshError('HANDSHAKE_REQUIRED', `expected auth, got "${msg.type}"`);
        const ok = verifyProof(
          opts.secret!,
          { cluster: opts.cluster, proverId: hello.peer.id, proverNonce: hello.nonce!, verifierId: self.id, verifierNonce: nonce! },
          msg.mac,
        );
        if (!ok) {
          throw meshError('AUTH_FAILED', `peer ${hello.peer.id} does not know the cluster secret: check --secret on both`, {
            peer: hello.peer.id,
            name: hello.peer.name,
          });
        }
        succeed(hello);
      } catch (err) {
        fail(isMeshError(err) ? err : meshError('BAD_FRAME', (err as Error).message), true);
      }
    };
    const onClose = (code: number, reason: Buffer) => {
      cleanup();
      reject(meshError('LINK_CLOSED', `socket closed during handshake (${code} ${reason.toString()})`));
    };
    const onError = (err: Error) => {
      cleanup();
      ws.terminate();
      reject(meshError('PEER_UNREACHABLE', err.message));
    };
    const timer = setTimeout(
      () => fail(meshError('HANDSHAKE_TIMEOUT', `no handshake within ${opts.timeoutMs} ms`), true),
      opts.timeoutMs,
    );
    function cleanup() {
      clearTimeout(timer);
      ws.off('message', onMessage);
      ws.off('close', onClose);
      ws.off('error', onError);
      ws.off('open', sayHello);
      ws.off('upgrade', onUpgrade);
      ws.off('open', onOpen);
      raw?.off('data', onBytes);
    }
    if (socket) watch(socket);
    else {
      ws.once('upgrade', onUpgrade);
      ws.once('open', onOpen);
    }
    ws.on('message', onMessage);
    ws.on('close', onClose);
    ws.on('error', onError);
    if (ws.readyState === ws.OPEN) sayHello();
    else ws.once('open', sayHello);
  });
}
