"""Requests' KV caches, and several requests' one-token steps run as one forward of B rows.

Between steps a request's cache lives either alone (mlx_lm's per-layer caches from make_cache) or as
one row of a group: mlx_lm batch caches (`KVCache.merge` -> BatchKVCache), left-padded so rows of
different lengths line up, with per-row offsets for RoPE and a mask over each row's padding - the same
layout mlx_lm's BatchGenerator decodes with. The same requests stepping together again reuse their
group without a copy; a different mix dissolves the groups involved (each row extracted back to its own
cache, as BatchGenerator's extract_cache does) and merges anew.
"""

from typing import Any, List, Optional, Sequence

import mlx.core as mx


class Request:
    """One request's state on this stage: its cache (or its group), its length so far, its sampler."""

    def __init__(self, cache: List[Any], seed: Optional[int]):
        self._cache: Optional[List[Any]] = cache
        self.group: Optional["Group"] = None
        self.offset = 0
        self.seed = seed
        self.sampler = None

    def own_cache(self) -> List[Any]:
        """This request's cache on its own, taken out of its group if it is in one."""
        if self.group is not None:
            self.group.dissolve()
        return self._cache

    def release(self) -> None:
        if self.group is not None:
            self.group.dissolve()
        self._cache = None


class Group:
    """Requests whose caches are merged into one batch cache, one row each, in `members` order."""

    def __init__(self, members: Sequence[Request]):
        caches = [m.own_cache() for m in members]
        self.cache = [layer[0].merge(list(layer)) for layer in zip(*caches)]
        self.members = list(members)
        for m in self.members:
            m._cache, m.group = None, self

    def dissolve(self) -> None:
        for i, m in enumerate(self.members):
            m._cache, m.group = [c.extract(i) for c in self.cache], None
        self.members, self.cache = [], []

    def discard(self) -> None:
        """After a failed forward: the rows may be half-updated, so nobody gets them back."""
        for m in self.members:
            m._cache, m.group = None, None
        self.members, self.cache = [], []


def can_batch(cache: List[Any]) -> bool:
    """mlx_lm merges most cache types into batch caches; those it cannot (quantized, chunked) step alone."""
    return all(hasattr(c, "merge") for c in cache)


def group_for(members: Sequence[Request]) -> Group:
    """The group these requests step in: their current one when it holds exactly them, else a new one."""
    group = members[0].group
    if group is not None and len(group.members) == len(members) and all(m.group is group for m in members):
        return group
    for m in members:
        if m.group is not None:
            m.group.dissolve()
    return Group(members)


def forward_rows(shard, members: Sequence[Request], tokens: Optional[List[int]], hidden: Optional[List[mx.array]]) -> List[mx.array]:
    """One decode step for each member (token ids on the first stage, [1, 1, H] hidden states after),
    as one batched forward. Returns each member's output row ([1, 1, H] or [1, V], or a split head's
    pair), in members' order."""
    group = group_for(members)
    # Rows follow the group's order; inputs and outputs are permuted to and from it.
    row = {id(m): i for i, m in enumerate(group.members)}
    order = [members.index(m) for m in group.members]
    if tokens is not None:
        out = shard.forward(group.cache, [[tokens[j]] for j in order], None)
    else:
        out = shard.forward(group.cache, None, mx.concatenate([hidden[j] for j in order], axis=0))
    mx.eval(out)
    for m in members:
        m.offset += 1
    # A split head's last stage gives (hidden, part logits): each member gets its row of both.
    take = (lambda i: tuple(o[i : i + 1] for o in out)) if isinstance(out, tuple) else (lambda i: out[i : i + 1])
    return [take(row[id(m)]) for m in members]
