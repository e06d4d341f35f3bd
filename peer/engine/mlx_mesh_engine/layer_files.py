"""Which weight files of a sharded checkpoint a layer range needs, from model.safetensors.index.json.

Every peer computes this the same way: layers [start, end), the embedding when start == 0 (or when
the head is tied to it and end == n_layers), and the final norm and head when end == n_layers.
"""

import re
from typing import Dict, Iterable, Set

LAYER_TENSOR = re.compile(r"^(?:model\.)?layers\.(\d+)\.")
"""A tensor of decoder layer N: `layers.N.` with or without mlx-lm's `model.` prefix."""


def head_is_tied(names: Iterable[str]) -> bool:
    """The head reuses the embedding when the checkpoint has no lm_head tensor, as mlx-lm's models decide
    too (a config may not say: Gemma's omit tie_word_embeddings and tie)."""
    return not any(name.startswith("lm_head.") for name in names)


def needs_tensor(name: str, start: int, end: int, n_layers: int, tied: bool) -> bool:
    match = LAYER_TENSOR.match(name)
    if match:
        return start <= int(match.group(1)) < end
    if "embed_tokens" in name:
        return start == 0 or (tied and end == n_layers)
    return end == n_layers


def files_for_range(weight_map: Dict[str, str], start: int, end: int, n_layers: int, tied: bool) -> Set[str]:
    return {file for name, file in weight_map.items() if needs_tensor(name, start, end, n_layers, tied)}
