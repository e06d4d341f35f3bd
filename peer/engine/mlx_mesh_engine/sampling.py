"""Token choice at the last stage, the way mlx_lm does it, with a per-request seeded generator.

Temperature 0 is mlx_lm's greedy sampler: the argmax of the log-probabilities, logits - logsumexp.
MLX's CPU logsumexp over a 49152-word vocabulary takes ~1.4 ms (an argmax 0.1 ms), so `greedy` finds
the same token without it whenever it can prove the answer (see there). Otherwise top-p from
mlx_lm.sample_utils, then a categorical draw with this request's own key, so concurrent requests
with seeds are reproducible regardless of interleaving.
"""

import math
import secrets
from typing import Optional

import mlx.core as mx
from mlx_lm.sample_utils import apply_top_p

# How close to the top logit another one must be before subtracting logsumexp could tie the two.
# logits - lse lies in [-log V, 0], under 16 in magnitude for any vocabulary below 8.8M words, where a
# float32 subtraction errs by at most half an ulp (2^-21) and a 16-bit one by at most 2^-8 (float16) or
# 2^-5 (bfloat16). A logit more than twice that below the top stays strictly below it after the
# subtraction (rounding is monotonic), so the top logit's index is the log-probabilities' argmax. The
# margins below are far wider than that, at no cost: a real near-tie only means computing logsumexp.
_MARGIN = {mx.float32: 2.0**-16}
_MARGIN_16BIT = 2.0**-1


def logprobs_of(logits: mx.array) -> mx.array:
    return logits - mx.logsumexp(logits, axis=-1, keepdims=True)


def greedy(logits: mx.array) -> int:
    """argmax(logprobs_of(logits)) for one row [1, V], exactly as mlx_lm picks it.

    When no other logit lies within the margin of the top one, the top logit's index is the answer and
    logsumexp is never computed. Otherwise (near-ties, NaN or infinities) it is computed, as mlx_lm does,
    and its argmax breaks ties the same way.
    """
    margin = _MARGIN.get(logits.dtype, _MARGIN_16BIT)
    index = mx.argmax(logits, axis=-1, keepdims=True)
    top = mx.take_along_axis(logits, index, axis=-1)
    # Logits not clearly below the top: the top itself, near-ties, and NaN (never below anything).
    near = mx.sum(mx.logical_not(logits < top - margin), axis=-1)
    finite = mx.isfinite(top)
    mx.eval(index, near, finite)
    if finite.item() and near.item() == 1:
        return int(index.item())
    return int(mx.argmax(logprobs_of(logits), axis=-1).item())


class RequestSampler:
    def __init__(self, seed: Optional[int]):
        self.key = mx.random.key(seed if seed is not None else secrets.randbits(63))

    def sample(self, logits: mx.array, temperature: float, top_p: float) -> int:
        if temperature == 0:
            return greedy(logits)
        logprobs = logprobs_of(logits)
        if 0 < top_p < 1.0:
            logprobs = apply_top_p(logprobs, top_p)
        self.key, sub = mx.random.split(self.key)
        return int(mx.random.categorical(logprobs * (1.0 / temperature), key=sub).item())


# --- a head split in two (shard.py): the last stage holds one part of the vocabulary, the first the other

def top_entry(logits: mx.array, lo: int) -> list:
    """[[token id, logit]] of one row's logits [1, n] (vocabulary ids from `lo`): its top, the lowest id
    among equal ones, as argmax gives it."""
    row = logits[0]
    index = int(mx.argmax(row).item())
    return [[lo + index, float(row[index].item())]]


def greedy_split(part: mx.array, other: list) -> int:
    """Greedy's token from this stage's part of one row's logits ([1, n], ids from 0) and the other
    part's top (top_entry's list, ids above this part's): the higher logit's token, the lower id among
    equal ones, as an argmax of the whole row gives it.

    That is `greedy`'s token whenever no other logit lies within its margin of the top (then greedy
    proves the argmax is its answer). On a real near-tie (two logits within 2^-16 of each other),
    greedy would subtract logsumexp over the whole row, which neither stage has: the argmax is taken.
    """
    row = part[0]
    a = int(mx.argmax(row).item())
    candidates = [(float(row[a].item()), a)] + [(float(v), int(t)) for t, v in other]
    value = lambda c: c[0] if c[0] == c[0] else -math.inf  # NaN ranks last
    return min(candidates, key=lambda c: (-value(c), c[1]))[1]
