"""One peer's share of a model: layers [start, end) of an mlx-lm model of a supported family.

The model is built lazily by mlx_lm, the parts this peer does not run are dropped, and only then
are the weights evaluated, so a peer's memory holds its layers (plus the embedding on the first
stage and the norm and head on the last). A stage runs mlx-lm's own layers, caches, masks, norm and
head; what the family's model adds around the layers (embedding scale, which mask each layer uses)
comes from families.py, so the numerics equal single-process mlx_lm.
"""

import copy
import json
import os
from pathlib import Path
from typing import Any, List, Optional, Sequence, Union

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from . import blas, step_rope
from .errors import EngineError
from .families import check_module, family_of
from .inspect_model import layer_count, read_config, text_config
from .layer_files import files_for_range, head_is_tied


def _missing_files(model_dir: Path, start: int, end: int, n_layers: int) -> List[str]:
    index = model_dir / "model.safetensors.index.json"
    if not index.is_file():
        return []
    weight_map = json.loads(index.read_text()).get("weight_map", {})
    needed = files_for_range(weight_map, start, end, n_layers, head_is_tied(weight_map))
    return sorted(f for f in needed if not (model_dir / f).is_file())


def _token_rows(tokens: Union[Sequence[int], Sequence[Sequence[int]], mx.array]) -> mx.array:
    """[B, T] token ids: a flat list is one row."""
    if isinstance(tokens, mx.array):
        return tokens if tokens.ndim == 2 else tokens[None]
    return mx.array([tokens] if tokens and isinstance(tokens[0], int) else tokens)


def _rows_one_by_one(columns: mx.array, most: int = 3, trials: int = 5) -> int:
    """Up to how many rows the head's columns are faster multiplied one row at a time, timed here.

    One row is a matrix-vector product that reads the head once at memory speed; several rows are a
    matrix product, which BLAS computes a whole tile of rows at a time. Which wins depends on the CPU:
    on an AMD EPYC core with BLIS, the default model's head takes 4.4 ms for one row and 11.7 ms for two
    as one product, 8.9 one by one (three: 12.7 against 13.7); on a Xeon, 6.4 and 7.6 ms as one product.
    So the load times both ways (a few ms per product, interleaved, the median of each) and keeps the
    faster; either gives each row's logits to float32 rounding. With rows_gemm in front of BLIS (the
    default on Linux) two rows as one product take 5.8 ms on that EPYC core, and the product is kept."""
    import statistics
    import time

    def timed(f) -> float:
        started = time.perf_counter()
        mx.eval(f())
        return time.perf_counter() - started

    best = 1
    for rows in range(2, most + 1):
        x = mx.zeros((rows, 1, columns.shape[0]), dtype=columns.dtype)
        product = lambda: x @ columns
        apart = lambda: mx.concatenate([x[i : i + 1] @ columns for i in range(rows)], axis=0)
        mx.eval(product(), apart())
        together, alone = [], []
        for _ in range(trials):
            together.append(timed(product))
            alone.append(timed(apart))
        if statistics.median(alone) >= statistics.median(together):
            break
        best = rows
    return best


def _head_columns(model_obj, inner, tied: bool) -> Optional[mx.array]:
    """The output head stored as [H, V] (its transpose, contiguous) in place of the checkpoint's [V, H],
    on MLX's CPU backend, where every matmul is a CBLAS sgemm: on a Xeon BLIS multiplied 2-8 rows by it
    in 0.6-0.75x the time it takes with the [V, H] layout, one row in 0.75-1.1x; on an AMD EPYC one row
    in 0.55x, 2-4 rows about the same (bench/README.md). The sums then run in another
    order, so logits differ from mlx_lm's in the last bits (about 2e-7 relative); a greedy token can
    differ only where two logits tie within that. MLX_MESH_HEAD_COLUMNS=0 keeps mlx_lm's layout.

    Only a stage that uses the head for nothing else: on the first stage a tied head is the embedding.
    Quantized or biased heads keep their layout. While the columns are made, the checkpoint's copy
    exists too: only when the head is no larger than the stage's layers, so that moment (evaluated
    before the layers) is not the peak of the load and the stage stays within its memory share."""
    if os.environ.get("MLX_MESH_HEAD_COLUMNS", "1") == "0" or mx.default_device() != mx.cpu:
        return None
    name, head = ("embed_tokens", inner.embed_tokens) if tied else ("lm_head", model_obj.lm_head)
    if type(head) not in (nn.Embedding, nn.Linear) or "bias" in head or head.weight.ndim != 2:
        return None
    layer_bytes = sum(v.nbytes for _, v in tree_flatten([layer.parameters() for layer in inner.layers]))
    if head.weight.nbytes > layer_bytes:
        return None
    columns = mx.contiguous(head.weight.T)
    mx.eval(columns)
    (inner if tied else model_obj).pop(name)
    del head  # the checkpoint's copy: freed now, and its buffer returned by clear_cache, not kept cached
    mx.clear_cache()
    return columns


def _columns_layout() -> bool:
    """Heads stored as columns [H, V] (see _head_columns): on MLX's CPU backend, unless turned off."""
    return os.environ.get("MLX_MESH_HEAD_COLUMNS", "1") != "0" and mx.default_device() == mx.cpu


def _head_part(weight: mx.array, lo: int, hi: int) -> mx.array:
    """Rows [lo, hi) of a head's weight, as columns [H, hi - lo] on the CPU backend, else rows; a copy,
    evaluated, so the checkpoint's whole matrix can be freed."""
    part = weight[lo:hi]
    part = mx.contiguous(part.T) if _columns_layout() else mx.contiguous(part)
    mx.eval(part)
    return part


def _splittable(head) -> bool:
    """A head whose vocabulary rows can be cut in two: a plain weight [V, H], no bias, not quantized."""
    return type(head) in (nn.Embedding, nn.Linear) and "bias" not in head and head.weight.ndim == 2


def _logits(h: mx.array, weight: mx.array, columns: bool, rows_apart: int) -> mx.array:
    """h [B, T, H] by a head stored as columns [H, V] (or as the checkpoint's rows [V, H])."""
    if not columns:
        return h @ weight.T
    rows = h.shape[0]
    if 1 < rows <= rows_apart:
        return mx.concatenate([h[i : i + 1] @ weight for i in range(rows)], axis=0)
    return h @ weight


class Shard:
    """Layers [start, end) of a model, and the head (or, with split_head, a part of its vocabulary).

    split_head (two stages or more): the output head's vocabulary rows are cut in two halves, the first
    half held by the first stage and the second by the last. The last stage applies the norm, computes
    its half's logits and returns the normed hidden state with them (`forward` gives both); the first
    stage computes the other half from that hidden state (`part_logits`) when the next step reaches it,
    picks the token and embeds it. Each logit is the same dot product as with the whole head, so the
    token is the same; the work per token is the same too, but shared: the last stage no longer reads
    the whole head every step while the first reads none of it, which made it the pipeline's bottleneck.
    """

    def __init__(self, model: str, start: int, end: int, split_head: bool = False):
        from mlx_lm.models.cache import make_prompt_cache
        from mlx_lm.utils import load_model

        model_dir = Path(model)
        config = read_config(model_dir)
        self.family = family_of(config)
        text = text_config(config)
        n_layers = layer_count(config)
        if not (0 <= start < end <= n_layers):
            raise EngineError("BAD_REQUEST", f"layer range [{start}, {end}) is not within [0, {n_layers})")
        missing = _missing_files(model_dir, start, end, n_layers)
        if missing:
            raise EngineError("MODEL_NOT_FOUND", f"layers [{start}, {end}) need files missing from {model_dir}: {missing}")
        # A directory downloaded for a layer range lacks other ranges' files: load what is there.
        partial = (model_dir / "model.safetensors.index.json").is_file()
        try:
            # trust_remote_code stays False: a model that needs custom code is refused by mlx_lm.
            model_obj, _ = load_model(model_dir, lazy=True, strict=not partial)
        except (ValueError, FileNotFoundError) as err:
            raise EngineError("UNSUPPORTED_MODEL", f"mlx_lm cannot load {model_dir}: {err}") from err
        check_module(self.family, model_obj)

        inner = model_obj.model
        # The caches the whole model would make, taken for this range's layer indices: a family that
        # mixes sliding and global layers gives each index its own kind (empty, so this is cheap).
        self._cache_templates = make_prompt_cache(model_obj)[start:end]
        self.tied = not hasattr(model_obj, "lm_head")
        self.first = start == 0
        self.last = end == n_layers
        inner.layers = inner.layers[start:end]
        head = inner.embed_tokens if self.tied else model_obj.lm_head
        # The part of the vocabulary whose logits this stage computes: [lo, hi), or None (all of it on
        # the last stage, none elsewhere).
        self.vocab_part: Optional[tuple] = None
        self._part: Optional[mx.array] = None
        if split_head and not (self.first and self.last) and (self.first or self.last) and _splittable(head):
            vocab = head.weight.shape[0]
            self.vocab_part = (0, vocab // 2) if self.first else (vocab // 2, vocab)
            self._part = _head_part(head.weight, *self.vocab_part)
        if not self.first and not (self.last and self.tied and self._part is None):
            inner.pop("embed_tokens")
        if not self.last:
            inner.pop("norm")
        if not self.tied and (not self.last or self._part is not None):
            model_obj.pop("lm_head")
        del head
        # Evaluated before the layers, so the moment it and the checkpoint's copy both exist is not the
        # peak of the load.
        self._head_columns = _head_columns(model_obj, inner, self.tied) if self.last and not self.first and self._part is None else None
        self._head_rows_apart = _rows_one_by_one(self._head_columns) if self._head_columns is not None else 1
        self._part_columns = self._part is not None and _columns_layout()
        self._part_rows_apart = _rows_one_by_one(self._part) if self._part_columns else 1
        mx.clear_cache()
        mx.eval(model_obj.parameters())

        self.model = model_obj
        self.inner = inner
        self.start, self.end, self.n_layers = start, end, n_layers
        self.hidden_size = int(text["hidden_size"])
        self.dtype = inner.layers[0].input_layernorm.weight.dtype
        self._windows = [self.family.window(inner, layer) for layer in inner.layers]
        # The rope's sines and cosines once per forward instead of once per call (CPU only).
        self._rope_tables = step_rope.install(inner.layers)

    def make_cache(self) -> List[Any]:
        """One fresh cache per layer of the range (one sequence; mlx-lm's merge batches them)."""
        return [copy.deepcopy(t) for t in self._cache_templates]

    def part_logits(self, h: mx.array) -> mx.array:
        """Logits [B, hi - lo] of this stage's part of the vocabulary, for normed hidden states [B, 1, H]."""
        return _logits(h, self._part, self._part_columns, self._part_rows_apart)[:, -1, :]

    def forward(self, cache: List[Any], tokens: Optional[Any], hidden: Optional[mx.array]) -> Any:
        """Hidden states [B, T, H] for a middle stage, or last-position logits [B, V] for the last; with
        a split head, the last stage gives (normed hidden [B, 1, H], its part's logits [B, V - lo]).

        One request: `tokens` is a list of ids (B = 1) and `cache` its own caches. A batch: `tokens` is B
        equal-length rows (or `hidden` has B rows) and `cache` mlx_lm's batch caches (BatchKVCache, or
        BatchRotatingKVCache for sliding layers), whose masks cover each row's left padding.
        """
        from mlx_lm.models.base import create_attention_mask

        if self.first:
            h = self.inner.embed_tokens(_token_rows(tokens))
            if self.family.embed is not None:
                h = self.family.embed(self.inner, h)
        else:
            h = hidden
        blas.rows_hint(h.shape[0] * h.shape[1])
        # Masks are computed before any cache is updated, each from a cache of a layer that uses it,
        # as the family's model does.
        masks = {}
        for c, w in zip(cache, self._windows):
            if w not in masks:
                masks[w] = create_attention_mask(h, c, window_size=w)
        try:
            for layer, c, w in zip(self.inner.layers, cache, self._windows):
                h = layer(h, masks[w], c)
        finally:
            if self._rope_tables is not None:
                self._rope_tables.clear()  # they hold this forward's positions only
        if not self.last:
            return h
        h = self.inner.norm(h[:, -1:, :])
        if self._part is not None:
            return h, self.part_logits(h)
        if self._head_columns is not None:
            logits = _logits(h, self._head_columns, True, self._head_rows_apart)
        elif self.tied:
            logits = self.inner.embed_tokens.as_linear(h)
        else:
            logits = self.model.lm_head(h)
        return logits[:, -1, :]
