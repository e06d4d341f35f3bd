"""An optimized CBLAS for MLX's CPU build, chosen with MLX_MESH_BLAS (Linux).

The `mlx[cpu]` wheel links the reference (netlib) BLAS it bundles, an unblocked single-threaded
sgemm: a 45-token prefill of a 135M float32 model takes seconds where an optimized BLAS takes a
fraction of one. libmlx resolves `cblas_sgemm` by name, and the dynamic linker searches libraries
opened with RTLD_GLOBAL before libmlx's own dependencies, so loading another CBLAS before
`import mlx.core` makes MLX use it. Another BLAS sums in another order, so greedy output equals a
single-process mlx_lm only when both run on the same BLAS (the tests' reference loads it the same way).

MLX_MESH_BLAS: "auto" (the default on Linux) = the first system library found of BLIS (Debian/Ubuntu:
libblis4-pthread) and OpenBLAS (libopenblas0-pthread), else MLX's own; "bundled" or "" = MLX's
bundled BLAS; anything else = the path of a library exporting cblas_sgemm. macOS uses Metal and
Accelerate: nothing to choose there. In front of the chosen library goes rows_gemm (rows_gemm.py),
which takes the products of a few rows by a weight matrix and hands it every other one.

Why BLIS first: decoding multiplies a few rows by every weight matrix, and there BLIS is the faster
of the two on the x86 machines measured: one row by a float32 576x1536 matrix 0.32 ms against
OpenBLAS's 0.54, four rows 0.47 against 1.06 (OpenBLAS packs the whole matrix for any gemm); a
1024-token prefill of 15 layers 5.7 s against 9.3 s, one core each.

BLIS runs BLIS_NUM_THREADS threads, 1 unless the user sets it. Debian's BLIS (pthreads) starts its
threads anew for every product and they meet at barriers by spinning, so a product waits until all
of its threads hold a core at once. When they do not (another engine on the machine, as in `demo`;
a kernel that places a new thread beside its parent), each barrier costs a scheduler tick: on a
2-vCPU VM with 2 threads, a 16-row forward of 15 layers of the default model took 2.7-6.1 s instead
of 54 ms and `demo`'s first token 0.5-8.3 s instead of 0.33-0.36 s, where the best a second thread
gave was 1.2x on a 1024-row chunk (3.2 against 3.8 s). One thread also lets rows_gemm (one thread)
take decode's few-row products. A machine that runs one engine on many idle cores can still set
BLIS_NUM_THREADS to its cores for faster prompts.
"""

import ctypes
import ctypes.util
import logging
import os
import sys
from typing import Optional

from . import rows_gemm

log = logging.getLogger("mlx_mesh_engine")

# What "auto" tries, in order: (library name, what it is).
_AUTO = (("libblis.so.4", "BLIS"), ("libopenblas.so.0", "OpenBLAS"), ("libopenblas.so", "OpenBLAS"))
# What load_blas loaded, for the engine's hello; None = MLX's bundled BLAS.
active: Optional[str] = None

# BLIS's switches for packing matrices in its small-matrix ("sup") path, when the loaded BLAS has them.
_pack_setters = None
_packing: Optional[bool] = None
# From this many rows on, a forward's matrix products ask BLIS to pack. Unpacked, BLIS multiplies a
# few rows faster; packed, many: on an AMD EPYC core, 256 rows by a 4096 x 1024 float32 matrix take
# 25.5 ms packed and 69.4 unpacked (128 rows: 14.1 / 34.8, 16: 3.3 / 4.1), but 2 rows 2.1 / 1.05 and
# 8 rows 2.7 / 2.0 (bench/README.md). From 512 rows BLIS does not take that path: the same either way.
PACK_FROM_ROWS = 16


def _find_system_blas() -> Optional[str]:
    for name, kind in _AUTO:
        try:
            ctypes.CDLL(name)  # only to see it is there: load_blas makes it global
        except OSError:
            continue
        if kind == "BLIS":
            # BLIS reads it when its first operation starts, after this; 1 is its own default too,
            # set here so rows_gemm and the engine's hello see it.
            os.environ.setdefault("BLIS_NUM_THREADS", "1")
        return name
    return ctypes.util.find_library("openblas")


def load_blas(spec: Optional[str] = None) -> Optional[str]:
    """Loads the CBLAS that `spec` (default: $MLX_MESH_BLAS) names; returns it, or None for MLX's own.

    Must run before mlx.core is imported; afterwards it would change nothing, so it refuses.
    """
    if spec is None:
        spec = os.environ.get("MLX_MESH_BLAS", "auto" if sys.platform.startswith("linux") else "")
    if spec in ("", "bundled"):
        return None
    if "mlx.core" in sys.modules:
        log.warning("MLX_MESH_BLAS=%s ignored: mlx is already imported", spec)
        return None
    if spec == "auto":
        found = _find_system_blas()
        if found is None:
            log.warning("MLX_MESH_BLAS=auto: no system BLIS or OpenBLAS found; using MLX's bundled BLAS")
            return None
        spec = found
    try:
        lib = ctypes.CDLL(spec)
    except OSError as err:
        log.warning("MLX_MESH_BLAS=%s cannot be loaded (%s); using MLX's bundled BLAS", spec, err)
        return None
    if not hasattr(lib, "cblas_sgemm"):
        log.warning("MLX_MESH_BLAS=%s exports no cblas_sgemm; using MLX's bundled BLAS", spec)
        return None
    # rows_gemm goes into the global scope first, so libmlx's cblas_sgemm is its; then the BLAS behind it.
    with_rows = rows_gemm.install(lib)
    ctypes.CDLL(spec, mode=ctypes.RTLD_GLOBAL)
    global active, _pack_setters
    active = f"{spec} + rows_gemm" if with_rows else spec
    if hasattr(lib, "bli_pack_set_pack_a") and hasattr(lib, "bli_pack_set_pack_b"):
        _pack_setters = (lib.bli_pack_set_pack_a, lib.bli_pack_set_pack_b)
    log.info("BLAS: %s", active)
    return spec


def rows_hint(rows: int) -> None:
    """Before evaluating a forward whose matrix products multiply `rows` rows (batch x positions): lets
    BLIS pack its matrices for many rows and not for a few. The setting is BLIS's, global to the
    process, and read when each product starts, so it holds for the forward evaluated next. A no-op
    for any other BLAS."""
    global _packing
    if _pack_setters is None:
        return
    pack = rows >= PACK_FROM_ROWS
    if pack != _packing:
        for setter in _pack_setters:
            setter(ctypes.c_bool(pack))
        _packing = pack


def hint_rows_of(model) -> None:
    """Makes an mlx_lm model call rows_hint with its input's rows on every call, as a Shard does, so a
    single-process reference (tests, bench) computes the same sums as the mesh."""
    if _pack_setters is None:
        return
    cls = type(model)

    def __call__(self, inputs, *args, **kwargs):
        rows_hint(int(inputs.shape[0]) * int(inputs.shape[1]) if inputs.ndim >= 2 else int(inputs.shape[0]))
        return cls.__call__(self, inputs, *args, **kwargs)

    model.__class__ = type(cls.__name__, (cls,), {"__call__": __call__})
