"""One peer's share of a model: layers [start, end) of an mlx-lm llama-family model.

The model is built lazily by mlx_lm, the parts this peer does not run are dropped, and only then
are the weights evaluated, so a peer's memory holds its layers (plus the embedding on the first
stage and the norm and head on the last). The forward pass mirrors mlx_lm's LlamaModel.__call__
with mlx_lm's own mask and cache helpers, so the numerics equal single-process mlx_lm.
"""

import json
from pathlib import Path
from typing import Any, List, Optional

import mlx.core as mx

from .errors import EngineError
from .layer_files import files_for_range
from .inspect_model import read_config


def _missing_files(model_dir: Path, start: int, end: int, n_layers: int, tied: bool) -> List[str]:
    index = model_dir / "model.safetensors.index.json"
    if not index.is_file():
        return []
    weight_map = json.loads(index.read_text()).get("weight_map", {})
    needed = files_for_range(weight_map, start, end, n_layers, tied)
    return sorted(f for f in needed if not (model_dir / f).is_file())


class Shard:
    def __init__(self, model: str, start: int, end: int):
        from mlx_lm.utils import load_model

        model_dir = Path(model)
        config = read_config(model_dir)
        text = config.get("text_config", config)
        n_layers = int(text["num_hidden_layers"])
        if not (0 <= start < end <= n_layers):
            raise EngineError("BAD_REQUEST", f"layer range [{start}, {end}) is not within [0, {n_layers})")
        tied = bool(text.get("tie_word_embeddings", False))
        missing = _missing_files(model_dir, start, end, n_layers, tied)
        if missing:
            raise EngineError("MODEL_NOT_FOUND", f"layers [{start}, {end}) need files missing from {model_dir}: {missing}")
        # A directory downloaded for a layer range lacks other ranges' files: load what is there.
        partial = (model_dir / "model.safetensors.index.json").is_file()
        try:
            # trust_remote_code stays False: a model that needs custom code is refused by mlx_lm.
            model_obj, _ = load_model(model_dir, lazy=True, strict=not partial)
        except (ValueError, FileNotFoundError) as err:
            raise EngineError("UNSUPPORTED_MODEL", f"mlx_lm cannot load {model_dir}: {err}") from err

        inner = getattr(model_obj, "model", None)
        if inner is None or not hasattr(inner, "layers") or not hasattr(inner, "embed_tokens"):
            raise EngineError("UNSUPPORTED_MODEL", f"{config.get('model_type')} models are not llama-shaped")
        self.tied = not hasattr(model_obj, "lm_head")
        self.first = start == 0
        self.last = end == n_layers
        inner.layers = inner.layers[start:end]
        if not self.first and not (self.last and self.tied):
            inner.pop("embed_tokens")
        if not self.last:
            inner.pop("norm")
            if not self.tied:
                model_obj.pop("lm_head")
        mx.eval(model_obj.parameters())

        self.model = model_obj
        self.inner = inner
        self.start, self.end, self.n_layers = start, end, n_layers
        self.hidden_size = int(text["hidden_size"])
        self.dtype = self._dtype()

    def _dtype(self) -> mx.Dtype:
        norm = self.inner.layers[0].input_layernorm.weight
        return norm.dtype

    def make_cache(self) -> List[Any]:
        from mlx_lm.models.cache import make_prompt_cache

        return make_prompt_cache(self.model)

    def forward(self, cache: List[Any], tokens: Optional[List[Any]], hidden: Optional[mx.array]) -> mx.array:
        """Hidden states [B, T, H] for a middle stage, or last-position logits [B, V] for the last.

        One request: `tokens` is a list of ids (B = 1) and `cache` its own KV cache. A batch: `tokens` is a
        list of B equal-length rows (or `hidden` has B rows) and `cache` a batch cache (mlx_lm's
        BatchKVCache), whose make_mask covers each row's left padding.
        """
        from mlx_lm.models.base import create_attention_mask

        if self.first:
            rows = tokens if tokens and isinstance(tokens[0], list) else [tokens]
            h = self.inner.embed_tokens(mx.array(rows))
        else:
            h = hidden
        # Masks are computed before any cache is updated, as LlamaModel does.
        window = getattr(self.inner, "sliding_window", None)
        windows = [window if getattr(layer, "use_sliding", False) else None for layer in self.inner.layers]
        masks = {w: create_attention_mask(h, cache[windows.index(w)], window_size=w) for w in set(windows)}
        for layer, c, w in zip(self.inner.layers, cache, windows):
            h = layer(h, masks[w], cache=c)
        if not self.last:
            return h
        h = self.inner.norm(h[:, -1:, :])
        if self.tied:
            logits = self.inner.embed_tokens.as_linear(h)
        else:
            logits = self.model.lm_head(h)
        return logits[:, -1, :]
