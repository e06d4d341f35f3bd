"""The model families a stage runs exactly as mlx-lm does, and what differs between them outside the layers.

A stage runs mlx-lm's own layers, caches, norm and head; what mlx-lm's model-level `__call__` adds
around the layers (embedding scaling, which layer attends through which mask) is described here per
family, read from mlx-lm's source for that family. A family not listed is refused before any plan is
made: an unknown model-level forward could be silently wrong, so it is never guessed.
"""

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

import mlx.core as mx

from .errors import EngineError


def _no_window(inner: Any, layer: Any) -> Optional[int]:
    return None


def _llama_window(inner: Any, layer: Any) -> Optional[int]:
    # LlamaModel: layers with use_sliding attend through the sliding-window mask.
    return inner.sliding_window if layer.use_sliding else None


def _gemma3_window(inner: Any, layer: Any) -> Optional[int]:
    # Gemma3Model: sliding layers are the ones whose attention says so (all but every pattern-th).
    return inner.window_size if layer.self_attn.is_sliding else None


def _gemma3_embed(inner: Any, h: mx.array) -> mx.array:
    # Gemma3Model scales the embedding by √hidden, the constant rounded through bfloat16.
    return h * mx.array(inner.args.hidden_size**0.5, mx.bfloat16).astype(h.dtype)


@dataclass(frozen=True)
class Family:
    # The mlx_lm.models module that implements the family (checked against the loaded model).
    module: str
    # The mask window a layer attends with (None: the full causal mask).
    window: Callable[[Any, Any], Optional[int]] = _no_window
    # What the model does to the token embeddings before the first layer.
    embed: Optional[Callable[[Any, mx.array], mx.array]] = None


# config.json model_type -> family. Each is checked token for token against single-process mlx_lm
# (float and 4-bit, 1 to 3 stages) by tests/test_families.py.
FAMILIES: Dict[str, Family] = {
    "llama": Family("llama", window=_llama_window),
    "mistral": Family("llama", window=_llama_window),  # mlx-lm runs mistral with its llama module
    "qwen2": Family("qwen2"),
    "qwen3": Family("qwen3"),
    "qwen3_moe": Family("qwen3_moe"),
    "gemma3_text": Family("gemma3_text", window=_gemma3_window, embed=_gemma3_embed),
    "phi3": Family("phi3"),
    "mixtral": Family("mixtral"),
}

SUPPORTED = sorted(FAMILIES)


def family_of(config: Dict[str, Any]) -> Family:
    """The family of a model's config.json, or UNSUPPORTED_MODEL naming the supported ones."""
    model_type = config.get("model_type")
    family = FAMILIES.get(model_type) if isinstance(model_type, str) else None
    if family is None:
        raise EngineError(
            "UNSUPPORTED_MODEL",
            f"model_type {model_type!r} is not supported; supported architectures: {', '.join(SUPPORTED)}",
        )
    return family


def check_module(family: Family, model: Any) -> None:
    """The loaded model must come from the family's mlx-lm module (a remapped type would run other code)."""
    module = type(model).__module__.rsplit(".", 1)[-1]
    if module != family.module:
        raise EngineError("UNSUPPORTED_MODEL", f"mlx_lm built this model with its {module!r} code, not {family.module!r}")
