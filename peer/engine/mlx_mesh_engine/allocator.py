"""The engine's malloc on Linux, chosen with MLX_MESH_MALLOC: jemalloc when the system has it.

MLX's CPU backend allocates and frees many small objects in every operation of every step (array
descriptors, shared pointers, the scheduler's closures, the graph's hash sets). In a profile of a
pinned two-peer mesh decoding four streams, glibc's malloc and free took ~9% of the last stage's
engine, most of it merging free chunks (`malloc_consolidate`, `unlink_chunk`). With jemalloc a
stage's step takes 5-12% less on the same machine, one row or two (bench/README.md); the numbers it
computes are the same, bit for bit.

Transparent huge pages are the user's choice: MALLOC_CONF=thp:always (jemalloc's own setting, kept
through the restart) backs the engine's memory with 2 MiB pages, so a step's read of every weight
needs a few hundred TLB entries instead of tens of thousands. On a 2-core Xeon VM it gave one stream
through 2 pinned peers 2.8% more tokens/s (median of 6 alternating rounds) and raised peak RSS by 5-10%
(2 MiB pages make jemalloc's partly used regions resident), for the mesh and mlx_lm alike; since
memory is what a mesh is for, it is not the default. The engine's `stats` reports `huge_pages_bytes`.

A process's malloc is fixed when it starts, so an engine that finds jemalloc re-executes itself once
with it in LD_PRELOAD (same pid, same pipes, same arguments) before it imports anything heavy. The
bench's single-process `mlx_lm` does the same, so the ratios it reports compare like with like.

MLX_MESH_MALLOC: "auto" (the default) = jemalloc if a system library is found (Debian/Ubuntu:
libjemalloc2), else the system's malloc; "system" = the system's; anything else = the path of a
malloc library to preload. macOS: nothing to choose (the system's malloc, and Metal's buffers).
"""

import logging
import os
import sys
import sysconfig
from typing import Optional

log = logging.getLogger("mlx_mesh_engine")

_NAME = "libjemalloc.so.2"


def _library_dirs() -> list:
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    dirs = [f"/usr/lib/{multiarch}", f"/lib/{multiarch}"] if multiarch else []
    return dirs + ["/usr/lib64", "/usr/lib", "/usr/local/lib", "/lib64", "/lib"]


def chosen(env=None) -> Optional[str]:
    """The malloc library this process should run with, or None for the system's."""
    env = os.environ if env is None else env
    if not sys.platform.startswith("linux"):
        return None
    setting = env.get("MLX_MESH_MALLOC", "auto").strip() or "auto"
    if setting == "system":
        return None
    if setting != "auto":
        return setting
    for d in _library_dirs():
        path = os.path.join(d, _NAME)
        if os.path.isfile(path):
            return path
    return None


def active() -> str:
    """What this process runs with: the chosen library's file name if it is mapped, else "system"."""
    lib = chosen()
    if lib is None:
        return "system"
    name = os.path.basename(os.path.realpath(lib))
    try:
        with open("/proc/self/maps") as f:
            return os.path.basename(lib) if any(line.rstrip().endswith(name) for line in f) else "system"
    except OSError:
        return "system"


def preload() -> None:
    """Re-executes this process with the chosen malloc preloaded, unless it already runs with it (or
    there is none). Call it first thing: nothing done before it survives, except open descriptors."""
    lib = chosen()
    if lib is None or active() != "system" or os.environ.get("MLX_MESH_MALLOC_TRIED"):
        return
    if not os.path.isfile(lib):
        log.warning("MLX_MESH_MALLOC=%s: no such file; using the system's malloc", lib)
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = ":".join(p for p in (lib, env.get("LD_PRELOAD", "")) if p)
    env["MLX_MESH_MALLOC_TRIED"] = "1"  # a library the loader refuses must not make this loop
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    except OSError as err:
        log.warning("could not restart with %s (%s); using the system's malloc", lib, err)
