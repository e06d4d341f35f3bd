"""Single-process mlx_lm: the baseline row of `mlx-mesh bench inference`.

Usage: python mlx_lm_baseline.py MODEL_DIR PROMPT_TOKENS GENERATION_TOKENS REPEATS [PREFILL_STEP]
Prints one JSON object on stdout:
  {"prompt": text, "prompt_tokens", "blas", "malloc", "versions", "peak_memory", "peak_rss_bytes",
   "runs": [{"prompt_s", "prompt_tps", "generation_tps", "tokens", "text"}]}

REPEATS `serve` keeps the model loaded and runs one generation per line read on stdin, so the bench
can take its trials in turn with the mesh's (on a shared machine the speed drifts from minute to
minute; trials taken back to back see the same machine). Each output is one JSON line: first the
object above without runs and memory (after the warm-up), then one run per input line, and at EOF
{"peak_memory", "peak_rss_bytes"}.

The prompt is plain text of about PROMPT_TOKENS tokens, tokenized exactly as the engine's `tokenize`
op does for /v1/completions (the tokenizer's own special tokens), so the mesh rows can send the same text and must produce the
same greedy text. Generation stops at EOS or GENERATION_TOKENS, as the mesh does. One unmeasured
warm-up generation runs first; REPEATS 0 runs one generation without it, for its text only (the
reference for a mesh whose prefill chunks are PREFILL_STEP tokens: mlx_lm's default is 2048). MLX_MESH_BLAS selects the BLAS and MLX_MESH_MALLOC the malloc exactly as the
engine does, so both sides of a comparison compute with the same libraries.
"""

import importlib.metadata
import json
import os
import platform
import resource
import sys
import time

# Prose that keeps a small model talking (no EOS for a while), repeated up to the prompt length.
PASSAGE = (
    "The lighthouse keeper climbed the stairs every evening to light the lamp. The ships passed in the "
    "dark, and the sailors counted the flashes to know where they were. One winter the storm broke the "
    "glass, and the keeper carried a lantern up and down the tower all night, so that no ship would be "
    "lost on the rocks below. In the morning the village came to thank him, and he told them the story "
    "of the lamp, the glass and the long night."
).split()


def encode(tokenizer, text):
    """What the engine's tokenize op returns for {text} (/v1/completions): the tokenizer's own encoding."""
    return list(tokenizer.encode(text, add_special_tokens=True))


def prompt_of(tokenizer, n_tokens):
    """The longest run of PASSAGE words (repeated) that tokenizes to at most n_tokens tokens."""

    def text(n_words):
        return " ".join(PASSAGE[i % len(PASSAGE)] for i in range(n_words))

    lo, hi = 1, max(2, n_tokens)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(encode(tokenizer, text(mid))) <= n_tokens:
            lo = mid
        else:
            hi = mid - 1
    return text(lo)


def peak_rss_bytes():
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB, macOS bytes


def main():
    from mlx_mesh_engine import allocator
    from mlx_mesh_engine import blas as engine_blas
    from mlx_mesh_engine import sched

    allocator.preload()  # the engine's malloc (jemalloc when the system has it): may restart this process
    engine_blas.load_blas()
    sched.apply()  # the engine's scheduling policy (SCHED_BATCH on Linux), before mlx starts its threads
    blas = engine_blas.active  # e.g. "libblis.so.4 + rows_gemm"
    import mlx.core as mx
    from mlx_lm import load, stream_generate
    from mlx_lm.sample_utils import make_sampler

    model_dir, prompt_tokens, max_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    serve = sys.argv[4] == "serve"
    repeats = 1 if serve else int(sys.argv[4])
    step = int(sys.argv[5]) if len(sys.argv) > 5 else 2048
    model, tokenizer = load(model_dir)
    engine_blas.hint_rows_of(model)  # BLIS packs for as many rows as the engine has it do: the same sums
    text = prompt_of(tokenizer, prompt_tokens)
    prompt = encode(tokenizer, text)
    sampler = make_sampler(temp=0.0)

    def once():
        started = time.perf_counter()
        stamps, tokens, pieces = [], [], []
        for r in stream_generate(model, tokenizer, prompt, max_tokens=max_tokens, sampler=sampler, prefill_step_size=step):
            # The text as mlx_lm streams it (its streaming detokenizer, as the mesh's origin uses).
            pieces.append(r.text)
            if r.token in tokenizer.eos_token_ids:
                break
            stamps.append(time.perf_counter())
            tokens.append(int(r.token))
        prompt_s = (stamps[0] if stamps else time.perf_counter()) - started
        decode_s = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
        return {
            "prompt_s": prompt_s,
            "prompt_tps": len(prompt) / prompt_s,
            "generation_tps": (len(stamps) - 1) / decode_s if decode_s > 0 else 0.0,
            "tokens": len(tokens),
            "text": "".join(pieces),
        }

    if repeats:
        once()
    about = {
        "prompt": text,
        "prompt_tokens": len(prompt),
        "blas": blas or "bundled",
        "malloc": allocator.active(),
        "sched": sched.active(),
        # What BLIS ran with (blas.py gives it 1 unless BLIS_NUM_THREADS is set); None without BLIS.
        "blis_threads": os.environ.get("BLIS_NUM_THREADS") if engine_blas.active and "blis" in engine_blas.active else None,
        "versions": {"python": platform.python_version(), "mlx": mx.__version__, "mlx_lm": importlib.metadata.version("mlx-lm")},
    }

    def memory():
        return {"peak_memory": mx.get_peak_memory() / 1e9, "peak_rss_bytes": peak_rss_bytes()}

    if serve:
        print(json.dumps(about), flush=True)
        for _ in sys.stdin:
            print(json.dumps(once()), flush=True)
        print(json.dumps(memory()), flush=True)
        return
    runs = [once() for _ in range(max(1, repeats))]
    print(json.dumps({**about, **memory(), "runs": runs}))


if __name__ == "__main__":
    main()
