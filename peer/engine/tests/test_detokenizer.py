"""Streaming detokenizer ops: token by token, the text equals decoding the whole sequence at once."""

from mlx_mesh_engine.server import Engine

from test_stories import GOLDEN_TEXT, GREEDY, PROMPT_TOKENS, call, generate, load


def stream(engine: Engine, tokens, name="s"):
    call(engine, "detok_open", stream=name)
    pieces = [call(engine, "detok_add", stream=name, tokens=[t])["text"] for t in tokens]
    pieces.append(call(engine, "detok_close", stream=name)["text"])
    return pieces


def test_streamed_text_equals_the_golden_text_in_many_pieces(stories_dir):
    engine = load(stories_dir, 0, 5)
    tokens = generate([engine], PROMPT_TOKENS, 60)
    pieces = stream(engine, tokens)
    assert "".join(pieces) == GOLDEN_TEXT == call(engine, "decode", tokens=tokens)["text"]
    assert sum(1 for p in pieces if p) > 20
    assert call(engine, "stats")["detokenizers"] == 0


def test_a_partial_utf8_character_waits_for_its_last_byte(stories_dir):
    engine = load(stories_dir, 0, 0)
    # Byte tokens: "é" is 0xC3 0xA9; SentencePiece byte-fallback ids are 3 + byte value.
    first, second = 3 + 0xC3, 3 + 0xA9
    assert call(engine, "decode", tokens=[first, second])["text"].endswith("é")
    pieces = stream(engine, [first, second])
    assert pieces[0] == "" and "".join(pieces).endswith("é") and "\ufffd" not in "".join(pieces)


def test_streams_are_independent_and_unknown_streams_are_errors(stories_dir):
    engine = load(stories_dir, 0, 5)
    tokens = generate([engine], PROMPT_TOKENS, 30)
    call(engine, "detok_open", stream="a")
    call(engine, "detok_open", stream="b")
    a = [call(engine, "detok_add", stream="a", tokens=[t])["text"] for t in tokens]
    b = call(engine, "detok_add", stream="b", tokens=tokens)["text"]
    a.append(call(engine, "detok_close", stream="a")["text"])
    b += call(engine, "detok_close", stream="b")["text"]
    assert "".join(a) == b == GOLDEN_TEXT[: len(b)]
    assert engine.handle({"id": 2, "op": "detok_add", "stream": "a", "tokens": [5]})["error"]["code"] == "NOT_FOUND"
    call(engine, "detok_open", stream="c")
    assert engine.handle({"id": 3, "op": "detok_add", "stream": "c", "tokens": [512]})["error"]["code"] == "BAD_REQUEST"
    # A new load (a new plan) keeps the stream: the request replays on the new plan and its text goes on.
    text = call(engine, "detok_add", stream="c", tokens=tokens[:3])["text"]
    call(engine, "load", model=str(stories_dir), start=0, end=3)
    text += call(engine, "detok_add", stream="c", tokens=tokens[3:])["text"]
    text += call(engine, "detok_close", stream="c")["text"]
    assert text == b and call(engine, "stats")["detokenizers"] == 0
