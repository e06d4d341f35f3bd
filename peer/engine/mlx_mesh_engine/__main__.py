"""`python -m mlx_mesh_engine`: serve frames on stdin/stdout, logs on stderr.

The real stdout is kept for frames only and fd 1 is pointed at stderr, so a stray print from a
library can never corrupt the frame stream.
"""

import logging
import os
import signal
import sys


def main() -> int:
    frames_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    logging.basicConfig(stream=sys.stderr, level=os.environ.get("MLX_MESH_ENGINE_LOG", "INFO"), format="%(levelname)s %(name)s: %(message)s")
    # The parent decides this process's lifetime (stdin EOF or shutdown), not a terminal's Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from .blas import load_blas

    load_blas()  # before mlx is imported, or it would not take effect
    try:
        import cbor2  # noqa: F401
        import mlx.core  # noqa: F401
    except ImportError as err:
        sys.stderr.write(f"mlx_mesh_engine: cannot import {err.name}: {err}. Run `mlx-mesh setup` to install the engine's Python packages.\n")
        return 3

    from .server import serve

    stdin = sys.stdin.buffer
    return serve(stdin, frames_out)


if __name__ == "__main__":
    sys.exit(main())
