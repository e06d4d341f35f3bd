// WebSocket close codes used between peers. 1xxx are the RFC's; 4xxx are ours.
export const CloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  POLICY: 1008, // a frame failed validation
  TOO_BIG: 1009,
  TRY_AGAIN: 1013, // too many sockets from one address still in their handshake
  PROTOCOL_MISMATCH: 4001,
  CLUSTER_MISMATCH: 4002,
  DUPLICATE_LINK: 4003, // a second link to the same peer lost the tie-break
  SELF: 4004,
  DUPLICATE_ID: 4005,
  HANDSHAKE_TIMEOUT: 4006,
  HEARTBEAT_TIMEOUT: 4007,
  AUTH_FAILED: 4008,
} as const;
