"""A random-weight model of a real architecture's shape, for benchmarks at sizes where weights dominate.

Usage: python make_random_model.py SPEC OUT_DIR TOKENIZER_DIR
  SPEC           llama-<hidden>x<layers>, e.g. llama-1024x16 (~1.4 GB float32) or llama-2048x16 (~5 GB)
  OUT_DIR        written once (config.json, model*.safetensors, the tokenizer files); kept if it exists
  TOKENIZER_DIR  an mlx-lm model directory whose tokenizer (and vocabulary size) the model takes

Built with mlx-lm's own llama classes and saved with its save_model/save_config, so the engine and
mlx_lm load it like any checkpoint. Head size 64, 4 query heads per KV head, MLP 4 × hidden, untied
output head, float32, seeded: the same spec gives the same weights. Prints {"path", "bytes"} as JSON.
"""

import json
import os
import re
import shutil
import sys
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "vocab.json", "merges.txt")


def config_for(spec, tokenizer_config):
    m = re.fullmatch(r"llama-(\d+)x(\d+)", spec)
    if not m:
        raise SystemExit(f"unknown random model {spec!r}: use llama-<hidden>x<layers>, e.g. llama-1024x16")
    hidden, layers = int(m.group(1)), int(m.group(2))
    if hidden % 256 or not 1 <= layers <= 128:
        raise SystemExit(f"{spec}: hidden must be a multiple of 256 and layers 1-128")
    heads = hidden // 64
    return {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "intermediate_size": 4 * hidden,
        "num_attention_heads": heads,
        "num_key_value_heads": max(1, heads // 4),
        "head_dim": 64,
        "rms_norm_eps": 1e-5,
        "rope_theta": 100000.0,
        "max_position_embeddings": 8192,
        "vocab_size": tokenizer_config["vocab_size"],
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "bos_token_id": tokenizer_config.get("bos_token_id"),
        "eos_token_id": tokenizer_config.get("eos_token_id"),
    }


def main():
    spec, out_dir, tokenizer_dir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    if not (out_dir / "config.json").exists():
        import mlx.core as mx
        from mlx_lm.models import llama
        from mlx_lm.utils import save_config, save_model

        config = config_for(spec, json.loads((tokenizer_dir / "config.json").read_text()))
        mx.random.seed(0)
        model = llama.Model(llama.ModelArgs.from_dict(config))
        mx.eval(model.parameters())
        staging = out_dir.with_name(out_dir.name + f".tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        save_model(staging, model, donate_model=True)
        for name in TOKENIZER_FILES:
            if (tokenizer_dir / name).exists():
                shutil.copy(tokenizer_dir / name, staging / name)
        save_config(config, staging / "config.json")  # last: its presence marks a complete model
        os.replace(staging, out_dir)
    size = sum(f.stat().st_size for f in out_dir.glob("*.safetensors"))
    print(json.dumps({"path": str(out_dir), "bytes": size}))


if __name__ == "__main__":
    main()
