"""Single-process mlx_lm on the same model, prompt and greedy settings as bench/inference.ts.

Usage: python mlx_lm_baseline.py MODEL_DIR MESSAGES_JSON MAX_TOKENS RUNS
Prints JSON {"prompt_tokens", "blas", "runs": [{"prefill_s", "decode_tps", "tokens", "text"}]}.
One unmeasured warm-up generation runs first. MLX_MESH_BLAS selects the BLAS exactly as the
engine does, so both sides of a comparison compute with the same library.
"""

import json
import sys
import time


def main():
    from mlx_mesh_engine.blas import load_blas

    blas = load_blas()
    from mlx_lm import load, stream_generate
    from mlx_lm.sample_utils import make_sampler

    model_dir, messages, max_tokens, runs = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    model, tokenizer = load(model_dir)
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    sampler = make_sampler(temp=0.0)

    def once():
        started = time.perf_counter()
        stamps, tokens = [], []
        for r in stream_generate(model, tokenizer, prompt, max_tokens=max_tokens, sampler=sampler):
            if r.token in tokenizer.eos_token_ids:
                break
            stamps.append(time.perf_counter())
            tokens.append(int(r.token))
        decode_s = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
        return {
            "prefill_s": stamps[0] - started,
            "decode_tps": (len(stamps) - 1) / decode_s if decode_s > 0 else 0.0,
            "tokens": len(tokens),
            "text": tokenizer.decode(tokens),
        }

    once()
    out = {"prompt_tokens": len(prompt), "blas": blas or "bundled", "runs": [once() for _ in range(runs)]}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
