"""MLX arrays <-> `{dtype, shape, data}` with data the raw little-endian bytes, never cast.

numpy has no bfloat16, so 2-byte float types go through a uint16 view of the same bytes.
"""

import sys

import mlx.core as mx
import numpy as np

from .errors import bad_request

_MX = {
    "bool": mx.bool_,
    "uint8": mx.uint8,
    "int8": mx.int8,
    "uint16": mx.uint16,
    "int16": mx.int16,
    "float16": mx.float16,
    "bfloat16": mx.bfloat16,
    "uint32": mx.uint32,
    "int32": mx.int32,
    "float32": mx.float32,
    "uint64": mx.uint64,
    "int64": mx.int64,
}
_NAME = {v: k for k, v in _MX.items()}
# The numpy dtype whose bytes carry each MLX dtype unchanged.
_CARRIER = {"bfloat16": np.uint16, "float16": np.uint16, "bool": np.uint8}

if sys.byteorder != "little":  # pragma: no cover - MLX runs on little-endian machines only
    raise ImportError("the tensor wire format is little-endian")


def dtype_name(dtype: mx.Dtype) -> str:
    try:
        return _NAME[dtype]
    except KeyError:
        raise bad_request(f"dtype {dtype} cannot travel on the wire") from None


def encode_tensor(array: mx.array) -> dict:
    name = dtype_name(array.dtype)
    carrier = _CARRIER.get(name)
    view = array.view(mx.uint16 if carrier is np.uint16 else mx.uint8) if carrier else array
    # A view of the array's own memory (copied only if it is not contiguous): the framing writes it as is.
    data = memoryview(np.ascontiguousarray(np.array(view, copy=False))).cast("B")
    return {"dtype": name, "shape": list(array.shape), "data": data}


def decode_tensor(value: object) -> mx.array:
    if not isinstance(value, dict):
        raise bad_request("tensor must be a map {dtype, shape, data}")
    name, shape, data = value.get("dtype"), value.get("shape"), value.get("data")
    if name not in _MX:
        raise bad_request(f"unknown tensor dtype {name!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise bad_request("tensor shape must be a list of non-negative ints")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise bad_request("tensor data must be a byte string")
    dtype = _MX[name]
    count = int(np.prod(shape)) if shape else 1
    if memoryview(data).nbytes != count * dtype.size:
        raise bad_request(f"tensor {name}{shape} needs {count * dtype.size} bytes, got {memoryview(data).nbytes}")
    carrier = _CARRIER.get(name)
    if carrier is not None:
        raw = mx.array(np.frombuffer(data, dtype=carrier).reshape(shape))
        return raw.view(dtype)
    return mx.array(np.frombuffer(data, dtype=np.dtype(name)).reshape(shape))
