import { beforeAll, describe, expect, it } from 'vitest';
import { Tensor, type Gpu } from '../../src/gpu/index.js';
import { f16Bits, f16Value } from '../../src/gpu/tensor.js';
import { cast } from '../../src/kernels/cast.js';
import { device, Rng } from '../helpers.js';

let gpu: Gpu;
beforeAll(async () => { gpu = await device(); });

/** Every finite f16 value, in bit-pattern order (63488 − 2 of them: ±0 both included). */
function allFiniteHalves(): Float32Array {
  const v: number[] = [];
  for (let h = 0; h < 0x10000; h++) if (((h >>> 10) & 0x1f) !== 0x1f) v.push(f16Value(h));
  return Float32Array.from(v);
}

describe('f16 on the CPU (tensor.ts)', () => {
  it('rounds to nearest, ties to even; subnormals, overflow, NaN', () => {
    const cases: [number, number][] = [
      [1, 0x3c00], [-2, 0xc000], [0.1, 0x2e66], [-0, 0x8000], [65504, 0x7bff],
      [65519.99, 0x7bff], [65520, 0x7c00] /* tie between 65504 and 2^16 → even → ∞ */, [1e6, 0x7c00], [-Infinity, 0xfc00],
      [2 ** -14, 0x0400], [2 ** -24, 0x0001], [2 ** -25, 0x0000] /* tie → even 0 */, [3 * 2 ** -26, 0x0001],
      [1 + 2 ** -11, 0x3c00] /* tie → even */, [1 + 3 * 2 ** -11, 0x3c02] /* tie → even (up) */, [1 + 2 ** -11 + 2 ** -20, 0x3c01],
      [(1023.5) * 2 ** -24, 0x0400] /* subnormal rounding up into the smallest normal */, [2 ** -30, 0],
    ];
    for (const [x, h] of cases) expect(f16Bits(x), `f16Bits(${x})`).toBe(h);
    expect(f16Bits(NaN) & 0x7e00).toBe(0x7e00);
    expect(Number.isNaN(f16Value(0x7e00))).toBe(true);
  });

  it('every f16 bit pattern survives value → bits', () => {
    for (let h = 0; h < 0x10000; h++) {
      const v = f16Value(h);
      if (!Number.isNaN(v) && f16Bits(v) !== h) throw new Error(`f16 0x${h.toString(16)} (${v}) → 0x${f16Bits(v).toString(16)}`);
    }
  });
});

describe('cast (GPU)', () => {
  it('f32 → f16 → f32 round trip of every finite f16 value is exact', async () => {
    const v = allFiniteHalves();
    const x = Tensor.from(gpu, v, [v.length]);
    const h = cast(x, 'f16');
    expect(h.dtype).toBe('f16');
    expect(h.byteLength).toBe(v.length * 2);
    const back = cast(h, 'f32');
    expect(back.dtype).toBe('f32');
    expect([...back.shape]).toEqual([v.length]);
    expect(await h.read()).toEqual(v); // read() widens f16 storage on the CPU
    expect(await back.read()).toEqual(v); // the GPU's unpack
    // And from the CPU's own f16 upload.
    const up = Tensor.from(gpu, v, [v.length], 'f16');
    const up32 = cast(up, 'f32');
    expect(await up32.read()).toEqual(v);
    for (const t of [x, h, back, up, up32]) t.dispose();
  });

  it('odd counts and shapes (the padding half), same-dtype copy', async () => {
    for (const shape of [[1], [7], [3, 5], [2, 3, 3]]) {
      const n = shape.reduce((a, b) => a * b, 1);
      const v = Float32Array.from({ length: n }, (_, i) => (i - 3) * 0.25);
      const x = Tensor.from(gpu, v, shape);
      const h = cast(x, 'f16'), back = cast(h, 'f32'), copy = cast(h, 'f16');
      expect([...h.shape]).toEqual(shape);
      expect(await back.read()).toEqual(v);
      expect(await copy.read()).toEqual(v);
      for (const t of [x, h, back, copy]) t.dispose();
    }
  });

  it('rounding of inexact values: within one f16 ulp of x, and reported against round-to-nearest-even', async () => {
    const rng = new Rng(5);
    const n = 4099;
    const v = Float32Array.from({ length: n }, (_, i) => rng.uniform(-1, 1) * 2 ** ((i % 36) - 22)); // |x| < 2^13: in range
    const x = Tensor.from(gpu, v), h = cast(x, 'f16');
    const got = await h.read();
    let differ = 0;
    for (let i = 0; i < n; i++) {
      const rne = f16Value(f16Bits(v[i]!));
      if (got[i] !== rne) differ++;
      // One ulp of f16 at |x|: 2^(e−10) for normals, 2^−24 for subnormals.
      const ulp = 2 ** (Math.max(-14, Math.floor(Math.log2(Math.abs(v[i]!) || 2 ** -24))) - 10);
      expect(Math.abs(got[i]! - v[i]!), `x=${v[i]}`).toBeLessThanOrEqual(ulp);
    }
    console.log(`cast f32→f16 on ${gpu.adapterName}: ${differ} of ${n} differ from round-to-nearest-even`);
    x.dispose(); h.dispose();
  });

  it('a tensor above the binding limit is cast in windows', async () => {
    const n = gpu.maxBinding / 4 + 1027; // f32 side just above one binding
    const v = new Float32Array(n);
    for (let i = 0; i < n; i++) v[i] = ((i % 4093) - 2046) * 0.5; // exact in f16
    const x = Tensor.from(gpu, v);
    const h = cast(x, 'f16');
    x.dispose();
    const back = cast(h, 'f32');
    const got = await back.read();
    let bad = -1;
    for (let i = 0; i < n && bad < 0; i++) if (got[i] !== v[i]) bad = i;
    expect(bad, bad >= 0 ? `element ${bad}: got ${got[bad]}, want ${v[bad]}` : '').toBe(-1);
    h.dispose(); back.dispose();
  });
});

describe('families without f16 kernels refuse f16 tensors', () => {
  it('a one-line error, not a silent misread of 2-byte elements', async () => {
    const gpu = await device();
    const h = Tensor.from(gpu, [1, -2, 3, -4], [1, 1, 2, 2], 'f16');
    const { relu } = await import('../../src/kernels/elementwise.js');
    const { maxPool2d } = await import('../../src/kernels/pool.js');
    const { softmax } = await import('../../src/kernels/softmax.js');
    const { sumAll } = await import('../../src/kernels/reduce.js');
    for (const f of [() => relu(h), () => maxPool2d(h, { kernel: 2 }), () => softmax(h.reshape([2, 2])), () => sumAll(h)]) {
      expect(f).toThrow(/f16 tensors are supported by matmul and conv2d only; cast to f32 first/);
    }
    h.dispose();
  });
});
