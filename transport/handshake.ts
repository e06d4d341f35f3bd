// The first exchange on every socket: both sides send `hello` at once and check the other's
// protocol version and cluster name. Nothing else is accepted before it.
import type WebSocket from 'ws';
import { decodeMessage, encodeMessage } from './codec.ts';
import { CloseCode } from './close-codes.ts';
import { type ErrorCode, isMeshError, meshError, MeshError } from './errors.ts';
import type { PeerInfo } from './messages.ts';

export interface HandshakeOptions {
  protocol: number;
  cluster: string;
  instance: string;
  self: () => PeerInfo;
  timeoutMs: number;
  maxPayloadBytes: number;
}

export interface HandshakeResult {
  remote: PeerInfo;
  instance: string;
  /** Frames that arrived right behind the hello, in order, for the link to process. */
  pending: Buffer[];
}

const CLOSE_FOR: Partial<Record<ErrorCode, number>> = {
  PROTOCOL_MISMATCH: CloseCode.PROTOCOL_MISMATCH,
  CLUSTER_MISMATCH: CloseCode.CLUSTER_MISMATCH,
  SELF_CONNECTION: CloseCode.SELF,
  DUPLICATE_ID: CloseCode.DUPLICATE_ID,
  HANDSHAKE_TIMEOUT: CloseCode.HANDSHAKE_TIMEOUT,
};

export function handshake(ws: WebSocket, opts: HandshakeOptions): Promise<HandshakeResult> {
  return new Promise((resolve, reject) => {
    let result: HandshakeResult | null = null;
    const pending: Buffer[] = [];
    // A dialler calls this before the socket opens: the other side's hello can arrive in the same
    // TCP read as the upgrade response, so the listener must already be in place.
    const sayHello = () =>
      ws.send(
        encodeMessage({ type: 'hello', protocol: opts.protocol, cluster: opts.cluster, instance: opts.instance, peer: opts.self() }),
      );

    const fail = (err: MeshError, tellRemote: boolean) => {
      cleanup();
      if (tellRemote && ws.readyState === ws.OPEN) {
        ws.send(encodeMessage({ type: 'reject', code: err.code, message: err.message }));
      }
      ws.close(CLOSE_FOR[err.code] ?? CloseCode.POLICY, err.message.slice(0, 120));
      setTimeout(() => ws.terminate(), 500).unref();
      reject(err);
    };

    const onMessage = (data: Buffer, isBinary: boolean) => {
      if (result) {
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
        if (msg.type !== 'hello') throw meshError('HANDSHAKE_REQUIRED', `expected hello, got "${msg.type}"`);
        const self = opts.self();
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
        result = { remote: msg.peer, instance: msg.instance, pending };
        // Resolve after the frames already parsed from this chunk have been collected.
        queueMicrotask(() => {
          cleanup();
          resolve(result!);
        });
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
      () => fail(meshError('HANDSHAKE_TIMEOUT', `no hello within ${opts.timeoutMs} ms`), true),
      opts.timeoutMs,
    );
    function cleanup() {
      clearTimeout(timer);
      ws.off('message', onMessage);
      ws.off('close', onClose);
      ws.off('error', onError);
      ws.off('open', sayHello);
    }
    ws.on('message', onMessage);
    ws.on('close', onClose);
    ws.on('error', onError);
    if (ws.readyState === ws.OPEN) sayHello();
    else ws.once('open', sayHello);
  });
}
