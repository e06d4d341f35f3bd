"""Fetch a Hugging Face repo's config, tokenizer and only the weight files a layer range needs.

huggingface_hub resumes interrupted files in `local_dir`; a repo that needs custom code is still
downloaded as data only and later refused by the loader (trust_remote_code is never set).
"""

import json
from pathlib import Path
from typing import Optional

from .errors import EngineError
from .inspect_model import layer_count
from .layer_files import files_for_range, head_is_tied

_METADATA = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "*.jinja",
    "model.safetensors.index.json",
]


def download(repo: str, out_dir: str, start: Optional[int], end: Optional[int], revision: Optional[str]) -> dict:
    from huggingface_hub import snapshot_download

    out = Path(out_dir)

    def fetch(patterns):
        try:
            snapshot_download(repo, revision=revision, local_dir=str(out), allow_patterns=patterns)
        except Exception as err:
            raise EngineError(
                "MODEL_NOT_FOUND",
                f"could not download {repo} from Hugging Face ({type(err).__name__}: {err}); check the repo id "
                "and the network, or pass a local model directory or a .gguf file with --model",
            ) from err

    fetch(_METADATA)
    if not (out / "config.json").is_file():
        raise EngineError("MODEL_NOT_FOUND", f"{repo} has no config.json: not a Hugging Face model repo")
    config = json.loads((out / "config.json").read_text())
    n_layers = layer_count(config)
    lo, hi = (0, n_layers) if start is None or end is None else (start, end)
    index = out / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        files = sorted(files_for_range(weight_map, lo, hi, n_layers, head_is_tied(weight_map)))
    else:
        files = ["model.safetensors"]
    fetch(files)
    return {"path": str(out), "files": files}
