// Tensor: a GPU buffer plus a shape and an element type. Row-major, NCHW for images. The autograd
// layer (src/autograd/) builds on this; kernels take and return plain Tensors.
//
// dtype: 'f32' everywhere by default. 'f16' is a storage format (half the bytes and bandwidth; kernels
// that accept it, e.g. matmul, still compute in f32); it needs the adapter's `shader-f16` feature for
// kernels, not for the tensor itself. On the CPU side values are always Float32Array: `from`/`write`
// round to f16 (to nearest, ties to even) and `read` widens back.

import type { Gpu } from './device.js';

export type Shape = readonly number[];
export type DType = 'f32' | 'f16';

/** Bytes per element. */
export const dtypeBytes = (d: DType): number => (d === 'f16' ? 2 : 4);

export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`bad shape [${shape.join(', ')}]`);
    n *= d;
  }
  return n;
}

export class Tensor {
  readonly size: number;
  private disposed = false;

  /**
   * Prefer the factories. `owner` is false for views (reshape): disposing a view does not release
   * the buffer its base owns.
   */
  constructor(readonly gpu: Gpu, readonly buffer: GPUBuffer, readonly shape: Shape, readonly owner = true, readonly dtype: DType = 'f32') {
    this.size = numel(shape);
  }

  /** Bytes of the data (the buffer itself is rounded up to 4 bytes). */
  get byteLength(): number { return this.size * dtypeBytes(this.dtype); }
  get isDisposed(): boolean { return this.disposed; }

  /** An uninitialised tensor from the pool. */
  static empty(gpu: Gpu, shape: Shape, label?: string, dtype: DType = 'f32'): Tensor {
    // NOTE: rounded up to 4 bytes: an odd number of halves still needs a 4-byte-multiple buffer.
    const bytes = Math.ceil((numel(shape) * dtypeBytes(dtype)) / 4) * 4;
    return new Tensor(gpu, gpu.alloc(Math.max(4, bytes), label), shape, true, dtype);
  }

  static zeros(gpu: Gpu, shape: Shape, dtype: DType = 'f32'): Tensor {
    const t = Tensor.empty(gpu, shape, undefined, dtype);
    gpu.zero(t.buffer, 0, Math.ceil(Math.max(4, t.byteLength) / 4) * 4);
    return t;
  }

  /** A tensor holding `data` (rounded to f16 for dtype 'f16'). */
  static from(gpu: Gpu, data: ArrayLike<number>, shape: Shape = [data.length], dtype: DType = 'f32'): Tensor {
    if (numel(shape) !== data.length) throw new Error(`Tensor.from: ${data.length} values do not fill shape [${shape.join(', ')}]`);
    const t = Tensor.empty(gpu, shape, undefined, dtype);
    if (data.length) t.write(data);
    return t;
  }

  /** Copies the values back to the CPU (as f32 whatever the dtype). */
  async read(): Promise<Float32Array> {
    this.assertLive();
    if (this.size === 0) return new Float32Array(0);
    const bytes = await this.gpu.read(this.buffer, 0, this.byteLength);
    return this.dtype === 'f16' ? halvesToFloats(new Uint16Array(bytes)) : new Float32Array(bytes);
  }

  /** Same data, new shape (no copy). The view must not outlive this tensor. */
  reshape(shape: Shape): Tensor {
    if (numel(shape) !== this.size) throw new Error(`reshape: [${this.shape.join(', ')}] -> [${shape.join(', ')}] changes the element count`);
    return new Tensor(this.gpu, this.buffer, shape, false, this.dtype);
  }

  /** Overwrites the contents from CPU data of the same size (rounded to f16 for dtype 'f16'). */
  write(data: ArrayLike<number>) {
    if (data.length !== this.size) throw new Error(`write: ${data.length} values for ${this.size} elements`);
    if (this.dtype === 'f16') {
      // NOTE: writeBuffer sizes must be multiples of 4 bytes: an odd count gets one padding half.
      const h = new Uint16Array(data.length + (data.length & 1));
      for (let i = 0; i < data.length; i++) h[i] = f16Bits(data[i]!);
      this.gpu.upload(this.buffer, h);
    } else {
      this.gpu.upload(this.buffer, data instanceof Float32Array ? data : Float32Array.from(data));
    }
  }

  /** Returns the buffer to the pool. Idempotent. */
  dispose() {
    if (this.disposed) return;
    this.disposed = true;
    if (this.owner) this.gpu.release(this.buffer);
  }

  assertLive() {
    if (this.disposed) throw new Error('tensor used after dispose()');
  }
}

/**
 * Throws unless every given tensor is f32: the families without f16 kernels call this first, so an
 * f16 tensor is a clear error there, never a silent misread of its 2-byte elements.
 */
export function assertF32(op: string, ...ts: (Tensor | null | undefined)[]) {
  const bad = ts.find((t) => t && t.dtype !== 'f32');
  if (bad) throw new Error(`${op}: f16 tensors are supported by matmul and conv2d only; cast to f32 first (kernels/cast.ts)`);
}

/** Throws unless `a` has exactly `shape` (for launcher argument checks). */
export function expectShape(what: string, t: Tensor, shape: Shape) {
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new Error(`${what}: expected shape [${shape.join(', ')}], got [${t.shape.join(', ')}]`);
  }
}

// ---- f16 on the CPU ---------------------------------------------------------------------------
//
// IEEE 754 binary16: 1 sign bit, 5 exponent bits (bias 15), 10 mantissa bits. Normal values are
// (1024 + m)·2^(e−25), subnormals (e = 0) m·2^−24, e = 31 is ∞ (m = 0) or NaN.

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/**
 * The f16 bit pattern nearest to `x` (ties to even, as the GPU's f32→f16 conversion and PyTorch's
 * `.half()` round), with overflow to ±∞. NOTE: `x` is first rounded to f32, then to f16. For f32
 * inputs (Float32Array data) that is exact round-to-nearest-even; a double that is not an f32 can,
 * rarely, land on a tie made by the first rounding and come out one f16 ulp off.
 */
export function f16Bits(x: number): number {
  f32Scratch[0] = x;
  const b = u32Scratch[0]!;
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff; // biased f32 exponent
  const mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // ±∞, NaN (quiet)
  const e = exp - 127 + 15; // biased f16 exponent
  if (e >= 0x1f) return sign | 0x7c00; // too large: ±∞
  if (e >= 1) {
    // Normal: keep the top 10 of 23 mantissa bits, round on the 13 dropped. A carry out of the
    // mantissa correctly bumps the exponent (and 0x7bff + 1 is ∞).
    let h = (e << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h++;
    return sign | h;
  }
  // Subnormal result: m = significand·2^(exp−126), the 24-bit significand shifted right by 126 − exp.
  const shift = 126 - exp;
  if (shift > 24) return sign; // below half the smallest subnormal (2^−25): ±0
  const sig = mant | 0x800000;
  let h = sig >>> shift;
  const rest = sig & ((1 << shift) - 1), half = 1 << (shift - 1);
  if (rest > half || (rest === half && (h & 1))) h++; // rounding up to 0x400 gives the smallest normal
  return sign | h;
}

/** The value of an f16 bit pattern. */
export function f16Value(h: number): number {
  const sign = h & 0x8000 ? -1 : 1, e = (h >>> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : sign * Infinity;
  return sign * (1024 + m) * 2 ** (e - 25);
}

function halvesToFloats(h: Uint16Array): Float32Array {
  const out = new Float32Array(h.length);
  for (let i = 0; i < h.length; i++) out[i] = f16Value(h[i]!);
  return out;
}
