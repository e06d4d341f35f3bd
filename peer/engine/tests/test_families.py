"""Every supported family, float and quantized, through 1, 2 and 3 chained stages: the greedy tokens
equal single-process mlx_lm's on the same checkpoint. An unsupported family is refused."""

import json

import mlx.core as mx
import pytest

from mlx_mesh_engine.errors import EngineError
from mlx_mesh_engine.families import SUPPORTED
from mlx_mesh_engine.inspect_model import inspect_model
from mlx_mesh_engine.shard import Shard

from tiny_models import CONFIGS, build

PROMPT = "Once upon a time, in a small village by the sea, there lived"
NEW_TOKENS = 10
# 6 layers: ranges start on sliding and on global layers (gemma3: globals at 2 and 5; llama: at 1 and 4).
SPLITS = {1: [(0, 6)], 2: [(0, 2), (2, 6)], 3: [(0, 1), (1, 4), (4, 6)]}
VARIANTS = {"float": {}, "q4": {"bits": 4, "group_size": 64}}


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory, default_dir):
    built = {}

    def get(arch, variant, **quant):
        key = (arch, variant)
        if key not in built:
            built[key] = build(arch, tmp_path_factory.mktemp(f"{arch}-{variant}"), default_dir, **quant)
        return built[key]

    return get


def reference(model_dir, prompt, n):
    """Greedy tokens from single-process mlx_lm (generate_step: prefill, then one token at a time)."""
    from mlx_lm import load
    from mlx_lm.generate import generate_step

    model, _ = load(str(model_dir))
    greedy = lambda logprobs: mx.argmax(logprobs, axis=-1)  # noqa: E731
    steps = generate_step(mx.array(prompt), model, max_tokens=n, sampler=greedy)
    return [int(token) for token, _ in steps]


def staged(model_dir, ranges, prompt, n):
    """Greedy tokens through chained Shards, prefilled as the mesh does (all but the last token, then it)."""
    shards = [Shard(str(model_dir), a, b) for a, b in ranges]
    caches = [s.make_cache() for s in shards]

    def run(tokens):
        out = None
        for shard, cache in zip(shards, caches):
            out = shard.forward(cache, tokens if shard.first else None, out)
        mx.eval(out)
        return out

    run(prompt[:-1])
    logits = run(prompt[-1:])
    tokens = []
    for _ in range(n):
        tokens.append(int(mx.argmax(logits, axis=-1).item()))
        logits = run(tokens[-1:])
    return tokens


def prompt_tokens(model_dir):
    from mlx_lm.utils import load_tokenizer

    return load_tokenizer(model_dir).encode(PROMPT)


def test_matrix_covers_every_supported_family():
    assert sorted(CONFIGS) == SUPPORTED


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("arch", SUPPORTED)
def test_stages_equal_mlx_lm(arch, variant, checkpoints):
    model_dir = checkpoints(arch, variant, **VARIANTS[variant])
    prompt = prompt_tokens(model_dir)
    assert len(prompt) > 8  # longer than the sliding windows, so rotating caches wrap
    want = reference(model_dir, prompt, NEW_TOKENS)
    assert len(set(want)) > 1, f"{arch} {variant}: a degenerate reference proves little: {want}"
    for n_stages, ranges in SPLITS.items():
        got = staged(model_dir, ranges, prompt, NEW_TOKENS)
        assert got == want, f"{arch} {variant} through {n_stages} stage(s) {ranges}"


@pytest.mark.parametrize("arch,bits,group_size", [("qwen3", 8, 32), ("gemma3_text", 8, 64), ("llama", 4, 32)])
def test_mlx_quantized_layouts(arch, bits, group_size, checkpoints):
    model_dir = checkpoints(arch, f"q{bits}g{group_size}", bits=bits, group_size=group_size)
    config = json.loads((model_dir / "config.json").read_text())
    assert config["quantization"]["bits"] == bits and config["quantization"]["group_size"] == group_size
    assert inspect_model(str(model_dir))["dtype"] == f"q{bits}"
    prompt = prompt_tokens(model_dir)
    want = reference(model_dir, prompt, NEW_TOKENS)
    assert staged(model_dir, SPLITS[2], prompt, NEW_TOKENS) == want


def test_gemma_head_tied_without_a_config_flag(tmp_path, default_dir):
    """Gemma checkpoints tie by having no lm_head (their config does not say): the last stage keeps the
    embedding as its head, the planner counts it there, and a layer range's files include it."""
    from mlx_mesh_engine.layer_files import files_for_range, head_is_tied

    model_dir = build("gemma3_text", tmp_path / "gemma-tied", default_dir, drop_head=True)
    assert "tie_word_embeddings" not in json.loads((model_dir / "config.json").read_text())
    assert inspect_model(str(model_dir))["tie_word_embeddings"] is True
    prompt = prompt_tokens(model_dir)
    assert staged(model_dir, SPLITS[3], prompt, NEW_TOKENS) == reference(model_dir, prompt, NEW_TOKENS)
    weight_map = {"model.embed_tokens.weight": "a.safetensors", "model.layers.5.mlp.up_proj.weight": "b.safetensors"}
    assert head_is_tied(weight_map)
    assert files_for_range(weight_map, 4, 6, 6, head_is_tied(weight_map)) == {"a.safetensors", "b.safetensors"}


def test_unsupported_family_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "starcoder2", "num_hidden_layers": 2, "hidden_size": 8}))
    for attempt in (lambda: inspect_model(str(tmp_path)), lambda: Shard(str(tmp_path), 0, 2)):
        with pytest.raises(EngineError) as err:
            attempt()
        assert err.value.code == "UNSUPPORTED_MODEL"
        assert "starcoder2" in err.value.message and "gemma3_text" in err.value.message


class _Chained:
    """Chained stages posing as one mlx-lm model, so mlx-lm's own BatchGenerator drives them: the
    batch caches (merged, padded, finalized) and masks are mlx-lm's, the stages only split them."""

    def __init__(self, shards):
        self.shards = shards
        self.layers = [layer for s in shards for layer in s.inner.layers]

    def make_cache(self):
        return [c for s in self.shards for c in s.make_cache()]

    def __call__(self, tokens, cache=None, **_):
        out, at = None, 0
        for shard in self.shards:
            n = shard.end - shard.start
            out = shard.forward(cache[at : at + n], tokens if shard.first else None, out)
            at += n
        return out[:, None, :]


@pytest.mark.parametrize("arch", ["gemma3_text", "llama", "qwen3_moe"])
def test_batched_rows_equal_mlx_lm_batch_generate(arch, checkpoints):
    from mlx_lm import load
    from mlx_lm.generate import batch_generate

    model_dir = checkpoints(arch, "float")
    model, tokenizer = load(str(model_dir))
    # Different lengths: rows are padded, and the short one's sliding window wraps later.
    prompts = [tokenizer.encode(PROMPT), tokenizer.encode("The sea was calm")]
    want = batch_generate(model, tokenizer, prompts, max_tokens=NEW_TOKENS, return_token_ids=True)
    chained = _Chained([Shard(str(model_dir), a, b) for a, b in SPLITS[3]])
    got = batch_generate(chained, tokenizer, prompts, max_tokens=NEW_TOKENS, return_token_ids=True)
    assert [list(map(int, t)) for t in got.token_ids] == [list(map(int, t)) for t in want.token_ids]
    assert len(set(map(int, want.token_ids[0]))) > 1
