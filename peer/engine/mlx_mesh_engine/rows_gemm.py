"""native/rows_gemm.c: a few rows by a weight matrix at memory speed, put in front of the system BLAS.

A batched decode step multiplies 2-8 rows by each weight matrix; BLIS's small-matrix path takes
1.4-2.4x the time of one row for them on the CPUs measured, where reading the matrix once should be
all it costs (the C file says how). The file is compiled for this CPU (`cc -O3 -march=native`) the
first time an engine loads a system BLAS and kept in ~/.cache/mlx-mesh/native under a name made of a
hash of the source, the compiler and the CPU's flags; later engines load that. Without a C compiler
(or with MLX_MESH_ROWS_GEMM=0) the system BLAS serves every product, as before. It runs on one core,
so it stands aside when the BLAS runs several threads (BLIS_NUM_THREADS set above 1 by the user;
blas.py gives BLIS one thread otherwise).

Loaded with RTLD_GLOBAL before the system BLAS is made global, so libmlx's `cblas_sgemm` resolves to
it; it hands every product it does not take to the system BLAS's `cblas_sgemm`.
"""

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

log = logging.getLogger("mlx_mesh_engine")

SOURCE = Path(__file__).with_name("native") / "rows_gemm.c"


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mlx-mesh" / "native"


def build(cc: Optional[str] = None, cache_dir: Optional[Path] = None) -> Optional[Path]:
    """The compiled library for this CPU, built on first use; None (and a log line) when it cannot be."""
    cc = cc or os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        log.info("rows_gemm: no C compiler (cc) found; the system BLAS serves every product")
        return None
    try:
        source = SOURCE.read_bytes()
        version = subprocess.run([cc, "--version"], capture_output=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as err:
        log.warning("rows_gemm: cannot use the C compiler %s (%s)", cc, err)
        return None
    key = hashlib.sha256(source + version + _cpu_flags().encode()).hexdigest()[:16]
    directory = cache_dir or _cache_dir()
    target = directory / f"rows_gemm-{key}.so"
    if target.is_file():
        return target
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # Built beside its final name and renamed into place: engines starting together never load half a file.
        fd, partial = tempfile.mkstemp(dir=directory, prefix=".rows_gemm-", suffix=".so")
        os.close(fd)
        proc = subprocess.run(
            [cc, "-O3", "-march=native", "-fPIC", "-shared", "-nostdlib", "-o", partial, str(SOURCE)],
            capture_output=True, timeout=120,
        )
        if proc.returncode != 0:
            os.unlink(partial)
            log.warning("rows_gemm: %s could not compile %s: %s", cc, SOURCE.name, proc.stderr.decode(errors="replace").strip()[-500:])
            return None
        os.replace(partial, target)
    except (OSError, subprocess.SubprocessError) as err:
        log.warning("rows_gemm: cannot build in %s (%s)", directory, err)
        return None
    return target


# The loaded library, for tests and the engine's hello.
library: Optional[ctypes.CDLL] = None
# Why it is in or out, for doctor: "on", "off: …" (set by install; "off: not tried" before).
status = "off: not tried (no system BLAS)"
# The one "off" a user can mend (install a compiler): doctor (src/doctor/local.ts) keys on "C compiler".
NO_COMPILER = "off: it could not be built (no working C compiler)"


def blas_threads(lib: ctypes.CDLL) -> int:
    """How many threads the BLAS behind will compute with: its environment variable, else its default
    (BLIS: 1, which blas.py keeps unless the user sets another; OpenBLAS: this process's cores)."""
    blis = hasattr(lib, "bli_thread_set_num_threads")
    try:
        return max(1, int(os.environ.get("BLIS_NUM_THREADS" if blis else "OPENBLAS_NUM_THREADS", "")))
    except ValueError:
        if blis:
            return 1
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def install(fallback: ctypes.CDLL) -> bool:
    """Builds and loads the library globally, handing it `fallback`'s cblas_sgemm. Must run before the
    system BLAS is loaded with RTLD_GLOBAL and before mlx is imported; returns whether it is in place."""
    global library, status
    if os.environ.get("MLX_MESH_ROWS_GEMM", "1") == "0":
        status = "off: MLX_MESH_ROWS_GEMM=0"
        return False
    threads = blas_threads(fallback)
    if threads > 1:
        # rows_gemm runs on one core; a BLAS with several threads reads a matrix with all of them.
        log.info("rows_gemm: the BLAS runs %d threads here; rows_gemm (one thread) stands aside", threads)
        status = f"off: the BLAS runs {threads} threads"
        return False
    path = build()
    if path is None:
        status = NO_COMPILER
        return False
    try:
        lib = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    except OSError as err:
        log.warning("rows_gemm: cannot load %s (%s)", path, err)
        status = f"off: {path} cannot be loaded"
        return False
    lib.rows_gemm_set_fallback(ctypes.cast(fallback.cblas_sgemm, ctypes.c_void_p))
    lib.rows_gemm_calls.restype = ctypes.c_longlong
    library = lib
    status = "on"
    return True


def calls() -> int:
    """Products the library has computed in this process (0 when it is not loaded)."""
    return int(library.rows_gemm_calls()) if library is not None else 0


def speed(trials: int = 7) -> Optional[float]:
    """Time of 2 rows by a 16 MB weight matrix through MLX (so through this library) ÷ the time of two
    one-row products (the BLAS's), best of `trials` interleaved; None when the library is not in place.
    Below 1 is what it is for (0.67-0.74 on an AMD EPYC Zen 3 core; 3.8 with the loads this file once had);
    1 or more means it costs batched decode time on this CPU, which doctor reports. Needs mlx imported
    after install(); ~20 ms, so only doctor asks for it."""
    if library is None:
        return None
    import time

    import mlx.core as mx

    w = mx.random.normal((4096, 1024))
    one, two = mx.random.normal((1, 1024)), mx.random.normal((2, 1024))
    mx.eval(w, one, two)

    def timed(f) -> float:
        started = time.perf_counter()
        f()
        return time.perf_counter() - started

    pair = lambda: mx.eval(two @ w.T)
    singles = lambda: [mx.eval(one @ w.T) for _ in range(2)]
    pair(), singles()  # warm
    pairs, single = [], []
    for _ in range(trials):
        pairs.append(timed(pair))
        single.append(timed(singles))
    return min(pairs) / min(single)
