"""`python -m mlx_mesh_engine`: serve frames on stdin/stdout, logs on stderr.

The real stdout is kept for frames only and fd 1 is pointed at stderr, so a stray print from a
library can never corrupt the frame stream.
"""

import fcntl
import logging
import os
import signal
import sys


# Linux pipes hold 64 KiB: a 16 MiB tensor would cross in 256 wake-ups of each side. 1 MiB is the
# most an unprivileged process may ask for (/proc/sys/fs/pipe-max-size).
_PIPE_BYTES = 1 << 20


def _widen_pipes(*fds: int) -> None:
    setsize = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux only; macOS pipes grow on their own
    if setsize is None:
        return
    for fd in fds:
        try:
            fcntl.fcntl(fd, setsize, _PIPE_BYTES)
        except OSError:
            pass  # not a pipe (a file or a terminal in a manual run), or a lower limit on this system


def main() -> int:
    from .allocator import preload

    preload()  # may restart this process with jemalloc: before anything else
    frames_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    logging.basicConfig(stream=sys.stderr, level=os.environ.get("MLX_MESH_ENGINE_LOG", "INFO"), format="%(levelname)s %(name)s: %(message)s")
    # The parent decides this process's lifetime (stdin EOF or shutdown), not a terminal's Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from .blas import load_blas
    from .sched import apply as apply_sched

    load_blas()  # before mlx is imported, or it would not take effect
    apply_sched()  # before mlx starts its threads, so they inherit it
    try:
        import cbor2  # noqa: F401
        import mlx.core  # noqa: F401
    except ImportError as err:
        sys.stderr.write(f"mlx_mesh_engine: cannot import {err.name}: {err}. Run `mlx-mesh setup` to install the engine's Python packages.\n")
        return 3

    from .server import serve

    _widen_pipes(0, frames_out.fileno())

    stdin = sys.stdin.buffer
    return serve(stdin, frames_out)


if __name__ == "__main__":
    sys.exit(main())
