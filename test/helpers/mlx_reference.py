"""Single-process mlx_lm greedy generation: the reference a mesh generation must equal token for token.

Usage: python mlx_reference.py MODEL_DIR '{"prompt": "..."}' | '{"messages": [...]}'  MAX_TOKENS
Prints JSON {"tokens": [...], "text": "..."} on stdout.
"""
import json
import os
import sys

# The same BLAS the engine loads (MLX_MESH_BLAS), before mlx is imported: equal numbers need equal sums.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "peer", "engine"))
from mlx_mesh_engine.blas import load_blas  # noqa: E402

load_blas()

from mlx_lm import load, stream_generate  # noqa: E402
from mlx_lm.sample_utils import make_sampler  # noqa: E402


def main():
    model_dir, spec, max_tokens = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    model, tokenizer = load(model_dir)
    if "messages" in spec:
        prompt = tokenizer.apply_chat_template(spec["messages"], add_generation_prompt=True)
    else:
        prompt = tokenizer.encode(spec["prompt"])
    tokens, text = [], ""
    for r in stream_generate(model, tokenizer, prompt, max_tokens=max_tokens, sampler=make_sampler(temp=0.0)):
        if r.token in tokenizer.eos_token_ids:
            break
        tokens.append(int(r.token))
    text = tokenizer.decode(tokens)
    print(json.dumps({"prompt": list(map(int, prompt)), "tokens": tokens, "text": text}))


if __name__ == "__main__":
    main()
