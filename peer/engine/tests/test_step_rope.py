"""The per-forward rope tables give mx.fast.rope's outputs bit for bit, and cost a fraction of its time."""

import time

import mlx.core as mx
import mlx.nn as nn
import pytest

from mlx_mesh_engine import step_rope


def _llama3_rope(dims):
    from mlx_lm.models.rope_utils import Llama3RoPE

    scaling = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    return Llama3RoPE(dims, max_position_embeddings=131072, base=500000.0, scaling_config=scaling)


ROPES = {
    "smollm2": lambda: nn.RoPE(64, base=100000.0),
    "llama2": lambda: nn.RoPE(128, base=10000.0),
    "scaled": lambda: nn.RoPE(64, base=10000.0, scale=0.25),
    "llama3": lambda: _llama3_rope(64),
}


def _bits(a):
    return a.view(mx.uint16 if a.dtype.size == 2 else mx.uint32)


@pytest.mark.parametrize("name", sorted(ROPES))
@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16, mx.float16])
def test_same_bits_as_fast_rope(name, dtype):
    mx.random.seed(7)
    rope = ROPES[name]()
    tables = step_rope.Tables()
    wrapped = step_rope.StepRoPE(rope, tables)
    cases = [
        (1, 9, 1, 0), (1, 9, 1, 1), (1, 3, 1, 4095), (1, 9, 13, 40), (1, 9, 256, 768), (1, 2, 7, 100000),
        # batches: one offset per row, some negative (left padding)
        (2, 9, 1, mx.array([100, 93])), (4, 3, 1, mx.array([0, -3, 57, 1024])), (3, 9, 5, mx.array([-5, 0, 17])),
    ]
    for b, heads, t, offset in cases:
        tables.clear()
        dims = rope.dims
        for scale in (1.0, 1000.0):  # large values as well as ordinary ones
            x = (mx.random.normal((b, heads, t, dims)) * scale).astype(dtype)
            want = rope(x, offset=offset)
            got = wrapped(x, offset=offset)
            assert got.dtype == want.dtype and got.shape == want.shape
            assert mx.array_equal(_bits(got), _bits(want)).item(), (name, dtype, b, heads, t, offset, scale)


def test_tables_are_shared_within_a_forward_and_cleared_between():
    rope = nn.RoPE(64, base=100000.0)
    tables = step_rope.Tables()
    q, k = mx.random.normal((1, 9, 1, 64)), mx.random.normal((1, 3, 1, 64))
    a, b = step_rope.StepRoPE(rope, tables), step_rope.StepRoPE(nn.RoPE(64, base=100000.0), tables)
    a(q, offset=10), b(k, offset=10)
    assert len(tables._memo) == 1  # two layers' modules, one configuration and position: one table
    a(q, offset=11)
    assert len(tables._memo) == 2
    tables.clear()
    assert len(tables._memo) == 0
    # A different base is a different table even at the same position.
    step_rope.StepRoPE(nn.RoPE(64, base=10000.0), tables)(q, offset=10)
    a(q, offset=10)
    assert len(tables._memo) == 2


def test_left_alone_where_the_identity_does_not_hold():
    layers = []
    for rope in (nn.RoPE(64, traditional=True), nn.RoPE(64), object()):
        attn = nn.Module()
        attn.rope = rope
        layer = nn.Module()
        layer.self_attn = attn
        layers.append(layer)
    tables = step_rope.install(layers)
    assert tables is not None
    assert type(layers[0].self_attn.rope) is nn.RoPE  # traditional: interleaved pairs, not wrapped
    assert type(layers[1].self_attn.rope) is step_rope.StepRoPE
    # Partial rotary (dims < head size) goes to the module itself, with the same result.
    part = step_rope.StepRoPE(nn.RoPE(32), step_rope.Tables())
    x = mx.random.normal((1, 4, 3, 64))
    assert mx.array_equal(part(x, offset=5), nn.RoPE(32)(x, offset=5)).item()


def test_off_switch(monkeypatch):
    monkeypatch.setenv("MLX_MESH_STEP_ROPE", "0")
    attn = nn.Module()
    attn.rope = nn.RoPE(64)
    layer = nn.Module()
    layer.self_attn = attn
    assert step_rope.install([layer]) is None
    assert type(attn.rope) is nn.RoPE


def test_a_stage_of_thirty_calls_costs_less_than_the_fallback():
    """What it is for, as a ratio in the same moment: a 15-layer stage's 30 rope calls of one decode
    step (queries and keys) take well under the fallback's time."""
    rope = nn.RoPE(64, base=100000.0)
    tables = step_rope.Tables()
    wrapped = step_rope.StepRoPE(rope, tables)
    q, k = mx.random.normal((1, 9, 1, 64)), mx.random.normal((1, 3, 1, 64))
    mx.eval(q, k)

    def fallback():
        mx.eval([rope(q, offset=100) for _ in range(15)] + [rope(k, offset=100) for _ in range(15)])

    def stepped():
        tables.clear()
        mx.eval([wrapped(q, offset=100) for _ in range(15)] + [wrapped(k, offset=100) for _ in range(15)])

    def best(f):
        for _ in range(5):
            f()
        times = []
        for _ in range(15):
            t = time.perf_counter()
            for _ in range(10):
                f()
            times.append(time.perf_counter() - t)
        return min(times)

    slow, fast = [], []
    for _ in range(3):  # interleaved, so a drift of the machine's speed hits both
        slow.append(best(fallback))
        fast.append(best(stepped))
    assert min(fast) < 0.75 * min(slow), (fast, slow)


def test_a_stage_uses_it_and_steps_to_the_same_bits_as_without(stories_dir, monkeypatch):
    """A Shard on the CPU wraps every layer's rope, and its prompt and decode outputs, alone and as a
    batch of two rows, equal a Shard's with it off, bit for bit; no tables outlive a forward."""
    from mlx_mesh_engine import batch as B
    from mlx_mesh_engine.shard import Shard

    on = Shard(str(stories_dir), 0, 5)
    monkeypatch.setenv("MLX_MESH_STEP_ROPE", "0")
    off = Shard(str(stories_dir), 0, 5)
    assert all(type(layer.self_attn.rope) is step_rope.StepRoPE for layer in on.inner.layers)
    assert all(type(layer.self_attn.rope) is nn.RoPE for layer in off.inner.layers)

    def run(shard):
        reqs, outs = [], []
        for prompt in ([1, 403, 261, 307, 281], [1, 9, 77]):  # ids within its 512 words
            r = B.Request(shard.make_cache(), None)
            outs.append(shard.forward(r.own_cache(), prompt, None))
            r.offset = len(prompt)
            reqs.append(r)
        outs.append(shard.forward(reqs[0].own_cache(), [42], None))  # one row
        reqs[0].offset += 1
        outs += B.forward_rows(shard, reqs, [7, 8], None)  # two rows, left-padded
        mx.eval(outs)
        return outs

    for got, want in zip(run(on), run(off)):
        assert mx.array_equal(_bits(got), _bits(want)).item()
    assert on._rope_tables is not None and len(on._rope_tables._memo) == 0
