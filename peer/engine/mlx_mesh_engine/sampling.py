"""Token choice at the last stage, the way mlx_lm does it, with a per-request seeded generator.

Temperature 0 is mlx_lm's greedy sampler (argmax of the log-probabilities). Otherwise top-p from
mlx_lm.sample_utils, then a categorical draw with this request's own key, so concurrent requests
with seeds are reproducible regardless of interleaving.
"""

import secrets
from typing import Optional

import mlx.core as mx
from mlx_lm.sample_utils import apply_top_p


class RequestSampler:
    def __init__(self, seed: Optional[int]):
        self.key = mx.random.key(seed if seed is not None else secrets.randbits(63))

    def sample(self, logits: mx.array, temperature: float, top_p: float) -> int:
        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        if temperature == 0:
            return int(mx.argmax(logprobs, axis=-1).item())
        if 0 < top_p < 1.0:
            logprobs = apply_top_p(logprobs, top_p)
        self.key, sub = mx.random.split(self.key)
        return int(mx.random.categorical(logprobs * (1.0 / temperature), key=sub).item())
