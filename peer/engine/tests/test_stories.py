"""The golden tiny model through conversion, tokenizer, forward passes and a 2-way layer split."""

import numpy as np
import pytest

from mlx_mesh_engine.server import Engine

PROMPT = "Once upon a time"
PROMPT_TOKENS = [1, 403, 407, 261, 378]
GOLDEN_LOGITS = [-10.1366, -5.3295, -10.1381, -10.1369, -10.1372]
GOLDEN_TEXT = (
    ", there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, "
    "red ball. She wanted to play with it, but it was too high.\nLily"
)
GREEDY = {"temperature": 0.0, "top_p": 1.0, "seed": None}


def call(engine: Engine, op: str, **args) -> dict:
    reply = engine.handle({"id": 1, "op": op, **args})
    assert reply["ok"], reply
    return reply


def load(model_dir, start, end) -> Engine:
    engine = Engine()
    call(engine, "load", model=str(model_dir), start=start, end=end)
    return engine


def generate(stages, tokens, n, request="r"):
    """Greedy decoding through a pipeline of engines, passing hidden states between stages."""
    out, offset, chunk = [], 0, tokens
    for _ in range(n):
        hidden = None
        for i, stage in enumerate(stages):
            args = {"request": request, "offset": offset, "sample": True, "sampling": GREEDY}
            args.update({"tokens": chunk} if i == 0 else {"hidden": hidden})
            reply = call(stage, "forward", **args)
            hidden = reply.get("hidden")
        out.append(reply["token"])
        offset += len(chunk)
        chunk = [reply["token"]]
    return out


def test_conversion_writes_an_mlx_lm_directory_and_is_idempotent(stories_gguf, stories_dir):
    from mlx_mesh_engine.gguf_convert import convert_gguf

    names = {p.name for p in stories_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    mtime = (stories_dir / "model.safetensors").stat().st_mtime_ns
    assert convert_gguf(str(stories_gguf), str(stories_dir)) == (stories_dir, False)
    assert (stories_dir / "model.safetensors").stat().st_mtime_ns == mtime


def test_inspect_reads_headers(stories_dir):
    info = call(Engine(), "inspect", model=str(stories_dir))
    assert info["n_layers"] == 5 and info["hidden_size"] == 64 and info["vocab_size"] == 512
    assert info["eos_token_ids"] == [2] and info["dtype"] == "float32"
    # q 64x64 + k 32x64 + v 32x64 + o 64x64 + 3 x 172x64 + 2 norms of 64, float32
    assert info["layer_bytes"] == [4 * (64 * 64 * 2 + 32 * 64 * 2 + 3 * 172 * 64 + 2 * 64)] * 5
    assert info["embed_bytes"] == 512 * 64 * 4


def test_tokenizer_golden_and_round_trip(stories_dir):
    engine = load(stories_dir, 0, 5)
    assert call(engine, "tokenize", text=PROMPT, add_bos=True)["tokens"] == PROMPT_TOKENS
    assert call(engine, "tokenize", text=PROMPT, add_bos=False)["tokens"] == PROMPT_TOKENS[1:]
    assert call(engine, "decode", tokens=PROMPT_TOKENS[1:])["text"] == PROMPT


def test_last_position_logits_match_golden(stories_dir):
    engine = load(stories_dir, 0, 5)
    reply = call(engine, "forward", request="a", offset=0, tokens=PROMPT_TOKENS, sample=True, sampling=GREEDY, logits=True)
    logits = reply["logits"]
    assert logits["dtype"] == "float32" and logits["shape"] == [1, 512]
    values = np.frombuffer(logits["data"], dtype=np.float32)
    np.testing.assert_allclose(values[:5], GOLDEN_LOGITS, atol=1e-3)
    assert reply["token"] == int(values.argmax())


def test_greedy_60_tokens_single_engine_equal_golden(stories_dir):
    engine = load(stories_dir, 0, 5)
    tokens = generate([engine], PROMPT_TOKENS, 60)
    assert call(engine, "decode", tokens=tokens)["text"] == GOLDEN_TEXT


def test_greedy_60_tokens_through_a_2_way_split_equal_golden(stories_dir):
    first, last = load(stories_dir, 0, 3), load(stories_dir, 3, 5)
    assert first.shard.first and not first.shard.last and last.shard.last and not last.shard.first
    tokens = generate([first, last], PROMPT_TOKENS, 60)
    assert call(last, "decode", tokens=tokens)["text"] == GOLDEN_TEXT
    assert call(first, "stats")["requests"] == 1
    assert call(first, "release", request="r")["released"] is True
    assert call(first, "stats")["requests"] == 0


def test_engine_equals_mlx_lm_generate(stories_dir):
    import mlx_lm

    model, tokenizer = mlx_lm.load(str(stories_dir))
    expected = mlx_lm.generate(model, tokenizer, PROMPT, max_tokens=60)
    engine = load(stories_dir, 0, 5)
    tokens = generate([engine], PROMPT_TOKENS, 60)
    assert call(engine, "decode", tokens=tokens)["text"] == expected == GOLDEN_TEXT


def test_wrong_offset_and_wrong_stage_inputs_are_errors(stories_dir):
    first, last = load(stories_dir, 0, 3), load(stories_dir, 3, 5)
    reply = first.handle({"id": 5, "op": "forward", "request": "x", "offset": 2, "tokens": [1], "sample": False})
    assert reply["error"]["code"] == "BAD_OFFSET"
    reply = last.handle({"id": 6, "op": "forward", "request": "x", "offset": 0, "tokens": [1], "sample": False})
    assert reply["error"]["code"] == "BAD_REQUEST"
    hidden = call(first, "forward", request="x", offset=0, tokens=PROMPT_TOKENS, sample=False)["hidden"]
    assert hidden["shape"] == [1, 5, 64]
    assert call(last, "forward", request="x", offset=0, hidden=hidden, sample=False) == {"id": 1, "ok": True}
    reply = last.handle({"id": 7, "op": "forward", "request": "x", "offset": 0, "hidden": hidden, "sample": True})
    assert reply["error"]["code"] == "BAD_OFFSET"


def test_seeded_sampling_is_reproducible_per_request(stories_dir):
    engine = load(stories_dir, 0, 5)
    sampling = {"temperature": 1.0, "top_p": 0.9, "seed": 1234}

    def run(request):
        out, chunk, offset = [], PROMPT_TOKENS, 0
        for _ in range(20):
            reply = call(engine, "forward", request=request, offset=offset, tokens=chunk, sample=True, sampling=sampling)
            out.append(reply["token"])
            offset += len(chunk)
            chunk = [reply["token"]]
        return out

    assert run("s1") == run("s2")


def test_a_load_without_layers_keeps_only_the_tokenizer(stories_dir):
    engine = load(stories_dir, 0, 0)
    assert call(engine, "tokenize", text="Once upon a time", add_bos=True)["tokens"] == PROMPT_TOKENS
    reply = engine.handle({"id": 9, "op": "forward", "request": "x", "offset": 0, "tokens": [1], "sample": True})
    assert reply["error"]["code"] == "NOT_LOADED"
    reply = engine.handle({"id": 10, "op": "load", "model": str(stories_dir), "start": 6, "end": 6})
    assert reply["error"]["code"] == "BAD_REQUEST"
