import json
import os
import subprocess
import sys
from pathlib import Path

from mlx_mesh_engine.verify import verify, versions

ENGINE_DIR = Path(__file__).resolve().parents[1]


def test_verify_reports_a_working_mlx_with_versions():
    out = verify()
    assert out["ok"] is True, out
    assert out["device"].startswith(("cpu", "gpu"))
    for name in ("python", "mlx", "mlx-lm", "cbor2"):
        assert name in out["versions"]


def test_versions_match_the_engine_hello():
    from mlx_mesh_engine.server import Engine

    hello = Engine().handle({"id": 1, "op": "hello"})
    v = versions()
    assert hello["mlx"] == v["mlx"] and hello["mlx_lm"] == v["mlx-lm"]


def test_module_prints_one_json_line():
    env = {**os.environ, "PYTHONPATH": str(ENGINE_DIR)}
    r = subprocess.run([sys.executable, "-m", "mlx_mesh_engine.verify"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["ok"] is True


def _verify_in_a_fresh_process(blas_spec):
    env = {**os.environ, "PYTHONPATH": str(ENGINE_DIR), "MLX_MESH_BLAS": blas_spec}
    r = subprocess.run([sys.executable, "-m", "mlx_mesh_engine.verify"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_the_blas_is_the_one_the_engine_would_load():
    # A fresh process each: the BLAS is chosen once, before mlx is imported.
    assert _verify_in_a_fresh_process("bundled")["blas"] == "bundled"
    if sys.platform.startswith("linux"):
        # What "auto" finds on this machine, asked in another process: loading a BLAS here would change
        # the matmuls of the tests after this one.
        env = {**os.environ, "PYTHONPATH": str(ENGINE_DIR)}
        find = "from mlx_mesh_engine.blas import _find_system_blas; print(_find_system_blas() or 'bundled')"
        expected = subprocess.run([sys.executable, "-c", find], env=env, capture_output=True, text=True, timeout=60).stdout.strip()
        assert _verify_in_a_fresh_process("auto")["blas"].split(" + ")[0] == expected


def test_a_missing_import_is_reported_not_raised(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_mlx_lm(name, *args, **kwargs):
        if name == "mlx_lm":
            raise ImportError("No module named 'mlx_lm'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mlx_lm)
    out = verify()
    assert out["ok"] is False
    assert "mlx_lm" in out["error"]
