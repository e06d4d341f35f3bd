// One error class for the whole project, with a stable code per failure (listed in the README).
// Lives in core/, the ground floor, so transport, discovery, peer and src can all throw and test it.

export const ErrorCodes = {
  BAD_FRAME: 'a frame was not valid CBOR, or not a map with a known type',
  FRAME_TOO_LARGE: 'a frame exceeded the maximum payload size',
  SCHEMA: 'a message did not match its schema',
  TENSOR_SIZE: "a tensor's byte length does not match its dtype and shape",
  PROTOCOL_MISMATCH: 'the other side speaks another protocol version',
  CLUSTER_MISMATCH: 'the other side belongs to another cluster',
  HANDSHAKE_TIMEOUT: 'the other side did not complete the handshake in time',
  HANDSHAKE_REQUIRED: 'a message arrived before the handshake',
  TOO_MANY_HANDSHAKES: 'one address holds too many sockets that have not completed the handshake',
  AUTH_FAILED: 'the other side does not know the cluster secret, or one side has none',
  DUPLICATE_ID: 'two live peers report the same peer id (a cloned data dir?)',
  SELF_CONNECTION: 'a peer dialled itself',
  PEER_UNREACHABLE: 'no link could be made to a peer',
  LINK_CLOSED: 'the link closed before the operation finished',
  BAD_ARGUMENT: 'a command-line argument or option is invalid',
  PORT_IN_USE: 'a port this peer needs is held by another process',
  CHECKS_FAILED: 'doctor found a problem (each failed check names its fix)',
  API_UNREACHABLE: "a peer's HTTP API could not be reached",
  API_KEY_REFUSED: "a peer's HTTP API refused the request: no API key, or not its key",
  INSECURE_API: 'the HTTP API would listen beyond loopback without an API key',
  ENGINE_FAILED: 'the Python engine failed to start or crashed',
  ENGINE_ERROR: 'the Python engine reported an error for a request',
  ENGINE_TIMEOUT: 'the Python engine did not answer a call within its deadline',
  PYTHON_NOT_FOUND: 'no suitable Python interpreter was found',
  SETUP_FAILED: 'the managed Python environment could not be built (install or verify failed)',
  MODEL_NOT_FOUND: 'the model could not be found or read',
  UNSUPPORTED_MODEL: "the model's architecture is not one a stage runs exactly (the message lists the supported ones)",
  BAD_OFFSET: "a forward pass's offset does not match the request's KV-cache length",
  MODEL_TOO_LARGE: 'the cluster does not have enough memory for the model',
  WEIGHTS_UNAVAILABLE: "no linked peer could send the model's weights this peer's layers need",
  WEIGHTS_CHECKSUM: "weights fetched from a peer did not match the sha256 of the source's index, twice",
  PLAN_FAILED: 'the layer plan could not be loaded on every peer',
  REQUEST_FAILED: 'a generation failed part-way',
  SSH_FAILED: 'an SSH connection or remote command failed',
  HOST_KEY_MISMATCH: "a host's SSH key did not match known_hosts",
  HOST_KEY_UNKNOWN: "a host's SSH key is not in known_hosts yet",
  REMOTE_FAILED: 'a peer started over SSH did not come up, or did not stop',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export class MeshError extends Error {
  readonly code: ErrorCode;
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'MeshError';
    this.code = code;
    this.details = details;
  }
}

export function meshError(code: ErrorCode, message?: string, details?: Record<string, unknown>): MeshError {
  return new MeshError(code, message ?? ErrorCodes[code], details);
}

export function isMeshError(err: unknown, code?: ErrorCode): err is MeshError {
  return err instanceof MeshError && (code === undefined || err.code === code);
}
