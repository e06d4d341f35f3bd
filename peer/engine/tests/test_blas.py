"""MLX_MESH_BLAS: a library that cannot serve falls back to MLX's bundled BLAS, never a failed start;
one that does is reported in the engine's hello."""

import subprocess
import sys

import pytest

from conftest import ENGINE_DIR
from mlx_mesh_engine.framing import encode_frame, read_frame


def hello_with(blas):
    proc = subprocess.run(
        [sys.executable, "-m", "mlx_mesh_engine"],
        cwd=ENGINE_DIR, input=encode_frame({"id": 1, "op": "hello"}), capture_output=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "MLX_MESH_BLAS": blas},
    )
    import io

    assert proc.returncode == 0, proc.stderr
    return read_frame(io.BytesIO(proc.stdout)), proc.stderr.decode()


def test_unset_uses_the_bundled_blas():
    reply, _ = hello_with("")
    assert reply["ok"] and reply["blas"] == "bundled"


def test_a_missing_library_falls_back_with_a_warning():
    reply, err = hello_with("/nonexistent/libblas.so")
    assert reply["ok"] and reply["blas"] == "bundled"
    assert "cannot be loaded" in err


def test_a_library_without_cblas_falls_back():
    reply, err = hello_with("libm.so.6")
    assert reply["ok"] and reply["blas"] == "bundled"
    assert "no cblas_sgemm" in err


def test_after_mlx_is_imported_it_refuses():
    import mlx.core  # noqa: F401
    from mlx_mesh_engine.blas import load_blas

    assert load_blas("auto") is None


def _loadable(name):
    import ctypes

    try:
        ctypes.CDLL(name)
        return True
    except OSError:
        return False


def _run(code, env_extra=None, prefix=()):
    env = {"PATH": "/usr/bin:/bin", **(env_extra or {})}
    proc = subprocess.run([*prefix, sys.executable, "-c", code], cwd=ENGINE_DIR, capture_output=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode().strip()


@pytest.mark.skipif(not _loadable("libblis.so.4"), reason="BLIS is not installed (apt install libblis4-pthread)")
def test_auto_takes_blis_first_with_one_thread_unless_set():
    reply, _ = hello_with("auto")
    assert reply["ok"] and reply["blas"].split(" + ")[0] == "libblis.so.4"
    code = "import os; from mlx_mesh_engine.blas import load_blas; load_blas('auto'); print(os.environ['BLIS_NUM_THREADS'])"
    # One thread whatever the cores: BLIS's spinning threads stall when they do not all hold a core (blas.py).
    assert _run(code) == "1"
    assert _run(code, prefix=("taskset", "-c", "0")) == "1"
    assert _run(code, {"BLIS_NUM_THREADS": "3"}) == "3", "a thread count the user set is kept"


@pytest.mark.skipif(not _loadable("libopenblas.so.0"), reason="OpenBLAS is not installed (apt install libopenblas0-pthread)")
def test_auto_falls_back_to_openblas_without_blis():
    code = (
        "from mlx_mesh_engine import blas; "
        "blas._AUTO = (('libblis-missing.so.4', 'BLIS'),) + blas._AUTO[1:]; "
        "print(blas.load_blas('auto'))"
    )
    assert _run(code) == "libopenblas.so.0"


@pytest.mark.skipif(not _loadable("libblis.so.4"), reason="BLIS is not installed (apt install libblis4-pthread)")
def test_blis_packs_for_a_prompt_chunk_and_not_for_a_decode_step(stories_dir):
    # A Shard's forward sets BLIS's packing by its rows before it is evaluated; a model wrapped with
    # hint_rows_of (the single-process reference) does the same.
    code = (
        "import ctypes, sys; from mlx_mesh_engine import blas; blas.load_blas('auto'); "
        "lib = ctypes.CDLL('libblis.so.4'); flag = ctypes.c_bool(); "
        "get = lambda: (lib.bli_pack_get_pack_a(ctypes.byref(flag)), flag.value)[1]; "
        "from mlx_mesh_engine.shard import Shard; import mlx.core as mx; "
        f"s = Shard({str(stories_dir)!r}, 0, 2); c = s.make_cache(); seen = []; "
        "mx.eval(s.forward(c, list(range(1, 40)), None)); seen.append(get()); "
        "mx.eval(s.forward(c, [5], None)); seen.append(get()); "
        "from mlx_lm import load; m, _ = load(" + repr(str(stories_dir)) + "); blas.hint_rows_of(m); "
        "m(mx.array([list(range(1, 20))])); seen.append(get()); "
        "m(mx.array([[3]])); seen.append(get()); print(seen)"
    )
    assert _run(code) == "[True, False, True, False]"
