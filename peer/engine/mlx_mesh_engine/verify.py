"""`python -m mlx_mesh_engine.verify`: does this interpreter run the engine?

Imports what the engine imports and runs one small MLX computation, so a venv whose wheels do not
match the CPU or glibc fails at `setup` rather than at the first generation. Loads the BLAS as the
engine does and says which (`blas`, as in the engine's hello), and whether rows_gemm is in front of it;
`malloc` is the allocator the engine would preload (allocator.py), or "system";
`--time-rows-gemm` (doctor) adds `rows_gemm_speed`, its timed speed against the BLAS. Prints one JSON line.
"""

import json
import os
import sys
from importlib import metadata
from typing import Any, Dict

PACKAGES = ("mlx", "mlx-lm", "transformers", "cbor2")


def versions() -> Dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def verify(time_rows_gemm: bool = False) -> Dict[str, Any]:
    """What the engine needs, imported and run once; with `time_rows_gemm` (doctor), rows_gemm's speed too."""
    out: Dict[str, Any] = {"versions": versions()}
    try:
        from . import allocator, blas, rows_gemm

        blas.load_blas()  # as the engine does, before mlx is imported
        import mlx.core as mx
        import mlx_lm  # noqa: F401  (the engine needs it; importing it is the check)
        import cbor2  # noqa: F401

        total = (mx.array([1.0, 2.0, 3.0]) * 2).sum().item()
        if total != 12.0:
            raise RuntimeError(f"MLX computed {total} for 12.0")
        gpu = mx.default_device().type == mx.gpu
        metal = bool(mx.metal.is_available())
        out["device"] = ("gpu" if gpu else "cpu") + (" (Metal)" if gpu and metal else "")
        out["metal"] = metal
        out["blas"] = blas.active or "bundled"
        out["rows_gemm"] = rows_gemm.status
        # The malloc the engine would run with (it preloads it when it starts; this process does not).
        lib = allocator.chosen()
        out["malloc"] = os.path.basename(lib) if lib and os.path.isfile(lib) else "system"
        ratio = rows_gemm.speed() if time_rows_gemm else None
        if ratio is not None:
            out["rows_gemm_speed"] = round(ratio, 2)
        out["ok"] = True
    except Exception as err:  # any failure is the answer, reported as data
        out["ok"] = False
        out["error"] = f"{type(err).__name__}: {err}"
    return out


if __name__ == "__main__":
    print(json.dumps(verify(time_rows_gemm="--time-rows-gemm" in sys.argv[1:])))
