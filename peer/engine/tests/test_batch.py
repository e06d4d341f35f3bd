"""Batched forwards: B rows through a shard with mlx_lm's batch caches, as mlx_lm's own model runs them."""

import mlx.core as mx
import numpy as np
from mlx_lm.models.cache import BatchKVCache, make_prompt_cache

from mlx_mesh_engine.shard import Shard

PROMPTS = [[1, 403, 407, 261, 378], [1, 291, 280, 294, 262, 294, 353], [1, 317]]


def test_shard_forward_takes_a_batch_of_rows(stories_dir):
    """Two stages fed B left-padded rows equal mlx_lm's whole model on the same batch."""
    from mlx_lm import load

    model, _ = load(str(stories_dir))
    stages = [Shard(str(stories_dir), 0, 2), Shard(str(stories_dir), 2, 5)]
    width = max(len(p) for p in PROMPTS)
    padding = [width - len(p) for p in PROMPTS]
    rows = [[0] * pad + p for pad, p in zip(padding, PROMPTS)]
    ref_cache = [BatchKVCache(padding) for _ in make_prompt_cache(model)]
    caches = [[BatchKVCache(padding) for _ in s.make_cache()] for s in stages]
    ref = model(mx.array(rows), cache=ref_cache)[:, -1, :]
    hidden = stages[0].forward(caches[0], rows, None)
    logits = stages[1].forward(caches[1], None, hidden)
    assert logits.shape == (len(PROMPTS), 512)
    np.testing.assert_allclose(np.array(logits), np.array(ref), rtol=1e-5, atol=1e-5)
    # One more step of one token per row, at each row's own offset.
    step = [[int(t)] for t in mx.argmax(logits, axis=-1).tolist()]
    ref = model(mx.array(step), cache=ref_cache)[:, -1, :]
    logits = stages[1].forward(caches[1], None, stages[0].forward(caches[0], step, None))
    np.testing.assert_allclose(np.array(logits), np.array(ref), rtol=1e-5, atol=1e-5)
