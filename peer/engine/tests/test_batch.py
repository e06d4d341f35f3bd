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


# --- forward_batch through real engines, against mlx_lm's own batched and single generation ----------

import json  # noqa: E402
import shutil  # noqa: E402

import pytest  # noqa: E402

from mlx_mesh_engine.server import Engine  # noqa: E402

GREEDY = {"temperature": 0.0, "top_p": 1.0, "seed": None}
EOS = 2


@pytest.fixture(scope="module")
def random_dir(stories_dir, tmp_path_factory):
    """A small random-weight llama made with mlx_lm's classes (untied head, GQA), with stories' tokenizer."""
    from mlx.utils import tree_flatten
    from mlx_lm.models import llama

    config = {
        "model_type": "llama", "hidden_size": 128, "num_hidden_layers": 4, "intermediate_size": 256,
        "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "vocab_size": 512,
        "tie_word_embeddings": False, "max_position_embeddings": 512, "torch_dtype": "float32",
    }
    mx.random.seed(7)
    model = llama.Model(llama.ModelArgs.from_dict(config))
    out = tmp_path_factory.mktemp("models") / "random-llama"
    out.mkdir(exist_ok=True)
    mx.save_safetensors(str(out / "model.safetensors"), dict(tree_flatten(model.parameters())))
    (out / "config.json").write_text(json.dumps(config))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(stories_dir / name, out / name)
    return out


def call(engine, op, **args):
    reply = engine.handle({"id": 1, "op": op, **args})
    assert reply["ok"], reply
    return reply


def pipeline(model_dir, n_layers, split=False):
    """Two stages; with split, the head's vocabulary is cut between them (the first finishes each token)."""
    stages = [Engine(), Engine()]
    first = call(stages[0], "load", model=str(model_dir), start=0, end=n_layers // 2, split_head=split)
    last = call(stages[1], "load", model=str(model_dir), start=n_layers // 2, end=n_layers, split_head=split)
    if split:
        assert first["vocab_part"][0] == 0 and first["vocab_part"][1] == last["vocab_part"][0]
    else:
        assert first["vocab_part"] is None and last["vocab_part"] is None
    return stages


class Stream:
    """One request driven through the stages: prefill alone, then one-token steps in batches."""

    def __init__(self, name, prompt, max_tokens):
        self.name, self.prompt, self.max_tokens = name, prompt, max_tokens
        self.offset, self.next, self.tokens, self.done = 0, prompt[-1], [], False
        # With a split head: the last stage's part of the step, for the first stage to finish.
        self.head = None

    def prefill(self, stages):
        if len(self.prompt) > 1:
            base = {"request": self.name, "offset": 0, "sample": False, "sampling": self.sampling}
            hidden = call(stages[0], "forward", tokens=self.prompt[:-1], **base)["hidden"]
            call(stages[1], "forward", hidden=hidden, **base)
            self.offset = len(self.prompt) - 1

    sampling = GREEDY

    def item(self):
        return {"request": self.name, "offset": self.offset, "sample": True, "sampling": self.sampling}


def step(stages, streams):
    """One decode step for every stream given, as one forward_batch per stage. With a split head the
    first stage finishes the token the last stage's part began (and ends a stream on EOS or its last
    token: no layers run for it then)."""
    items = []
    for s in streams:
        if s.head is None:
            items.append({**s.item(), "tokens": [s.next]})
        else:
            items.append({**s.item(), "head": s.head, "eos": [EOS], "finish": len(s.tokens) + 1 >= s.max_tokens})
    first = call(stages[0], "forward_batch", items=items)["results"]
    going = []
    for s, r in zip(streams, first):
        if s.head is not None:
            s.head = None
            if r["token"] == EOS:
                s.done = True
                continue
            s.tokens.append(r["token"])
            if len(s.tokens) >= s.max_tokens:
                assert "hidden" not in r
                s.done = True
                continue
        going.append((s, r))
    if not going:
        return
    last = call(stages[1], "forward_batch", items=[{**s.item(), "hidden": r["hidden"]} for s, r in going])["results"]
    for (s, _), r in zip(going, last):
        s.offset += 1
        if "head" in r:
            assert "token" not in r
            s.head = r["head"]
        elif r["token"] == EOS:
            s.done = True
        else:
            s.tokens.append(r["token"])
            s.next = r["token"]
            s.done = len(s.tokens) >= s.max_tokens


def run(stages, streams):
    for s in streams:
        s.prefill(stages)
    while live := [s for s in streams if not s.done]:
        step(stages, live)


def mlx_lm_batch(model_dir, prompts, max_tokens):
    from mlx_lm import batch_generate, load

    model, tokenizer = load(str(model_dir))
    out = batch_generate(model, tokenizer, prompts, max_tokens=max_tokens, return_token_ids=True)
    return [[t for t in toks if t != EOS] for toks in out.token_ids]


def mlx_lm_single(model_dir, prompt, max_tokens):
    from mlx_lm import load, stream_generate

    model, tokenizer = load(str(model_dir))
    out = []
    for r in stream_generate(model, tokenizer, prompt, max_tokens=max_tokens):
        if r.token == EOS:
            break
        out.append(int(r.token))
    return out


FOUR = [[1, 403, 407, 261, 378], [1, 291, 280, 294, 262, 294, 353], [1, 317, 269, 274, 287, 263, 377, 267, 265, 282], [1, 317]]


@pytest.mark.parametrize("split", [False, True], ids=["whole-head", "split-head"])
@pytest.mark.parametrize("which", ["stories", "random"])
def test_four_requests_in_one_batch_equal_mlx_lm_batch_generate(which, split, stories_dir, random_dir):
    model_dir, n_layers = (stories_dir, 5) if which == "stories" else (random_dir, 4)
    stages = pipeline(model_dir, n_layers, split)
    streams = [Stream(f"r{i}", p, 24) for i, p in enumerate(FOUR)]
    run(stages, streams)
    assert [s.tokens for s in streams] == mlx_lm_batch(model_dir, FOUR, 24)


@pytest.mark.parametrize("split", [False, True], ids=["whole-head", "split-head"])
def test_a_batch_of_one_equals_single_request_mlx_lm(split, random_dir):
    stages = pipeline(random_dir, 4, split)
    stream = Stream("solo", FOUR[2], 24)
    run(stages, [stream])
    assert stream.tokens == mlx_lm_single(random_dir, FOUR[2], 24)


@pytest.mark.parametrize("split", [False, True], ids=["whole-head", "split-head"])
def test_requests_join_and_leave_a_running_batch_without_disturbing_the_others(split, stories_dir):
    stages = pipeline(stories_dir, 5, split)
    a, b, c = (Stream(n, p, 30) for n, p in zip("abc", FOUR))
    a.prefill(stages)
    for _ in range(5):
        step(stages, [a])
    b.prefill(stages)  # joins a running batch
    for _ in range(5):
        step(stages, [a, b])
    c.prefill(stages)
    for _ in range(5):
        step(stages, [a, b, c])
    # b leaves early (a stop string or a client gone): the origin releases it on every stage.
    for stage in stages:
        assert call(stage, "release", request="b")["released"]
    while live := [s for s in (a, c) if not s.done]:
        step(stages, live)
    assert a.tokens == mlx_lm_single(stories_dir, a.prompt, 30)
    assert c.tokens == mlx_lm_single(stories_dir, c.prompt, 30)
    assert b.tokens == mlx_lm_single(stories_dir, b.prompt, 30)[: len(b.tokens)]


def test_a_bad_item_fails_alone(stories_dir):
    stages = pipeline(stories_dir, 5)
    a = Stream("a", FOUR[0], 3)
    a.prefill(stages)
    results = call(stages[0], "forward_batch", items=[{**a.item(), "tokens": [a.next]}, {**a.item(), "request": "x", "offset": 9, "tokens": [5]}, "junk"])["results"]
    assert "hidden" in results[0]
    assert results[1]["error"]["code"] == "BAD_OFFSET"
    assert results[2]["error"]["code"] == "BAD_REQUEST"


@pytest.mark.parametrize("split", [False, True], ids=["whole-head", "split-head"])
def test_memory_of_finished_requests_is_released(split, random_dir):
    stages = pipeline(random_dir, 4, split)
    before = [call(s, "stats")["active_memory"] for s in stages]
    streams = [Stream(f"m{i}", p, 40) for i, p in enumerate(FOUR)]
    run(stages, streams)
    during = [call(s, "stats") for s in stages]
    assert all(d["requests"] == 4 and d["active_memory"] > b for d, b in zip(during, before))
    for stage in stages:
        for s in streams:
            call(stage, "release", request=s.name)
    after = [call(s, "stats") for s in stages]
    assert [a["requests"] for a in after] == [0, 0]
    assert [a["active_memory"] for a in after] == before


def test_a_split_head_samples_as_the_whole_head_does(random_dir):
    """Temperature sampling with a seed: the first stage draws from both parts' logits, as the last
    stage draws from the whole head's, so the same seed gives the same tokens."""
    runs = []
    for split in (False, True):
        stages = pipeline(random_dir, 4, split)
        streams = [Stream(f"s{i}", p, 20) for i, p in enumerate(FOUR[:2])]
        for i, s in enumerate(streams):
            s.sampling = {"temperature": 1.0, "top_p": 0.9, "seed": 11 + i}
        run(stages, streams)
        runs.append([s.tokens for s in streams])
    assert runs[0] == runs[1]
    greedy = [Stream(f"g{i}", p, 20) for i, p in enumerate(FOUR[:2])]
    run(pipeline(random_dir, 4), greedy)
    assert runs[1] != [g.tokens for g in greedy]  # it did sample


def test_a_split_head_item_that_is_not_for_this_stage_is_refused(random_dir):
    whole = pipeline(random_dir, 4)
    split = pipeline(random_dir, 4, True)
    a = Stream("a", FOUR[0], 3)
    a.prefill(split)
    step(split, [a])
    assert a.head is not None
    reply = whole[0].handle({"id": 1, "op": "forward", **a.item(), "head": a.head})
    assert not reply["ok"] and "split_head" in reply["error"]["message"]
    bad = {**a.head, "top": [[3, 1.0]]}  # an id of the first stage's own part
    reply = split[0].handle({"id": 1, "op": "forward", **a.item(), "head": bad})
    assert not reply["ok"] and reply["error"]["code"] == "BAD_REQUEST"
