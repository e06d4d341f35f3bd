// The first exchange on every socket: both sides send `hello` at once and check the other's
// protocol version and cluster name; with a cluster secret, both then prove they know it (`auth`).
// Nothing else is accepted before that.
import { defaults } from '../core/defaults.ts';
import { newNonce, proof, verifyProof } from './auth.ts';
import { decodeMessage, encodeMessage } from './codec.ts';
import { CloseCode } from './close-codes.ts';
import { type ErrorCode, isMeshError, meshError, MeshError } from '../core/errors.ts';
import type { MessageOf, PeerInfo } from './messages.ts';
import type { Wire } from './wire.ts';
import type { WsProtocolError } from './ws-frame.ts';

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
  pending: Buffer[][];
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

/** Runs the handshake on a freshly opened wire: hello both ways, then the proofs when there is a secret. */
export function handshake(wire: Wire, opts: HandshakeOptions): Promise<HandshakeResult> {
  return new Promise((resolve, reject) => {
    const self = opts.self();
    const nonce = opts.secret ? newNonce() : undefined;
    let hello: MessageOf<'hello'> | null = null;
    let done = false;
    const pending: Buffer[][] = [];
    // Until the handshake completes the other side is a stranger: a frame over this bound is refused
    // at its header, before any of it is buffered.
    const maxBytes = opts.preHandshakeMaxBytes ?? defaults.preHandshakeMaxBytes;
    const limit = Math.min(maxBytes, opts.maxPayloadBytes);
    wire.maxPayload = limit;
    const send = (msg: Parameters<typeof encodeMessage>[0]) => wire.send([encodeMessage(msg)]);

    const fail = (err: MeshError, tellRemote: boolean) => {
      cleanup();
      if (tellRemote && wire.isOpen) send({ type: 'reject', code: err.code, message: err.message });
      wire.close(CLOSE_FOR[err.code] ?? CloseCode.POLICY, err.message.slice(0, 120));
      setTimeout(() => wire.terminate(), 500).unref();
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
      wire.maxPayload = opts.maxPayloadBytes;
      // Resolve after the frames already parsed from this read have been collected.
      queueMicrotask(() => {
        cleanup();
        resolve({ remote: remote.peer, instance: remote.instance, role: remote.role ?? 'peer', pending });
      });
    };

    const onMessage = (data: Buffer[], isBinary: boolean) => {
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
          send({ type: 'auth', mac });
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
    const onViolation = (err: WsProtocolError) => {
      const code = err.closeCode === CloseCode.TOO_BIG ? 'FRAME_TOO_LARGE' : 'BAD_FRAME';
      fail(meshError(code, code === 'FRAME_TOO_LARGE' ? `sent a frame of over ${limit} bytes before completing the handshake` : err.message), false);
    };
    const onClose = (code: number, reason: string) => {
      cleanup();
      reject(meshError('LINK_CLOSED', `socket closed during handshake (${code} ${reason})`));
    };
    const timer = setTimeout(
      () => fail(meshError('HANDSHAKE_TIMEOUT', `no handshake within ${opts.timeoutMs} ms`), true),
      opts.timeoutMs,
    );
    function cleanup() {
      clearTimeout(timer);
      wire.off('message', onMessage);
      wire.off('close', onClose);
      wire.off('violation', onViolation);
    }
    wire.on('message', onMessage);
    wire.on('close', onClose);
    wire.on('violation', onViolation);
    send({
      type: 'hello',
      protocol: opts.protocol,
      cluster: opts.cluster,
      instance: opts.instance,
      secured: !!opts.secret,
      nonce,
      role: opts.role,
      peer: self,
    });
  });
}
