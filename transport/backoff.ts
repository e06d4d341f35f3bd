// Reconnect delays: exponential from min to max with jitter, so peers that lost each other at the
// same moment do not redial in lockstep. Pure: the random source is a parameter.
export function backoffDelay(attempt: number, minMs: number, maxMs: number, random: () => number = Math.random): number {
  const base = Math.min(maxMs, minMs * 2 ** Math.max(0, attempt));
  return Math.round(base / 2 + (random() * base) / 2);
}
