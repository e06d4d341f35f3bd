"""What a model directory holds, from config.json and the safetensors headers, without loading weights.

The planner uses the per-layer byte counts to split layers by memory.
"""

import json
import struct
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List

from .errors import EngineError
from .families import family_of
from .layer_files import LAYER_TENSOR, head_is_tied

_DTYPES = {
    "F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64",
    "I8": "int8", "U8": "uint8", "I16": "int16", "U16": "uint16",
    "I32": "int32", "U32": "uint32", "I64": "int64", "U64": "uint64", "BOOL": "bool",
}


def read_config(model_dir: Path) -> Dict[str, Any]:
    path = model_dir / "config.json"
    if not path.is_file():
        raise EngineError("MODEL_NOT_FOUND", f"{model_dir} has no config.json (not an mlx-lm/Hugging Face model directory)")
    return json.loads(path.read_text())


def text_config(config: Dict[str, Any]) -> Dict[str, Any]:
    """The language model's part of a config (multimodal configs nest it under text_config)."""
    return config.get("text_config", config)


def layer_count(config: Dict[str, Any]) -> int:
    return int(text_config(config)["num_hidden_layers"])


def safetensors_header(path: Path) -> Dict[str, Any]:
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise EngineError("MODEL_NOT_FOUND", f"{path} is not a safetensors file")
        (length,) = struct.unpack("<Q", raw)
        if length > 100 << 20:
            raise EngineError("MODEL_NOT_FOUND", f"{path} has an implausible header size")
        header = json.loads(f.read(length))
    header.pop("__metadata__", None)
    return header


def eos_ids(model_dir: Path, config: Dict[str, Any]) -> List[int]:
    ids: List[int] = []
    sources = [config]
    gen = model_dir / "generation_config.json"
    if gen.is_file():
        sources.append(json.loads(gen.read_text()))
    for source in sources:
        value = source.get("eos_token_id")
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, int) and v not in ids:
                ids.append(v)
    return ids


def inspect_model(model: str) -> Dict[str, Any]:
    model_dir = Path(model)
    config = read_config(model_dir)
    family_of(config)  # refuse an architecture a stage cannot run exactly, before any plan is made
    text = text_config(config)
    n_layers = layer_count(config)
    files = sorted(model_dir.glob("model*.safetensors"))
    if not files:
        raise EngineError("MODEL_NOT_FOUND", f"{model_dir} has no model*.safetensors files")

    layer_bytes = [0] * n_layers
    embed_bytes = head_bytes = 0
    dtypes: Counter = Counter()
    names = []
    for file in files:
        for name, info in safetensors_header(file).items():
            names.append(name)
            size = info["data_offsets"][1] - info["data_offsets"][0]
            match = LAYER_TENSOR.match(name)
            if match and int(match.group(1)) < n_layers:
                layer_bytes[int(match.group(1))] += size
                if name.endswith(".weight"):
                    dtypes[_DTYPES.get(info["dtype"], info["dtype"].lower())] += size
            elif "embed_tokens" in name:
                embed_bytes += size
            else:
                head_bytes += size

    quant = config.get("quantization")
    dtype = dtypes.most_common(1)[0][0] if dtypes else "unknown"
    return {
        "model_type": config.get("model_type"),
        "n_layers": n_layers,
        "hidden_size": int(text["hidden_size"]),
        "vocab_size": int(text["vocab_size"]),
        "context_length": int(text.get("max_position_embeddings", 0)),
        "eos_token_ids": eos_ids(model_dir, config),
        "tie_word_embeddings": head_is_tied(names),
        "layer_bytes": layer_bytes,
        "embed_bytes": embed_bytes,
        "head_bytes": head_bytes,
        "dtype": f"q{quant['bits']}" if isinstance(quant, dict) and "bits" in quant else dtype,
    }
