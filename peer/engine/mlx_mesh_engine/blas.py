"""An optimized CBLAS for MLX's CPU build, chosen with MLX_MESH_BLAS (Linux).

The `mlx[cpu]` wheel links the reference (netlib) BLAS it bundles, an unblocked single-threaded
sgemm: a 45-token prefill of a 135M float32 model takes seconds where OpenBLAS takes a fraction of
one. libmlx resolves `cblas_sgemm` by name, and the dynamic linker searches libraries opened with
RTLD_GLOBAL before libmlx's own dependencies, so loading another CBLAS before `import mlx.core`
makes MLX use it. Another BLAS sums in another order, so greedy output equals a single-process
mlx_lm only when both run on the same BLAS (the tests' reference loads it the same way).

MLX_MESH_BLAS: "auto" (the default on Linux) = the system OpenBLAS if installed (Debian/Ubuntu:
libopenblas0-pthread), else MLX's own; "bundled" or "" = MLX's bundled BLAS; anything else = the path
of a library exporting cblas_sgemm. macOS uses Metal and Accelerate: nothing to choose there.
"""

import ctypes
import ctypes.util
import logging
import os
import sys
from typing import Optional

log = logging.getLogger("mlx_mesh_engine")

_SYSTEM_OPENBLAS = ("libopenblas.so.0", "libopenblas.so")
# What load_blas loaded, for the engine's hello; None = MLX's bundled BLAS.
active: Optional[str] = None


def _find_openblas() -> Optional[str]:
    for name in _SYSTEM_OPENBLAS:
        try:
            ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
            return name
        except OSError:
            continue
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
        found = _find_openblas()
        if found is None:
            log.warning("MLX_MESH_BLAS=auto: no system OpenBLAS found; using MLX's bundled BLAS")
            return None
        spec = found
    try:
        lib = ctypes.CDLL(spec, mode=ctypes.RTLD_GLOBAL)
    except OSError as err:
        log.warning("MLX_MESH_BLAS=%s cannot be loaded (%s); using MLX's bundled BLAS", spec, err)
        return None
    if not hasattr(lib, "cblas_sgemm"):
        log.warning("MLX_MESH_BLAS=%s exports no cblas_sgemm; using MLX's bundled BLAS", spec)
        return None
    global active
    active = spec
    log.info("BLAS: %s", spec)
    return spec
