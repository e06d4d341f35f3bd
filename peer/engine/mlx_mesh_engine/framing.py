"""Length-prefixed CBOR frames: a 4-byte big-endian length, then one CBOR map.

A clean EOF between frames ends the stream normally; EOF inside a frame is an error, because the
other side died mid-write and the stream cannot be trusted any more.
"""

import struct
from typing import Any, BinaryIO, Optional

import cbor2

# Large enough for a long prefill chunk of a big model's activations, small enough to refuse garbage.
MAX_FRAME_BYTES = 1 << 30
_HEADER = struct.Struct(">I")


class FrameError(Exception):
    """The byte stream is broken (truncated or oversize frame): the stream must be closed."""


class BadFrame(Exception):
    """One frame's payload is not a CBOR map; the stream itself is still in sync."""


def _read_exactly(stream: BinaryIO, n: int) -> bytes:
    chunks = []
    remaining = n
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(stream: BinaryIO, max_bytes: int = MAX_FRAME_BYTES) -> Optional[dict]:
    """The next frame's map, or None on a clean EOF before any byte of a frame."""
    header = _read_exactly(stream, _HEADER.size)
    if not header:
        return None
    if len(header) < _HEADER.size:
        raise FrameError(f"truncated frame header ({len(header)} of {_HEADER.size} bytes)")
    (length,) = _HEADER.unpack(header)
    if length > max_bytes:
        raise FrameError(f"frame of {length} bytes exceeds the limit of {max_bytes}")
    payload = _read_exactly(stream, length)
    if len(payload) < length:
        raise FrameError(f"truncated frame ({len(payload)} of {length} bytes)")
    try:
        value = cbor2.loads(payload)
    except Exception as err:  # cbor2 raises several types for garbage
        raise BadFrame(f"frame is not valid CBOR: {err}") from err
    if not isinstance(value, dict):
        raise BadFrame("frame is not a CBOR map")
    return value


def encode_frame(value: Any, max_bytes: int = MAX_FRAME_BYTES) -> bytes:
    payload = cbor2.dumps(value)
    if len(payload) > max_bytes:
        raise FrameError(f"frame of {len(payload)} bytes exceeds the limit of {max_bytes}")
    return _HEADER.pack(len(payload)) + payload


def write_frame(stream: BinaryIO, value: Any, max_bytes: int = MAX_FRAME_BYTES) -> None:
    stream.write(encode_frame(value, max_bytes))
    stream.flush()
