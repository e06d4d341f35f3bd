"""native/rows_gemm.c: right for every shape and stride it takes, the same numbers for a row whatever
rows share its product, every other product handed to the BLAS behind it; and in front of MLX."""

import ctypes
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ENGINE_DIR
from mlx_mesh_engine import rows_gemm

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
P, F = ctypes.c_void_p, ctypes.c_float


def _blas():
    for name in ("libblis.so.4", "libopenblas.so.0"):
        try:
            return ctypes.CDLL(name)
        except OSError:
            pass
    return None


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    path = rows_gemm.build(cache_dir=tmp_path_factory.mktemp("native"))
    if path is None:
        pytest.skip("no C compiler: rows_gemm is not built here")
    lib = ctypes.CDLL(str(path))  # local: this process's MLX (if any) is not affected
    blas = _blas()
    if blas is None:
        pytest.skip("no system BLAS to stand behind it")
    lib.rows_gemm_set_fallback(ctypes.cast(blas.cblas_sgemm, ctypes.c_void_p))
    lib.rows_gemm_calls.restype = ctypes.c_longlong
    return lib


def sgemm(lib, a, b, trans_b, c, alpha=1.0, beta=0.0, order=ROW_MAJOR):
    m, k = a.shape
    n = b.shape[0] if trans_b == TRANS else b.shape[1]
    lib.cblas_sgemm(order, NO_TRANS, trans_b, m, n, k, F(alpha), P(a.ctypes.data), a.strides[0] // 4, P(b.ctypes.data), b.strides[0] // 4,
                    F(beta), P(c.ctypes.data), c.strides[0] // 4)


def product(a, b, trans_b):
    return a.astype(np.float64) @ (b.T if trans_b == TRANS else b).astype(np.float64)


@pytest.mark.parametrize("trans_b", [TRANS, NO_TRANS])
@pytest.mark.parametrize("m", [2, 3, 4, 5, 8])
@pytest.mark.parametrize("n,k", [(576, 1536), (1537, 259), (300, 577), (4099, 256)])
def test_products_equal_float64_to_rounding(lib, trans_b, m, n, k):
    rng = np.random.default_rng(m * 1000 + n + k)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if trans_b == TRANS else (k, n), dtype=np.float32)
    c = np.full((m, n), np.nan, np.float32)
    before = lib.rows_gemm_calls()
    sgemm(lib, a, b, trans_b, c)
    assert lib.rows_gemm_calls() == before + 1, "taken by rows_gemm, not handed on"
    want = product(a, b, trans_b)
    assert np.abs(c - want).max() <= 1e-5 * np.abs(want).max() * np.sqrt(k)


@pytest.mark.parametrize("trans_b", [TRANS, NO_TRANS])
def test_a_row_gets_the_same_numbers_in_any_batch(lib, trans_b):
    rng = np.random.default_rng(7)
    n, k = 1029, 600
    b = rng.standard_normal((n, k) if trans_b == TRANS else (k, n), dtype=np.float32)
    rows = rng.standard_normal((8, k), dtype=np.float32)
    pair = np.zeros((2, n), np.float32)
    sgemm(lib, rows[4:6], b, trans_b, pair)
    for m in (3, 6, 8):
        c = np.zeros((m, n), np.float32)
        batch = np.ascontiguousarray(np.roll(rows, (m - 1) - 5, axis=0)[:m])  # row 5 last
        sgemm(lib, batch, b, trans_b, c)
        assert np.array_equal(c[m - 1], pair[1]), f"row differs in a batch of {m}"


def test_strides_alpha_and_beta(lib):
    rng = np.random.default_rng(3)
    big_a = rng.standard_normal((3, 700), dtype=np.float32)
    big_w = rng.standard_normal((520, 700), dtype=np.float32)
    a, w = big_a[:, :600], big_w[:, :600]  # lda = ldb = 700 > k
    c0 = rng.standard_normal((3, 530), dtype=np.float32)
    c = c0.copy()
    sgemm(lib, a, w, TRANS, c[:, :520], alpha=0.5, beta=2.0)
    want = 0.5 * product(a, w, TRANS) + 2.0 * c0[:, :520]
    assert np.abs(c[:, :520] - want).max() < 1e-3
    assert np.array_equal(c[:, 520:], c0[:, 520:]), "columns past N untouched"


def test_other_products_go_to_the_blas_behind(lib):
    rng = np.random.default_rng(5)
    cases = [
        (rng.standard_normal((16, 512), dtype=np.float32), rng.standard_normal((600, 512), dtype=np.float32), TRANS),  # many rows
        (rng.standard_normal((1, 512), dtype=np.float32), rng.standard_normal((600, 512), dtype=np.float32), TRANS),  # one row
        (rng.standard_normal((1, 64), dtype=np.float32), rng.standard_normal((900, 64), dtype=np.float32), TRANS),  # attention's size
        (rng.standard_normal((2, 512), dtype=np.float32), rng.standard_normal((512, 300), dtype=np.float32), NO_TRANS),
    ]
    for i, (a, b, t) in enumerate(cases):
        n = b.shape[0] if t == TRANS else b.shape[1]
        c = np.ones((a.shape[0], n), np.float32)
        before = lib.rows_gemm_calls()
        beta = 1.0 if i == 3 else 0.0  # C as an input: not taken
        sgemm(lib, a, b, t, c, beta=beta)
        assert lib.rows_gemm_calls() == before, f"case {i} should be handed on"
        assert np.abs(c - (product(a, b, t) + beta)).max() < 1e-3


@pytest.mark.parametrize("trans_b", [TRANS, NO_TRANS])
def test_two_rows_cost_less_than_two_single_row_products(lib, trans_b):
    """What the kernel is for: a 64-75 MB matrix read once for 2 rows, not twice. (A build that lost its
    vector loads once took 12x the time of one row here.) Best of several interleaved runs: a ratio in
    the same moment, not an absolute time."""
    import time

    rng = np.random.default_rng(11)
    n, k = (4096, 4096) if trans_b == TRANS else (32768, 576)  # a layer's matrix; an output head
    b = rng.standard_normal((n, k) if trans_b == TRANS else (k, n), dtype=np.float32)
    two, one = rng.standard_normal((2, k), dtype=np.float32), rng.standard_normal((1, k), dtype=np.float32)
    c2, c1 = np.zeros((2, n), np.float32), np.zeros((1, n), np.float32)
    blas = _blas()

    def timed(f):
        t = time.perf_counter()
        f()
        return time.perf_counter() - t

    def single_rows():  # what two requests stepped one by one cost: the BLAS's one-row product, twice
        for _ in range(2):
            blas.cblas_sgemm(ROW_MAJOR, NO_TRANS, trans_b, 1, n, k, F(1.0), P(one.ctypes.data), k, P(b.ctypes.data), b.strides[0] // 4,
                             F(0.0), P(c1.ctypes.data), n)

    pair, singles = [], []
    for _ in range(7):
        pair.append(timed(lambda: sgemm(lib, two, b, trans_b, c2)))
        singles.append(timed(single_rows))
    assert min(pair) < min(singles), f"2 rows {min(pair) * 1e3:.1f} ms, 2 x 1 row {min(singles) * 1e3:.1f} ms"


@pytest.mark.skipif(_blas() is None, reason="no system BLAS")
def test_the_engine_reports_it_and_mlx_computes_with_it():
    code = (
        "import logging; logging.basicConfig(level=logging.INFO); from mlx_mesh_engine import blas, rows_gemm; blas.load_blas('auto'); print(blas.active); "
        "import mlx.core as mx; w = mx.random.normal((1536, 576)); x = mx.random.normal((2, 1, 576)); "
        "mx.eval(x @ w.T); print(rows_gemm.calls()); print(rows_gemm.speed())"
    )
    def run(threads):
        env = {"PATH": "/usr/bin:/bin", "BLIS_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}
        proc = subprocess.run([sys.executable, "-c", code], cwd=ENGINE_DIR, capture_output=True, timeout=120, env=env)
        assert proc.returncode == 0, proc.stderr
        active, calls, speed = proc.stdout.decode().splitlines()
        return active, int(calls), speed, proc.stderr.decode()

    if rows_gemm.build() is None:
        pytest.skip("no C compiler")
    active, calls, speed, _ = run("1")
    assert active.endswith(" + rows_gemm"), active
    assert calls == 1, "the batch of 2 rows by the weight was rows_gemm's"
    assert float(speed) < 1, f"what doctor reports: 2 rows through MLX in {speed}x the time of two single rows"
    # A BLAS with several threads reads a matrix with all of them: the one-thread kernel stands aside.
    active, calls, speed, err = run("2")
    assert "rows_gemm" not in active and calls == 0 and speed == "None"
    assert "stands aside" in err


@pytest.mark.skipif(_blas() is None, reason="no system BLAS")
def test_verify_times_it_only_when_doctor_asks():
    if rows_gemm.build() is None:
        pytest.skip("no C compiler")
    env = {"PATH": "/usr/bin:/bin", "BLIS_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}

    def verify(*flags):
        proc = subprocess.run([sys.executable, "-m", "mlx_mesh_engine.verify", *flags], cwd=ENGINE_DIR, capture_output=True, timeout=120, env=env)
        return json.loads(proc.stdout.decode().strip().splitlines()[-1])

    plain = verify()
    assert plain["rows_gemm"] == "on" and "rows_gemm_speed" not in plain, "join's check does not spend time on it"
    timed = verify("--time-rows-gemm")
    assert 0 < timed["rows_gemm_speed"] < 1, timed


@pytest.mark.skipif(_blas() is None, reason="no system BLAS")
def test_without_a_working_compiler_the_engine_starts_on_the_blas_alone(tmp_path):
    # A compiler that fails, and a cache directory that cannot be written: each leaves rows_gemm out.
    assert rows_gemm.build(cc="/bin/false", cache_dir=tmp_path) is None
    readonly = tmp_path / "ro"
    readonly.mkdir(mode=0o500)
    if os.geteuid() != 0:  # root writes anywhere
        assert rows_gemm.build(cache_dir=readonly / "native") is None
    code = (
        "from mlx_mesh_engine import blas, rows_gemm; blas.load_blas('auto'); print(blas.active); print(rows_gemm.status); "
        "import mlx.core as mx; print(float((mx.ones((2, 300)) @ mx.ones((300, 300))).sum()))"
    )
    env = {"PATH": "/usr/bin:/bin", "CC": "/bin/false", "XDG_CACHE_HOME": str(tmp_path / "empty-cache"), "BLIS_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ENGINE_DIR, capture_output=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    active, status, total = proc.stdout.decode().splitlines()
    assert "rows_gemm" not in active and active
    assert status == rows_gemm.NO_COMPILER and "C compiler" in status, "what doctor keys its advice on"
    assert float(total) == 2 * 300 * 300
    assert b"could not compile" in proc.stderr
