"""Length-prefixed CBOR frames: a 4-byte big-endian length, then one CBOR map.

A clean EOF between frames ends the stream normally; EOF inside a frame is an error, because the
other side died mid-write and the stream cannot be trusted any more.

Tensors are large: a frame is read in one piece and its large byte strings are decoded as views of
it; they are written as their CBOR header followed by their own buffer (no copy), the same bytes
cbor2 would write.
"""

import io
import struct
from typing import Any, BinaryIO, List, Optional, Tuple

import cbor2

# Large enough for a long prefill chunk of a big model's activations, small enough to refuse garbage.
MAX_FRAME_BYTES = 1 << 30
_HEADER = struct.Struct(">I")
# Byte strings from this size on, up to two maps deep (a reply's tensor), are written without copying.
_LARGE_BYTES = 1024
_LARGE_DEPTH = 2


class FrameError(Exception):
    """The byte stream is broken (truncated or oversize frame): the stream must be closed."""


class BadFrame(Exception):
    """One frame's payload is not a CBOR map; the stream itself is still in sync."""


def _read_into(stream: BinaryIO, buf: bytearray) -> int:
    """Fills buf from the stream; returns how many bytes arrived before EOF."""
    view = memoryview(buf)
    got = 0
    while got < len(buf):
        n = stream.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def read_frame(stream: BinaryIO, max_bytes: int = MAX_FRAME_BYTES) -> Optional[dict]:
    """The next frame's map, or None on a clean EOF before any byte of a frame."""
    header = bytearray(_HEADER.size)
    got = _read_into(stream, header)
    if not got:
        return None
    if got < _HEADER.size:
        raise FrameError(f"truncated frame header ({got} of {_HEADER.size} bytes)")
    (length,) = _HEADER.unpack(header)
    if length > max_bytes:
        raise FrameError(f"frame of {length} bytes exceeds the limit of {max_bytes}")
    # A buffered stream's read(n) fills one bytes object straight from the pipe; tensors in it are
    # then handed out as views, never copied.
    payload = stream.read(length)
    if len(payload) < length:
        raise FrameError(f"truncated frame ({len(payload)} of {length} bytes)")
    try:
        fp = io.BytesIO(payload)  # shares the payload's memory
        value = _decode(payload, fp, cbor2.CBORDecoder(fp), _LARGE_DEPTH)
        if fp.tell() != length:
            raise ValueError(f"{length - fp.tell()} bytes after the CBOR item")
    except Exception as err:  # cbor2 raises several types for garbage
        raise BadFrame(f"frame is not valid CBOR: {err}") from err
    if not isinstance(value, dict):
        raise BadFrame("frame is not a CBOR map")
    return value


def _argument(payload: bytes, at: int) -> Tuple[int, int, int]:
    """(major type, argument, offset after the head) of the CBOR item at `at`; argument -1 if indefinite."""
    initial = payload[at]
    major, info = initial >> 5, initial & 0x1F
    if info < 24:
        return major, info, at + 1
    if 24 <= info <= 27:
        size = 1 << (info - 24)
        return major, int.from_bytes(payload[at + 1 : at + 1 + size], "big"), at + 1 + size
    return major, -1, at + 1


def _decode(payload: bytes, fp: io.BytesIO, decoder: "cbor2.CBORDecoder", depth: int) -> Any:
    """One CBOR item at fp's position: maps (up to `depth` deep) walked here so that large byte strings
    come back as views of the payload instead of copies; everything else is cbor2's."""
    at = fp.tell()
    major, n, body = _argument(payload, at)
    if major == 2 and n >= _LARGE_BYTES:
        if body + n > len(payload):
            raise ValueError("byte string runs past the end of the frame")
        fp.seek(body + n)
        return memoryview(payload)[body : body + n]
    if major == 5 and n >= 0 and depth > 0:
        fp.seek(body)
        out = {}
        for _ in range(n):
            key = decoder.decode()
            out[key] = _decode(payload, fp, decoder, depth - 1)
        return out
    return decoder.decode()


def _is_large(v: Any) -> bool:
    # Memoryviews of any size (tensors.encode_tensor's data) too: cbor2 would write them as arrays of ints.
    return isinstance(v, memoryview) or (isinstance(v, (bytes, bytearray)) and len(v) >= _LARGE_BYTES)


def _has_large(v: Any, depth: int) -> bool:
    return isinstance(v, dict) and any(_is_large(x) or (depth > 1 and _has_large(x, depth - 1)) for x in v.values())


def _head(major: int, n: int) -> bytes:
    """A CBOR major type with its argument in the shortest form (RFC 8949 section 3)."""
    m = major << 5
    if n < 24:
        return bytes([m | n])
    for extra, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if n < 1 << (8 * struct.calcsize(fmt)):
            return bytes([m | extra]) + struct.pack(fmt, n)
    raise ValueError("CBOR argument too large")


def _parts(value: Any, depth: int, out: List[Any]) -> None:
    if _is_large(value):
        view = memoryview(value).cast("B")
        out.append(_head(2, view.nbytes))
        out.append(view)
    elif depth > 0 and _has_large(value, depth):
        out.append(_head(5, len(value)))
        for key, x in value.items():
            out.append(cbor2.dumps(key))
            _parts(x, depth - 1, out)
    else:
        out.append(cbor2.dumps(value))


def encode_frame_parts(value: Any, max_bytes: int = MAX_FRAME_BYTES) -> List[Any]:
    """The frame (length prefix first) as buffers to write in order; large byte strings are not copied."""
    parts: List[Any] = []
    _parts(value, _LARGE_DEPTH, parts)
    length = sum(memoryview(p).nbytes for p in parts)
    if length > max_bytes:
        raise FrameError(f"frame of {length} bytes exceeds the limit of {max_bytes}")
    return [_HEADER.pack(length), *parts]


def encode_frame(value: Any, max_bytes: int = MAX_FRAME_BYTES) -> bytes:
    return b"".join(encode_frame_parts(value, max_bytes))


def write_frame(stream: BinaryIO, value: Any, max_bytes: int = MAX_FRAME_BYTES) -> None:
    # Each part goes to the buffered stream as it is: small ones gather in its buffer (a small frame
    # leaves in one write, at the flush), a buffer larger than that is written straight from its memory.
    for part in encode_frame_parts(value, max_bytes):
        stream.write(part)
    stream.flush()
