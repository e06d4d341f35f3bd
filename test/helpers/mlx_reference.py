"""Single-process mlx_lm greedy generation: the reference a mesh generation must equal token for token.

Usage: python mlx_reference.py MODEL_DIR SPEC MAX_TOKENS [PREFILL_STEP]
  SPEC '{"prompt": "..."}' | '{"messages": [...]}': mlx_lm.stream_generate with prefill_step_size
      PREFILL_STEP (default mlx_lm's 2048); prints {"prompt": [...], "tokens": [...], "text": "..."}.
  SPEC '{"batch": ["...", ...]}': mlx_lm.batch_generate of those prompts in one batch, each encoded as
      mlx_lm (and the mesh's /v1/completions) encodes it; prints
      {"batch": [{"prompt": [...], "tokens": [...], "text": "..."}, ...]} in prompt order.
"""
import json
import os
import sys

# The same BLAS the engine loads (MLX_MESH_BLAS), before mlx is imported: equal numbers need equal sums.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "peer", "engine"))
from mlx_mesh_engine.blas import hint_rows_of, load_blas  # noqa: E402

load_blas()

from mlx_lm import batch_generate, load, stream_generate  # noqa: E402
from mlx_lm.sample_utils import make_sampler  # noqa: E402


def _result(tokenizer, prompt, tokens):
    tokens = [int(t) for t in tokens]
    while tokens and tokens[-1] in tokenizer.eos_token_ids:
        tokens.pop()
    # The text a client of mlx_lm sees: its streaming detokenizer's (which, like mlx_lm's server, drops
    # the leading space of a BPE/SPM answer), not a plain decode of the tokens.
    detok = tokenizer.detokenizer
    detok.reset()
    for t in tokens:
        detok.add_token(t)
    detok.finalize()
    return {"prompt": list(map(int, prompt)), "tokens": tokens, "text": detok.text}


def main():
    model_dir, spec, max_tokens = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    prefill_step = int(sys.argv[4]) if len(sys.argv) > 4 else 2048
    model, tokenizer = load(model_dir)
    hint_rows_of(model)  # BLIS packs for as many rows as in the engine: the same sums
    if "batch" in spec:
        prompts = [tokenizer.encode(p) for p in spec["batch"]]
        out = batch_generate(model, tokenizer, prompts, max_tokens=max_tokens, return_token_ids=True, prefill_step_size=prefill_step)
        print(json.dumps({"batch": [_result(tokenizer, p, t) for p, t in zip(prompts, out.token_ids)]}))
        return
    if "messages" in spec:
        prompt = tokenizer.apply_chat_template(spec["messages"], add_generation_prompt=True)
    else:
        prompt = tokenizer.encode(spec["prompt"])
    tokens = []
    sampler = make_sampler(temp=0.0)
    for r in stream_generate(model, tokenizer, prompt, max_tokens=max_tokens, sampler=sampler, prefill_step_size=prefill_step):
        if r.token in tokenizer.eos_token_ids:
            break
        tokens.append(int(r.token))
    print(json.dumps(_result(tokenizer, prompt, tokens)))


if __name__ == "__main__":
    main()
