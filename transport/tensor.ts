// Tensors on the wire: {dtype, shape, data} with data the raw little-endian bytes, never cast.
import { meshError } from '../core/errors.ts';

export const DTYPE_BYTES = {
  bool: 1,
  uint8: 1,
  int8: 1,
  uint16: 2,
  int16: 2,
  float16: 2,
  bfloat16: 2,
  uint32: 4,
  int32: 4,
  float32: 4,
  uint64: 8,
  int64: 8,
  float64: 8,
} as const;

export type DType = keyof typeof DTYPE_BYTES;
export const DTYPES = Object.keys(DTYPE_BYTES) as DType[];

export interface Tensor {
  dtype: DType;
  shape: number[];
  data: Uint8Array;
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}

export function expectedBytes(dtype: DType, shape: readonly number[]): number {
  return elementCount(shape) * DTYPE_BYTES[dtype];
}

/** Throws TENSOR_SIZE when the bytes cannot be a tensor of that dtype and shape. */
export function checkTensor(t: Tensor): Tensor {
  const want = expectedBytes(t.dtype, t.shape);
  if (t.data.byteLength !== want) {
    throw meshError(
      'TENSOR_SIZE',
      `tensor ${t.dtype}[${t.shape.join(',')}] needs ${want} bytes, got ${t.data.byteLength}`,
    );
  }
  return t;
}

/** A float32 tensor from numbers (tests and small control tensors). */
export function float32Tensor(shape: number[], values: ArrayLike<number>): Tensor {
  const arr = Float32Array.from(values as ArrayLike<number>);
  return checkTensor({ dtype: 'float32', shape, data: new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength) });
}
