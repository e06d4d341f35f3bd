"""The greedy sampler picks exactly mlx_lm's token: argmax(logits - logsumexp(logits)), ties included."""

import math

import mlx.core as mx
import numpy as np
import pytest

from mlx_mesh_engine.sampling import RequestSampler, greedy


def mlx_lm_greedy(logits: mx.array) -> int:
    """mlx_lm's generate_step then its greedy sampler (sample_utils.make_sampler(temp=0))."""
    logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    return int(mx.argmax(logprobs, axis=-1).item())


@pytest.mark.parametrize("dtype", [mx.float32, mx.float16, mx.bfloat16])
def test_random_rows_equal_mlx_lm(dtype):
    rng = np.random.default_rng(3)
    for scale in (0.1, 3.0, 30.0):
        for _ in range(40):
            row = mx.array(rng.normal(0, scale, (1, 4096)).astype(np.float32)).astype(dtype)
            assert greedy(row) == mlx_lm_greedy(row)


def test_ties_and_near_ties_break_as_mlx_lm_does():
    cases, differs = [], 0
    for rest in (-5.0, -1.0):
        base = np.full((1, 1000), rest, dtype=np.float32)
        # An exact tie: the lower index wins in both.
        tie = base.copy()
        tie[0, 10] = tie[0, 700] = 7.25
        cases.append(tie)
        # The later logit one ulp above an earlier one: after the subtraction they can round to one
        # value, and then mlx_lm picks the earlier.
        for top in (-3.0, -0.3, 0.1, 1.0, 7.25, 20.0):
            near = base.copy()
            near[0, 20] = top
            near[0, 900] = np.nextafter(np.float32(top), np.float32(math.inf))
            cases.append(near)
    for case in cases:
        row = mx.array(case)
        assert greedy(row) == mlx_lm_greedy(row), case[0, [10, 20, 700, 900]]
        differs += greedy(row) != int(mx.argmax(row, axis=-1).item())
    assert differs > 0  # the cases include ties that a plain argmax of the logits gets wrong


def test_non_finite_logits_follow_mlx_lm():
    rows = [np.zeros((1, 50), np.float32) for _ in range(3)]
    rows[0][0, 5] = math.nan
    rows[1][0, 7] = math.inf
    rows[2][0, 9] = -math.inf
    rows[2][0, 30] = 2.0
    for row in rows:
        assert greedy(mx.array(row)) == mlx_lm_greedy(mx.array(row))


def test_sampler_at_temperature_zero_is_greedy():
    row = mx.array(np.random.default_rng(5).normal(0, 4, (1, 300)).astype(np.float32))
    assert RequestSampler(None).sample(row, 0.0, 1.0) == mlx_lm_greedy(row)
