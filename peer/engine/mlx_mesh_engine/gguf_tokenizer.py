"""A Hugging Face tokenizer (tokenizer.json + tokenizer_config.json) from a GGUF file's metadata.

transformers knows how to turn llama.cpp's tokenizer metadata into a fast tokenizer, but its GGUF
file reader needs torch; we read the metadata with `mx.load` and hand it to the same builder.
"""

from typing import Any, Dict

import mlx.core as mx

_SPECIAL = {
    "bos_token": "bos_token_id",
    "eos_token": "eos_token_id",
    "unk_token": "unknown_token_id",
    "pad_token": "padding_token_id",
}


def _plain(value: Any) -> Any:
    return value.tolist() if isinstance(value, mx.array) else value


def save_gguf_tokenizer(metadata: Dict[str, Any], out_dir: str) -> None:
    from transformers import PreTrainedTokenizerFast
    from transformers.integrations.gguf.gguf_tokenizer_mapping import (
        GGUF_TOKENIZER_MAPPING,
        convert_gguf_tokenizer,
    )

    meta = {k: _plain(v) for k, v in metadata.items() if k.startswith("tokenizer.")}
    if "tokenizer.ggml.tokens" not in meta:
        raise ValueError("the GGUF file has no tokenizer metadata")
    pick = lambda group: {  # noqa: E731
        name: meta[f"tokenizer.{key}"]
        for key, name in GGUF_TOKENIZER_MAPPING[group].items()
        if f"tokenizer.{key}" in meta
    }
    tokenizer_dict, tokenizer_config = pick("tokenizer"), pick("tokenizer_config")
    if tokenizer_dict.get("tokenizer_type") == "llama":
        # llama.cpp adds BOS to a sentencepiece vocabulary unless the file says otherwise.
        tokenizer_config.setdefault("add_bos_token", True)
    tokens = tokenizer_dict["tokens"]
    for name, key in _SPECIAL.items():
        index = meta.get(f"tokenizer.ggml.{key}")
        tokenizer_config[name] = tokens[index] if isinstance(index, int) and 0 <= index < len(tokens) else None

    backend, extra = convert_gguf_tokenizer(str(metadata.get("general.architecture", "llama")), tokenizer_dict)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **tokenizer_config, **extra)
    tokenizer.save_pretrained(out_dir)
