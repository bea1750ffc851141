// conv2d with f16 storage (x, w, b, dY and the outputs in f16; products and sums in f32) vs the
// float64 reference.
//
// NOTE: the tolerance. The reference is given the inputs already rounded to f16 (f16Bits/f16Value,
// the same rounding Tensor.from applies), so the only differences left are the f32 accumulation
// (~1e-7 relative per term) and the one rounding of each output to f16: at most half an f16 ulp,
// 2^−11 ≈ 4.9e-4 of the value. The tests ask for |got − want| ≤ 2e-3·(|want| + s), s the output's
// RMS scale: 4× the rounding, and far below what a wrong tap or a missing term gives (~1/√terms of s).

import { beforeAll, describe, expect, it } from 'vitest';
import { Tensor, type Gpu } from '../../src/gpu/index.js';
import { f16Bits, f16Value } from '../../src/gpu/tensor.js';
import {
  conv2d, conv2dBackwardBias, conv2dBackwardInput, conv2dBackwardWeight, convGeometry, type Conv2dOptions,
} from '../../src/kernels/conv2d.js';
import {
  conv2dBackwardBiasRef, conv2dBackwardInputRef, conv2dBackwardWeightRef, conv2dRef,
} from '../../src/kernels/reference/conv2d.js';
import { device, expectClose, Rng } from '../helpers.js';

let gpu: Gpu;
beforeAll(async () => { gpu = await device(); });

const RTOL = 2e-3;
const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
const scale = (ref: ArrayLike<number>) => Math.sqrt(Array.from(ref).reduce((s, v) => s + v * v, 0) / Math.max(1, ref.length)) || 1;
/** The values an f16 tensor made from `v` holds. */
const f16Rounded = (v: Float32Array) => Float32Array.from(v, (x) => f16Value(f16Bits(x)));
const close = (what: string, got: ArrayLike<number>, want: ArrayLike<number>) => expectClose(what, got, want, RTOL, scale(want));

// [x shape, w shape, options, bias]: padded, strided, grouped, depthwise, several channel blocks (odd
// sizes: images start at odd element offsets), and a dW whose v2 reduction is one slice (P = 1).
type Case = [number[], number[], Conv2dOptions, boolean];
const CASES: Case[] = [
  [[2, 3, 7, 7], [4, 3, 3, 3], { padding: 1 }, true],
  [[1, 4, 17, 17], [8, 4, 3, 3], { stride: 2, padding: 1 }, true],
  [[2, 4, 17, 17], [4, 2, 3, 3], { groups: 2, stride: 2, padding: [0, 1, 2, 3] }, true],
  [[2, 17, 9, 9], [33, 17, 3, 3], { padding: 1 }, false],
  [[1, 8, 17, 17], [8, 1, 3, 3], { groups: 8, padding: 1 }, true],
  [[1, 3, 17, 17], [8, 3, 3, 3], { stride: 3 }, false],
  [[1, 8, 3, 3], [8, 8, 3, 3], { stride: 3 }, true],          // P = Q = 1: dW v2 without split-K
];

/** Random f32 data and its f16-rounded copy (what the GPU tensors hold and the reference gets). */
function data(c: Case, seed: number) {
  const [xs, ws, o, bias] = c;
  const rng = new Rng(seed);
  const g = convGeometry(xs, ws, o);
  const ys = [g.N, g.K, g.P, g.Q];
  const x = f16Rounded(rng.array(numel(xs))), w = f16Rounded(rng.array(numel(ws)));
  const b = bias ? f16Rounded(rng.array(ws[0]!)) : null, dy = f16Rounded(rng.array(numel(ys)));
  const t = {
    x: Tensor.from(gpu, x, xs, 'f16'), w: Tensor.from(gpu, w, ws, 'f16'), dy: Tensor.from(gpu, dy, ys, 'f16'),
    b: b ? Tensor.from(gpu, b, [ws[0]!], 'f16') : undefined,
  };
  return { xs, ws, ys, o, x, w, b, dy, g, t, dispose: () => [t.x, t.w, t.dy, t.b].forEach((v) => v?.dispose()) };
}

describe('conv2d with f16 storage vs float64 reference', () => {
  it.each(CASES.map((c, i) => [i, `x${JSON.stringify(c[0])} w${JSON.stringify(c[1])} ${JSON.stringify(c[2])}${c[3] ? ' +b' : ''}`, c] as const))(
    'case %i: %s', async (i, _name, c) => {
      const d = data(c, 300 + i);
      const dxRef = conv2dBackwardInputRef(d.dy, d.w, d.ws, d.xs, d.o);
      const dwRef = conv2dBackwardWeightRef(d.x, d.xs, d.dy, d.ws, d.o);
      for (const version of [1, 2] as const) {
        for (const activation of [undefined, 'relu'] as const) {
          const o: Conv2dOptions = { ...d.o, version, activation };
          const y = conv2d(d.t.x, d.t.w, d.t.b, o);
          expect(y.dtype).toBe('f16');
          expect([...y.shape]).toEqual(d.ys);
          close(`fwd v${version}${activation ? ' relu' : ''}`, await y.read(), conv2dRef(d.x, d.xs, d.w, d.ws, d.b, o).y);
          y.dispose();
        }
        const o: Conv2dOptions = { ...d.o, version };
        const dX = conv2dBackwardInput(d.t.dy, d.t.w, d.xs, o), dW = conv2dBackwardWeight(d.t.x, d.t.dy, d.ws, o);
        expect([dX.dtype, dW.dtype]).toEqual(['f16', 'f16']);
        close(`dX v${version}`, await dX.read(), dxRef);
        close(`dW v${version}`, await dW.read(), dwRef);
        dX.dispose(); dW.dispose();
      }
      const db = conv2dBackwardBias(d.t.dy);
      expect(db.dtype).toBe('f16');
      close('db', await db.read(), conv2dBackwardBiasRef(d.dy, d.ys));
      db.dispose();
      d.dispose();
    });

  it('v2 without subgroup sharing (f16 loads in every lane)', async () => {
    const d = data(CASES[3]!, 40);
    const o: Conv2dOptions = { ...d.o, share: 'none' };
    close('fwd nosg', await conv2d(d.t.x, d.t.w, d.t.b, o).read(), conv2dRef(d.x, d.xs, d.w, d.ws, d.b, o).y);
    close('dX nosg', await conv2dBackwardInput(d.t.dy, d.t.w, d.xs, o).read(), conv2dBackwardInputRef(d.dy, d.w, d.ws, d.xs, o));
    close('dW nosg', await conv2dBackwardWeight(d.t.x, d.t.dy, d.ws, o).read(), conv2dBackwardWeightRef(d.x, d.xs, d.dy, d.ws, o));
    d.dispose();
  });

  // A long reduction (dW: N·P·Q = 2·32·32 = 2048 terms, split over several slices): f32 sums, one rounding.
  it('dW v2 split-K over a long reduction keeps f32 partial sums', async () => {
    const d = data([[2, 8, 32, 32], [8, 8, 3, 3], { padding: 1 }, false], 41);
    const names: string[] = [];
    gpu.onDispatch = (e) => names.push(e.name);
    let dW: Tensor;
    try { dW = conv2dBackwardWeight(d.t.x, d.t.dy, d.ws, { ...d.o, version: 2 }); } finally { gpu.onDispatch = null; }
    expect(names).toContain('conv2d.dw.sum');     // the partials were summed by the second pass
    expect(dW.dtype).toBe('f16');
    close('dW split-K', await dW.read(), conv2dBackwardWeightRef(d.x, d.xs, d.dy, d.ws, d.o));
    dW.dispose(); d.dispose();
  });

  it.each([1, 2] as const)('v%i batch chunks: 3 images, a binding limit of 2 images, unaligned f16 window starts', async (version) => {
    // Chunks of 2 images; one image of x or y is 4·7·7 = 196 halves (392 bytes), so the second chunk
    // starts 392 halves in: its window binds from the 256-byte boundary at 384 with an offset of 8.
    // dW v1 and db add the chunks in an f32 temporary (then cast), dW v2 in its f32 partials.
    const d = data([[3, 4, 7, 7], [4, 4, 3, 3], { padding: 1 }, true], 42);
    const o: Conv2dOptions = { ...d.o, version, bindingLimit: 2 * 4 * 7 * 7 * 2 + 256 };
    const names: string[] = [];
    gpu.onDispatch = (e) => names.push(e.name);
    try {
      close('fwd chunked', await conv2d(d.t.x, d.t.w, d.t.b, o).read(), conv2dRef(d.x, d.xs, d.w, d.ws, d.b, o).y);
      close('dX chunked', await conv2dBackwardInput(d.t.dy, d.t.w, d.xs, o).read(), conv2dBackwardInputRef(d.dy, d.w, d.ws, d.xs, o));
      close('dW chunked', await conv2dBackwardWeight(d.t.x, d.t.dy, d.ws, o).read(), conv2dBackwardWeightRef(d.x, d.xs, d.dy, d.ws, o));
      close('db chunked', await conv2dBackwardBias(d.t.dy, o).read(), conv2dBackwardBiasRef(d.dy, d.ys));
    } finally {
      gpu.onDispatch = null;
    }
    // The forward ran in 2 chunks (so the limit did split the batch).
    expect(names.filter((n) => n.startsWith('conv2d.fwd')).length).toBe(2);
    d.dispose();
  });

  it('mixed precisions and adapters without shader-f16 are rejected with a clear error', () => {
    const x16 = Tensor.zeros(gpu, [1, 2, 3, 3], 'f16'), w16 = Tensor.zeros(gpu, [2, 2, 1, 1], 'f16'), b16 = Tensor.zeros(gpu, [2], 'f16');
    const x32 = Tensor.zeros(gpu, [1, 2, 3, 3]), w32 = Tensor.zeros(gpu, [2, 2, 1, 1]), b32 = Tensor.zeros(gpu, [2]);
    expect(() => conv2d(x16, w32, b16)).toThrow(/conv2d: x is f16 but w is not/);
    expect(() => conv2d(x32, w32, b16)).toThrow(/conv2d: x is f32 but b is not/);
    expect(() => conv2d(x16, w32, b32)).toThrow(/w, b are not/);
    expect(() => conv2dBackwardInput(x16, w32, [1, 2, 3, 3])).toThrow(/conv2dBackwardInput: dY is f16 but w is not/);
    expect(() => conv2dBackwardWeight(x32, x16, [2, 2, 1, 1])).toThrow(/conv2dBackwardWeight: x is f32 but dY is not/);
    // The same tensors seen through a Gpu whose adapter lacks the feature.
    const noF16 = Object.create(gpu, { features: { value: new Set<string>() } }) as Gpu;
    const x = new Tensor(noF16, x16.buffer, x16.shape, false, 'f16'), w = new Tensor(noF16, w16.buffer, w16.shape, false, 'f16');
    expect(() => conv2d(x, w, undefined)).toThrow(/^conv2d: f16 tensors need the adapter's shader-f16 feature/);
    expect(() => conv2dBackwardBias(x)).toThrow(/shader-f16/);
    for (const t of [x16, w16, b16, x32, w32, b32]) t.dispose();
  });

  it('the autotuner measures an f16 convolution as its own class', async () => {
    const mode = gpu.tuner.mode;
    gpu.tuner.mode = 'auto';
    gpu.tuner.clear();
    const keys: string[] = [];
    const prev = gpu.tuner.onChoose;
    gpu.tuner.onChoose = (k) => keys.push(k);
    try {
      const d = data([[2, 16, 16, 16], [16, 16, 3, 3], { padding: 1 }, false], 43);
      conv2d(d.t.x, d.t.w, undefined, d.o).dispose();
      expect(keys).toEqual(['conv2d.fwd|16>16 3x3 s1 p1,1,1,1 16x16 n2 f16']);
      const [r] = await gpu.tuner.settle();
      console.log(r!.key, '→', r!.pick, JSON.stringify(r!.ms));
      expect(r!.rejected).toBeUndefined();          // every variant computes the same f16 convolution
      const y = conv2d(d.t.x, d.t.w, undefined, d.o);  // now the winner
      close('tuned f16 fwd', await y.read(), conv2dRef(d.x, d.xs, d.w, d.ws, null, d.o).y);
      y.dispose(); d.dispose();
    } finally {
      gpu.tuner.onChoose = prev;
      gpu.tuner.clear();
      gpu.tuner.mode = mode;
    }
  });
});
