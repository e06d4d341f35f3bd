import io
import struct

import cbor2
import pytest

from mlx_mesh_engine.framing import BadFrame, FrameError, encode_frame, read_frame, write_frame
from mlx_mesh_engine.server import serve


def frames(*values) -> io.BytesIO:
    return io.BytesIO(b"".join(encode_frame(v) for v in values))


def replies(buf: io.BytesIO):
    buf.seek(0)
    out = []
    while (msg := read_frame(buf)) is not None:
        out.append(msg)
    return out


def test_round_trip_then_clean_eof():
    stream = frames({"id": 1, "op": "hello"}, {"id": 2, "data": b"\x00\xff" * 10, "x": [1.5, None]})
    assert read_frame(stream) == {"id": 1, "op": "hello"}
    assert read_frame(stream) == {"id": 2, "data": b"\x00\xff" * 10, "x": [1.5, None]}
    assert read_frame(stream) is None


def test_write_frame_is_length_prefixed_cbor():
    buf = io.BytesIO()
    write_frame(buf, {"a": 1})
    raw = buf.getvalue()
    assert struct.unpack(">I", raw[:4])[0] == len(raw) - 4
    assert cbor2.loads(raw[4:]) == {"a": 1}


def test_truncated_header_and_payload_are_errors():
    whole = encode_frame({"id": 1, "op": "stats"})
    with pytest.raises(FrameError, match="header"):
        read_frame(io.BytesIO(whole[:2]))
    with pytest.raises(FrameError, match="truncated frame"):
        read_frame(io.BytesIO(whole[:-1]))


def test_oversize_frame_is_refused_before_reading_it():
    stream = io.BytesIO(struct.pack(">I", 1 << 20) + b"\x00" * 10)
    with pytest.raises(FrameError, match="exceeds"):
        read_frame(stream, max_bytes=1024)


def test_garbage_and_non_map_payloads_are_bad_frames():
    with pytest.raises(BadFrame):
        read_frame(io.BytesIO(struct.pack(">I", 2) + b"\xff\xff"))
    with pytest.raises(BadFrame, match="map"):
        read_frame(io.BytesIO(encode_frame([1, 2, 3])))


def test_serve_answers_bad_requests_and_keeps_going():
    out = io.BytesIO()
    stdin = io.BytesIO(
        encode_frame({"id": 1, "op": "nope"})
        + encode_frame([1])
        + encode_frame({"id": 2, "op": "forward", "request": "r", "offset": 0})
        + encode_frame({"id": 3, "op": "stats"})
    )
    assert serve(stdin, out) == 0
    r1, r2, r3, r4 = replies(out)
    assert r1["id"] == 1 and not r1["ok"] and r1["error"]["code"] == "BAD_REQUEST"
    assert r2["id"] is None and r2["error"]["code"] == "BAD_FRAME"
    assert r3["id"] == 2 and r3["error"]["code"] == "NOT_LOADED"
    # The engine kept serving: stats answers with nothing in flight (its other figures are tested where used).
    assert r4["id"] == 3 and r4["ok"] and r4["requests"] == 0 and r4["detokenizers"] == 0 and r4["peak_rss_bytes"] > 0
    assert all(r["compute_ms"] >= 0 for r in (r1, r3, r4)), "every answered op says how long it took inside the engine"


def test_serve_exits_non_zero_on_truncated_input_and_zero_after_shutdown():
    whole = encode_frame({"id": 1, "op": "stats"})
    out = io.BytesIO()
    assert serve(io.BytesIO(whole + whole[:5]), out) == 2
    assert [r["id"] for r in replies(out)] == [1]

    out = io.BytesIO()
    assert serve(frames({"id": 1, "op": "shutdown"}, {"id": 2, "op": "stats"}), out) == 0
    assert [{k: v for k, v in r.items() if k != "compute_ms"} for r in replies(out)] == [{"id": 1, "ok": True}]


def test_a_16_mib_tensor_round_trips_through_the_frame_stream():
    import mlx.core as mx
    import numpy as np

    from mlx_mesh_engine.tensors import decode_tensor, encode_tensor

    array = mx.array(np.random.default_rng(3).standard_normal((1, 2048, 2048), dtype=np.float32))
    buf = io.BytesIO()
    write_frame(buf, {"id": 7, "ok": True, "hidden": encode_tensor(array)})
    buf.seek(0)
    msg = read_frame(buf)
    assert msg["id"] == 7 and len(msg["hidden"]["data"]) == 16 << 20
    assert mx.array_equal(decode_tensor(msg["hidden"]), array).item()
    assert read_frame(buf) is None


def test_large_and_view_byte_strings_are_written_as_cbor2_writes_bytes():
    value = {"id": 1, "hidden": {"dtype": "uint8", "shape": [3000], "data": memoryview(bytes(range(256)) * 12)[:3000]}}
    plain = {"id": 1, "hidden": {"dtype": "uint8", "shape": [3000], "data": (bytes(range(256)) * 12)[:3000]}}
    assert encode_frame(value)[4:] == cbor2.dumps(plain)
    small = {"logits": {"data": memoryview(b"\x01\x02")}}
    assert cbor2.loads(encode_frame(small)[4:]) == {"logits": {"data": b"\x01\x02"}}
