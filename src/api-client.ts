// How the CLI commands present themselves to a peer's API: the key from --api-key or MLX_MESH_API_KEY
// as a Bearer header, and a refused key turned into an error that says what to pass.
import { type MeshError, meshError } from '../core/errors.ts';

/** The `--api-key` option of every command that calls a peer's API. */
export const API_KEY_OPTION = { 'api-key': { type: 'string' } } as const;

export const API_KEY_HELP = '--api-key <key>       the API key the peer was started with (or MLX_MESH_API_KEY)';

export function apiKeyFrom(flag: string | undefined): string | undefined {
  return flag || process.env.MLX_MESH_API_KEY || undefined;
}

export function authHeaders(key: string | undefined): Record<string, string> {
  return key ? { authorization: `Bearer ${key}` } : {};
}

/** The error for a 401 from `url`. */
export function keyRefused(url: string, key: string | undefined): MeshError {
  return meshError(
    'API_KEY_REFUSED',
    key
      ? `${url} refused the API key: pass the key that peer was started with (--api-key or MLX_MESH_API_KEY)`
      : `${url} needs an API key: pass --api-key <key> or set MLX_MESH_API_KEY`,
  );
}
