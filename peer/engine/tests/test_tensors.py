import numpy as np
import pytest

import mlx.core as mx

from mlx_mesh_engine.errors import EngineError
from mlx_mesh_engine.tensors import decode_tensor, encode_tensor


@pytest.mark.parametrize(
    "name,itemsize",
    [("float32", 4), ("float16", 2), ("bfloat16", 2), ("int32", 4)],
)
def test_bytes_survive_decode_and_encode_unchanged(name, itemsize):
    # Arbitrary bit patterns, NaN payloads included: nothing may be cast or canonicalised.
    raw = np.random.default_rng(7).integers(0, 256, size=2 * 3 * 4 * itemsize, dtype=np.uint8).tobytes()
    wire = {"dtype": name, "shape": [2, 3, 4], "data": raw}
    array = decode_tensor(wire)
    assert array.dtype == getattr(mx, name) and array.shape == (2, 3, 4)
    assert encode_tensor(array) == wire


def test_bfloat16_values_are_the_same_numbers():
    a = mx.array([1.0, -2.5, 3.140625, 65280.0], dtype=mx.bfloat16)
    wire = encode_tensor(a)
    assert len(wire["data"]) == 8
    assert mx.array_equal(decode_tensor(wire), a).item()


def test_wrong_size_and_unknown_dtype_are_rejected():
    with pytest.raises(EngineError, match="needs 16 bytes"):
        decode_tensor({"dtype": "float32", "shape": [2, 2], "data": b"\x00" * 15})
    with pytest.raises(EngineError, match="dtype"):
        decode_tensor({"dtype": "float128", "shape": [1], "data": b"\x00" * 16})
