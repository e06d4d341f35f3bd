"""Rotary position embedding with its sines and cosines computed once per forward, not once per call.

On MLX's CPU backend `mx.fast.rope` has no kernel: it runs its fallback, ~17 small operations per
call (positions, inverse frequencies, their product, cos, sin, the two halves' products and sums, a
concatenation), ~100 us each call at ~6-9 us per operation. A stage calls it twice per layer (queries
and keys) with the same positions every time, so a 15-layer stage spends ~3 ms of a 25 ms step there.

Here the first call of a forward asks the model's own rope module for the tables: applied to a unit
input (ones in the first half, zeros in the second) it returns exactly the cos and sin it multiplies
by, in the input's dtype (1 * c - 0 * s = c and 1 * s + 0 * c = s, exactly). Every call then computes
`x * [c, c] + [x2, x1] * [-s, s]`: the same products and sums as the fallback's `x1 * c - x2 * s` and
`x1 * s + x2 * c` (negation is exact, a + (-b) is a - b, and a sum does not depend on its order), so
the result is the same bit for bit, in 4 operations. `tests/test_step_rope.py` checks that against
`mx.fast.rope` for both kinds of offset, several dtypes and prompt lengths.

Only modules whose call is exactly `mx.fast.rope(x, dims, traditional=False, base, scale, offset[,
freqs])` are wrapped (mlx's `nn.RoPE`, mlx_lm's `Llama3RoPE`), only where the rotated dims are the
whole head, and only on the CPU: on a GPU the rope is one kernel already. MLX_MESH_STEP_ROPE=0 turns it
off.
"""

import os
from typing import Any, Dict, Optional, Tuple

import mlx.core as mx
import mlx.nn as nn


def _wrappable_types() -> Tuple[type, ...]:
    types = [nn.RoPE]
    try:
        from mlx_lm.models.rope_utils import Llama3RoPE

        types.append(Llama3RoPE)
    except ImportError:  # an mlx_lm without it: nothing of that kind to wrap
        pass
    return tuple(types)


def enabled() -> bool:
    return os.environ.get("MLX_MESH_STEP_ROPE", "1") != "0" and mx.default_device() == mx.cpu


class Tables:
    """The cos/sin tables of the current forward, shared by every layer whose rope has the same
    configuration. Cleared after each forward.

    A single request's offset is an int, a key by itself. A batch's offsets are arrays, one per layer's
    cache, each updated in place by its cache: one array per layer, with equal values, as every layer
    of a forward encodes the same positions (the rows' lengths so far) - what a position embedding is.
    So within a forward, batch offsets of one batch size share one entry."""

    def __init__(self):
        self._memo: Dict[Any, Tuple[mx.array, mx.array]] = {}

    def clear(self) -> None:
        self._memo.clear()

    def get(self, config: Tuple, rope: Any, x: mx.array, offset: Any) -> Tuple[mx.array, mx.array]:
        batch = x.shape[0] if isinstance(offset, mx.array) and offset.size > 1 else 1
        key = (config, x.shape[-2], x.dtype, batch, offset if isinstance(offset, int) else "array")
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        half = rope.dims // 2
        t = x.shape[-2]
        unit = mx.concatenate([mx.ones((batch, 1, t, half), x.dtype), mx.zeros((batch, 1, t, half), x.dtype)], axis=-1)
        cs = rope(unit, offset=offset)
        cos, sin = cs[..., :half], cs[..., half:]
        both_cos = mx.concatenate([cos, cos], axis=-1)
        signed_sin = mx.concatenate([-sin, sin], axis=-1)
        self._memo[key] = (both_cos, signed_sin)
        return both_cos, signed_sin


class StepRoPE(nn.Module):
    """Stands in for a layer's rope module; the same outputs, with the tables from `Tables`."""

    def __init__(self, rope: Any, tables: Tables):
        super().__init__()
        self._rope = rope
        self._tables = tables
        freqs = getattr(rope, "_freqs", None)
        self._config = (
            type(rope).__name__,
            rope.dims,
            getattr(rope, "base", None),
            getattr(rope, "scale", None),
            None if freqs is None else tuple(freqs.tolist()),
        )
        self.freeze()

    def __call__(self, x: mx.array, offset: Any = 0) -> mx.array:
        if x.ndim != 4 or x.shape[-1] != self._rope.dims:
            return self._rope(x, offset=offset)
        half = self._rope.dims // 2
        cos, sin = self._tables.get(self._config, self._rope, x, offset)
        return x * cos + mx.concatenate([x[..., half:], x[..., :half]], axis=-1) * sin


def install(layers: Any) -> Optional[Tables]:
    """Replaces the wrappable rope of each layer's attention; returns the tables to clear after each
    forward, or None when nothing was replaced (or it is off)."""
    if not enabled():
        return None
    kinds = _wrappable_types()
    tables = Tables()
    replaced = 0
    for layer in layers:
        attn = getattr(layer, "self_attn", None)
        rope = getattr(attn, "rope", None)
        if type(rope) in kinds and not rope.traditional:
            attn.rope = StepRoPE(rope, tables)
            replaced += 1
    return tables if replaced else None
