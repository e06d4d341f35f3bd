// Cluster secret: a mutual HMAC-SHA256 challenge-response inside the handshake. Each side proves it
// knows the secret by MACing the other side's fresh nonce; the secret itself never crosses the wire.
// The MAC binds both nonces, both ids (in order) and the cluster, so a proof cannot be replayed on
// another socket or reflected back at its sender.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const NONCE_BYTES = 16;

export function newNonce(): Uint8Array {
  return randomBytes(NONCE_BYTES);
}

export interface ProofInput {
  cluster: string;
  /** The prover's id and nonce, then the verifier's. */
  proverId: string;
  proverNonce: Uint8Array;
  verifierId: string;
  verifierNonce: Uint8Array;
}

export function proof(secret: string, p: ProofInput): Uint8Array {
  const h = createHmac('sha256', secret);
  h.update('mlx-mesh auth v1\0');
  h.update(`${p.cluster}\0${p.proverId}\0${p.verifierId}\0`);
  h.update(p.verifierNonce);
  h.update(p.proverNonce);
  return h.digest();
}

export function verifyProof(secret: string, p: ProofInput, mac: Uint8Array): boolean {
  const want = proof(secret, p);
  return mac.byteLength === want.byteLength && timingSafeEqual(Buffer.from(mac), Buffer.from(want));
}
