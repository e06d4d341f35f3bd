"""Single-process mlx_lm on one long greedy generation: the time of each streamed token.

    python bench/long_generation_baseline.py MODEL_DIR PROMPT MAX_TOKENS   -> one JSON line {"gaps_ms": [...]}

The mesh benchmark (bench/long-generation.ts) compares its own per-token times with these, so the
growth that comes from the model itself (attention over a longer context) is told apart from the mesh's.
"""

import json
import sys
import time

import mlx_lm


def main() -> None:
    model_dir, prompt, max_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3])
    model, tokenizer = mlx_lm.load(model_dir)
    stamps = [time.perf_counter() for _ in mlx_lm.stream_generate(model, tokenizer, prompt, max_tokens=max_tokens)]
    print(json.dumps({"gaps_ms": [(b - a) * 1000 for a, b in zip(stamps, stamps[1:])]}))


if __name__ == "__main__":
    main()
