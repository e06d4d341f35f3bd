"""GGUF (llama family) -> an mlx-lm model directory: config.json, model*.safetensors, tokenizer files.

Two forms. Float32: GGUF float32 tensors stay as they are, and F16/Q8_0/Q4_0/Q4_1 tensors are
dequantized to float32, because on x86 MLX runs float32 matmuls through BLAS while float16 and
quantized matmuls are much slower there. Quantized: Q8_0/Q4_0/Q4_1 tensors stay quantized as MLX
affine quantization (group size 32, which is what GGUF's blocks are), for backends whose quantized
matmuls are fast (Metal); `config.json` gets mlx-lm's `quantization` block. Either loads with plain
`mlx_lm.load(out_dir)`.
"""

import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Tuple

import mlx.core as mx

from .errors import EngineError
from .gguf_tokenizer import save_gguf_tokenizer

# llama.cpp tensor names -> Hugging Face Llama names.
_GLOBAL = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
_LAYER = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_BLOCK = re.compile(r"^blk\.(\d+)\.([a-z_]+)$")
# GGUF quantized blocks hold 32 weights; mx.load exposes them as MLX affine quantization.
_GGUF_GROUP = 32
_MAX_SHARD_BYTES = 4 << 30
REQUIRED_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")


def is_complete(out_dir: Path) -> bool:
    return all((out_dir / f).is_file() for f in REQUIRED_FILES) and any(out_dir.glob("model*.safetensors"))


def _meta(metadata: Dict[str, Any], key: str, default: Any = None) -> Any:
    value = metadata.get(key, default)
    if isinstance(value, mx.array):
        value = value.item() if value.ndim == 0 else value.tolist()
    return value


def _hf_name(gguf_base: str) -> str:
    if gguf_base in _GLOBAL:
        return _GLOBAL[gguf_base]
    match = _BLOCK.match(gguf_base)
    if match and match.group(2) in _LAYER:
        return f"model.layers.{match.group(1)}.{_LAYER[match.group(2)]}"
    raise EngineError("UNSUPPORTED_MODEL", f"unknown GGUF tensor {gguf_base!r} (only llama-family models convert)")


def _dense(weights: Dict[str, mx.array], base: str) -> mx.array:
    w = weights[f"{base}.weight"]
    scales = weights.get(f"{base}.scales")
    if scales is None:
        return w.astype(mx.float32)
    biases = weights.get(f"{base}.biases")
    return mx.dequantize(w, scales, biases, group_size=_GGUF_GROUP, bits=_bits(w, scales)).astype(mx.float32)


def _bits(weight: mx.array, scales: mx.array) -> int:
    # Packed uint32 words per row against groups per row.
    return weight.shape[-1] * 32 // (scales.shape[-1] * _GGUF_GROUP)


def _unpermute(w: mx.array, n_heads: int) -> mx.array:
    # GGUF keeps q/k rows in Meta's interleaved-pair RoPE order; HF/mlx-lm use rotate-half order.
    d_out, d_in = w.shape
    head_dim = d_out // n_heads
    return w.reshape(n_heads, head_dim // 2, 2, d_in).swapaxes(1, 2).reshape(d_out, d_in)


def _config(metadata: Dict[str, Any], weights: Dict[str, mx.array], tied: bool) -> Dict[str, Any]:
    arch = _meta(metadata, "general.architecture")
    if arch != "llama":
        raise EngineError("UNSUPPORTED_MODEL", f"GGUF architecture {arch!r} is not supported (llama only)")
    if _meta(metadata, "llama.rope.scaling.type", "none") not in ("none", None):
        raise EngineError("UNSUPPORTED_MODEL", "GGUF files with RoPE scaling are not supported")
    p = lambda key, default=None: _meta(metadata, f"llama.{key}", default)  # noqa: E731
    hidden = int(p("embedding_length"))
    heads = int(p("attention.head_count"))
    vocab = int(weights["token_embd.scales" if "token_embd.scales" in weights else "token_embd.weight"].shape[0])
    config = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": hidden,
        "num_hidden_layers": int(p("block_count")),
        "intermediate_size": int(p("feed_forward_length")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(p("attention.head_count_kv", heads)),
        "head_dim": int(p("rope.dimension_count", hidden // heads)),
        "rms_norm_eps": float(p("attention.layer_norm_rms_epsilon", 1e-5)),
        "rope_theta": float(p("rope.freq_base", 10000.0)),
        "max_position_embeddings": int(p("context_length", 2048)),
        "vocab_size": vocab,
        "tie_word_embeddings": tied,
        "torch_dtype": "float32",
    }
    for name, key in (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id")):
        value = _meta(metadata, f"tokenizer.ggml.{key}")
        if value is not None:
            config[name] = int(value)
    return config


def _weights(gguf: Dict[str, mx.array], config: Dict[str, Any], tied: bool, quantized: bool) -> Dict[str, mx.array]:
    bases = sorted({k.rsplit(".", 1)[0] for k in gguf})
    out = {}
    for base in bases:
        if base == "output" and tied:
            continue
        keep = quantized and f"{base}.scales" in gguf
        # A quantized tensor's rows are output rows too: weight, scales and biases unpermute alike.
        parts = {s: gguf[f"{base}.{s}"] for s in ("weight", "scales", "biases") if f"{base}.{s}" in gguf} if keep else {"weight": _dense(gguf, base)}
        for suffix, w in parts.items():
            if base.endswith(".attn_q"):
                w = _unpermute(w, config["num_attention_heads"])
            elif base.endswith(".attn_k"):
                w = _unpermute(w, config["num_key_value_heads"])
            out[f"{_hf_name(base)}.{suffix}"] = w
    if any(k.endswith(".scales") for k in out):
        # mlx-lm infers each module's bits from its tensors; the group size is GGUF's block size.
        config["quantization"] = {"group_size": _GGUF_GROUP, "bits": _common_bits(out), "mode": "affine"}
    return out


def _common_bits(weights: Dict[str, mx.array]) -> int:
    scales = [k for k in weights if k.endswith(".scales")]
    bits = Counter(_bits(weights[k[: -len("scales")] + "weight"], weights[k]) for k in scales)
    return bits.most_common(1)[0][0]


def _is_tied(gguf: Dict[str, mx.array]) -> bool:
    if "output.weight" not in gguf:
        return True
    a, b = gguf["output.weight"], gguf["token_embd.weight"]
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    same = mx.array_equal(a, b)
    for suffix in ("scales", "biases"):
        if f"output.{suffix}" in gguf:
            same = same and mx.array_equal(gguf[f"output.{suffix}"], gguf[f"token_embd.{suffix}"])
    return bool(same)


def _save_weights(weights: Dict[str, mx.array], out_dir: Path) -> None:
    from mlx_lm.utils import make_shards

    shards = make_shards(weights, max_file_size_gb=_MAX_SHARD_BYTES >> 30)
    if len(shards) == 1:
        mx.save_safetensors(str(out_dir / "model.safetensors"), shards[0], metadata={"format": "mlx"})
        return
    weight_map = {}
    for i, shard in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        mx.save_safetensors(str(out_dir / name), shard, metadata={"format": "mlx"})
        weight_map.update({k: name for k in shard})
    total = sum(v.nbytes for v in weights.values())
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def convert_gguf(gguf_path: str, out_dir: str, quantized: bool = False) -> Tuple[Path, bool]:
    """Convert once: returns (out_dir, converted) where converted is False when out_dir was complete.

    quantized keeps Q8_0/Q4_0/Q4_1 tensors quantized; otherwise everything is float32.
    """
    src, out = Path(gguf_path), Path(out_dir)
    if is_complete(out):
        return out, False
    if not src.is_file():
        raise EngineError("MODEL_NOT_FOUND", f"GGUF file {src} does not exist")
    try:
        gguf, metadata = mx.load(str(src), return_metadata=True)
    except Exception as err:
        raise EngineError("MODEL_NOT_FOUND", f"cannot read GGUF file {src}: {err}") from err
    tied = _is_tied(gguf)
    config = _config(metadata, gguf, tied)
    weights = _weights(gguf, config, tied, quantized)
    mx.eval(weights)

    # Build in a sibling directory and rename, so a crash never leaves a half-written model behind.
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _save_weights(weights, tmp)
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        save_gguf_tokenizer(metadata, str(tmp))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out, True
