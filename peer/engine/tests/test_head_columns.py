"""The last stage keeps its output head as [H, V] columns on the CPU: same logits to float32 rounding,
same tokens, the same memory (the checkpoint's [V, H] copy is dropped), and never on the first stage."""

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

from mlx_mesh_engine.shard import Shard
from tiny_models import build


def weight_bytes(shard: Shard) -> int:
    total = sum(v.nbytes for _, v in tree_flatten(shard.model.parameters()))
    return total + (shard._head_columns.nbytes if shard._head_columns is not None else 0)


def last_logits(shard: Shard, hidden: mx.array) -> mx.array:
    out = shard.forward(shard.make_cache(), None, hidden)
    mx.eval(out)
    return out


@pytest.mark.parametrize("arch,tied", [("mistral", False), ("qwen2", True)])
def test_columns_give_the_same_tokens_in_the_same_memory(arch, tied, stories_dir, tmp_path, monkeypatch):
    # A vocabulary smaller than the stage's layers: the transposing copy is not the load's peak.
    model_dir = build(arch, tmp_path / arch, stories_dir, vocab_size=512)
    monkeypatch.setenv("MLX_MESH_HEAD_COLUMNS", "0")
    rows = Shard(str(model_dir), 1, 6)
    monkeypatch.setenv("MLX_MESH_HEAD_COLUMNS", "1")
    cols = Shard(str(model_dir), 1, 6)
    assert rows.tied == cols.tied == tied
    assert rows._head_columns is None
    vocab = rows.model.args.vocab_size
    assert cols._head_columns.shape == (rows.hidden_size, vocab)
    # The checkpoint's layout is gone, not kept beside the columns.
    assert "embed_tokens" not in cols.inner and "lm_head" not in cols.model
    assert weight_bytes(cols) == weight_bytes(rows)

    hidden = mx.random.normal((3, 9, rows.hidden_size), key=mx.random.key(1))
    a, b = last_logits(rows, hidden), last_logits(cols, hidden)
    assert b.shape == (3, vocab)
    np.testing.assert_allclose(np.array(b), np.array(a), rtol=1e-5, atol=1e-5)
    assert mx.argmax(a, axis=-1).tolist() == mx.argmax(b, axis=-1).tolist()


def test_rows_multiplied_one_by_one_or_together_give_each_rows_logits(stories_dir, tmp_path, monkeypatch):
    # The load times the head's columns both ways and keeps the faster for a few rows: one row at a time
    # gives a row exactly its logits alone, one product gives them to float32 rounding, in rows' order.
    monkeypatch.setenv("MLX_MESH_HEAD_COLUMNS", "1")
    model_dir = build("mistral", tmp_path / "m", stories_dir, vocab_size=512)
    cols = Shard(str(model_dir), 1, 6)
    assert cols._head_columns is not None and 1 <= cols._head_rows_apart <= 3
    hidden = mx.random.normal((3, 1, cols.hidden_size), key=mx.random.key(2))
    alone = np.concatenate([np.array(last_logits(cols, hidden[i : i + 1])) for i in range(3)])
    for apart in (1, 3):
        cols._head_rows_apart = apart
        for rows in (2, 3):
            logits = np.array(last_logits(cols, hidden[:rows]))
            assert logits.shape == (rows, 512)
            if apart >= rows:
                assert np.array_equal(logits, alone[:rows])
            np.testing.assert_allclose(logits, alone[:rows], rtol=1e-5, atol=1e-5)


def test_first_stage_and_quantized_heads_keep_their_layout(stories_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MLX_MESH_HEAD_COLUMNS", "1")
    tied = build("qwen2", tmp_path / "tied", stories_dir)
    # One stage holding everything: a tied head is also the embedding it looks tokens up in.
    whole = Shard(str(tied), 0, 6)
    assert whole._head_columns is None and "embed_tokens" in whole.inner
    quantized = build("mistral", tmp_path / "q4", stories_dir, bits=4, group_size=32, vocab_size=512)
    assert Shard(str(quantized), 2, 6)._head_columns is None
    # A head larger than the stage's layers (49152 x 64 against 4 layers of 64): making the columns
    # would hold two heads at once, more than the stage itself, so it keeps mlx_lm's layout.
    wide = build("mistral", tmp_path / "wide", stories_dir)
    stage = Shard(str(wide), 2, 6)
    assert stage._head_columns is None and "lm_head" in stage.model
