"""Small random-weight checkpoints of every supported family, built with mlx-lm's own classes.

Weights are mlx-lm's initialisation under a fixed seed, saved with mlx-lm's save_model; a quantized
copy goes through mlx-lm's quantize_model. The tokenizer is copied from a real model directory (the
default model's), so prompts are real text. Usable from pytest and, as a script, from uvu tests:

    python tiny_models.py ARCH OUT_DIR TOKENIZER_DIR [--bits N] [--group-size N] [--config JSON]

--config overrides config.json fields (e.g. a bigger hidden_size for a memory test).
"""

import json
import shutil
from pathlib import Path
from typing import Any, Dict, Optional

_COMMON: Dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "num_hidden_layers": 6,
    "vocab_size": 49152,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "max_position_embeddings": 512,
    "tie_word_embeddings": False,
}

# Per family: what differs from _COMMON. Windows are short so a short prompt already slides.
CONFIGS: Dict[str, Dict[str, Any]] = {
    "llama": {
        "tie_word_embeddings": True,
        "sliding_window": 4,
        "layer_types": ["sliding_attention", "full_attention", "sliding_attention"] * 2,
    },
    "mistral": {},
    "qwen2": {"tie_word_embeddings": True},
    "qwen3": {"head_dim": 16, "tie_word_embeddings": True},
    "qwen3_moe": {
        "head_dim": 16,
        "num_experts": 4,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 64,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "norm_topk_prob": True,
    },
    "gemma3_text": {
        "head_dim": 16,
        "num_key_value_heads": 1,
        "query_pre_attn_scalar": 16,
        "sliding_window": 4,
        "sliding_window_pattern": 3,
        "rope_local_base_freq": 10000.0,
    },
    "phi3": {},
    "mixtral": {"num_local_experts": 4, "num_experts_per_tok": 2},
}

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


def build(arch: str, out_dir: Path, tokenizer_dir: Path, bits: Optional[int] = None, group_size: int = 64,
          seed: int = 0, drop_head: bool = False, **overrides: Any) -> Path:
    """drop_head saves no lm_head, so the model ties its head to the embedding (as Gemma checkpoints do)."""
    import mlx.core as mx
    from mlx.utils import tree_map
    from mlx_lm.utils import _get_classes, quantize_model, save_config, save_model

    config = {"model_type": arch, **_COMMON, **CONFIGS.get(arch, {}), **overrides}
    mx.random.seed(seed)
    model_class, args_class = _get_classes(config)
    model = model_class(args_class.from_dict(config))
    # Larger weights than the default init, so logits are far apart and greedy picks are not near-ties.
    model.update(tree_map(lambda p: p * 2 if p.ndim > 1 else p, model.parameters()))
    if drop_head:
        model.pop("lm_head")
        config.pop("tie_word_embeddings", None)  # as in Gemma's configs: the missing head says it
    mx.eval(model.parameters())
    if bits is not None:
        model, config = quantize_model(model, config, group_size, bits)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_model(out_dir, model)
    save_config(config, out_dir / "config.json")
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():
            shutil.copy(tokenizer_dir / name, out_dir / name)
    return out_dir


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("arch")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("tokenizer_dir", type=Path)
    parser.add_argument("--bits", type=int)
    parser.add_argument("--group-size", type=int, default=64)
    parser.add_argument("--config", type=json.loads, default={})
    a = parser.parse_args()
    build(a.arch, a.out_dir, a.tokenizer_dir, a.bits, a.group_size, **a.config)
    print(json.dumps({"path": str(a.out_dir)}))
