import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Tensor, type Gpu } from '../../src/gpu/index.js';
import {
  adaptiveAvgPool2d, adaptiveAvgPool2dBackward, avgPool2d, avgPool2dBackward, globalAvgPool, globalAvgPoolBackward,
  maxPool2d, maxPool2dBackward, NO_ARGMAX, poolBackwardVersions, poolOutputSize, poolTesting, readArgmax,
} from '../../src/kernels/pool.js';
import {
  adaptiveAvgPool2dBackwardRef, adaptiveAvgPool2dRef, avgPool2dBackwardRef, avgPool2dRef, globalAvgPoolBackwardRef,
  globalAvgPoolRef, maxPool2dBackwardRef, maxPool2dRef, NO_ARGMAX_REF, poolOutputSizeRef, type Pool2dRefOptions,
} from '../../src/kernels/reference/pool.js';
import { device, expectClose, gradcheck, Rng } from '../helpers.js';

let gpu: Gpu;
beforeAll(async () => { gpu = await device(); });
afterEach(() => { poolTesting.maxBindingBytes = 0; });

type Shape4 = [number, number, number, number];
// Pooled sums of ±1 data cancel to near 0, where f32 rounding (~1e-7 of the data's scale) is large
// relative to the result: judge those errors against the data's scale (atol 1e-3), not the result's.
const SUM_TOL = [1e-4, 1e-3] as const;
const numel = (s: readonly number[]) => s.reduce((p, q) => p * q, 1);
const fmt = (xs: Shape4, o: Pool2dRefOptions) =>
  `x[${xs}] k${o.kernel.join('x')} s${o.stride.join('x')} p[${o.padding}] d${o.dilation.join('x')}${o.ceilMode ? ' ceil' : ''}`;

/** Distinct values (a shuffled ramp, spacing 0.01) so max pooling has no ties and finite differences stay valid. */
function distinct(rng: Rng, n: number): Float32Array {
  const perm = rng.shuffle([...Array(n).keys()]);
  return Float32Array.from(perm, (k) => (k - n / 2) * 0.01);
}

/**
 * Random pooling settings over odd sizes, kernels 1–3 (also non-square), strides 1–3, pads 0–1 with
 * PyTorch's pad ≤ k_eff/2, dilation 1–2 (max only), ceil mode on and off.
 */
function randomCases(seed: number, count: number, dilation: boolean): [Shape4, Pool2dRefOptions][] {
  const rng = new Rng(seed);
  const sizes = [1, 3, 7, 17, 33];
  const kernels: [number, number][] = [[1, 1], [2, 2], [3, 3], [2, 3], [3, 2]];
  const out: [Shape4, Pool2dRefOptions][] = [];
  while (out.length < count) {
    const xs: Shape4 = [1 + rng.int(2), 1 + rng.int(3), sizes[rng.int(5)]!, sizes[rng.int(5)]!];
    const kernel = kernels[rng.int(kernels.length)]!;
    const stride: [number, number] = rng.next() < 0.7 ? [1 + rng.int(3), 0] : [1 + rng.int(3), 1 + rng.int(3)];
    if (stride[1] === 0) stride[1] = stride[0];
    const dil: [number, number] = dilation ? [1 + rng.int(2), 1 + rng.int(2)] : [1, 1];
    const effH = dil[0] * (kernel[0] - 1) + 1, effW = dil[1] * (kernel[1] - 1) + 1;
    const ph = Math.min(rng.int(2), Math.floor(effH / 2)), pw = Math.min(rng.int(2), Math.floor(effW / 2));
    const o: Pool2dRefOptions = {
      kernel, stride, padding: [ph, pw, ph, pw], dilation: dil, ceilMode: rng.next() < 0.5, countIncludePad: rng.next() < 0.5,
    };
    if (poolOutputSizeRef(xs[2], kernel[0], stride[0], ph, ph, dil[0], o.ceilMode) < 1) continue;
    if (poolOutputSizeRef(xs[3], kernel[1], stride[1], pw, pw, dil[1], o.ceilMode) < 1) continue;
    out.push([xs, o]);
  }
  return out;
}

const opt = (kernel: [number, number], stride: [number, number], padding: [number, number, number, number], ceilMode = false, countIncludePad = true, dilation: [number, number] = [1, 1]): Pool2dRefOptions =>
  ({ kernel, stride, padding, dilation, ceilMode, countIncludePad });

// Layers that occur in the target models, plus edge cases picked by hand.
const handCases: [Shape4, Pool2dRefOptions][] = [
  [[2, 3, 33, 33], opt([3, 3], [2, 2], [1, 1, 1, 1])],             // ResNet stem max pool
  [[1, 4, 17, 17], opt([2, 2], [2, 2], [0, 0, 0, 0], true)],       // VGG 2×2/2 on an odd size, ceil
  [[1, 2, 7, 7], opt([2, 2], [2, 2], [1, 1, 1, 1], true, true)],   // ceil: the last window is dropped
  [[1, 2, 7, 17], opt([3, 3], [2, 2], [1, 0, 2, 1], true, true)],  // asymmetric (ONNX) pads
  [[2, 1, 17, 7], opt([2, 3], [1, 2], [0, 1, 1, 0], false, false)], // asymmetric, non-square
  [[1, 3, 7, 7], opt([3, 3], [2, 2], [1, 1, 1, 1], true, true)],   // ceil + countIncludePad overhang
  [[1, 3, 7, 7], opt([3, 3], [2, 2], [1, 1, 1, 1], true, false)],
];

describe('output size', () => {
  it('follows PyTorch (incl. the ceil-mode last-window rule)', () => {
    // [size, k, stride, padBefore, padAfter, dilation, ceil, expected]
    const cases: [number, number, number, number, number, number, boolean, number][] = [
      [112, 3, 2, 1, 1, 1, false, 56], [224, 2, 2, 0, 0, 1, false, 112], [7, 2, 2, 0, 0, 1, false, 3],
      [7, 2, 2, 0, 0, 1, true, 4], [7, 2, 2, 1, 1, 1, true, 4] /* 5 without the rule */, [18, 3, 2, 0, 0, 1, true, 9],
      [17, 3, 2, 0, 0, 1, true, 8], [7, 3, 1, 0, 0, 2, false, 3], [1, 1, 3, 0, 0, 1, true, 1], [5, 3, 3, 1, 1, 1, true, 2],
    ];
    for (const [n, k, s, a, b, d, c, want] of cases) {
      expect(poolOutputSize(n, k, s, a, b, d, c)).toBe(want);
      expect(poolOutputSizeRef(n, k, s, a, b, d, c)).toBe(want);
    }
  });
});

describe('maxPool2d', () => {
  const cases = [...handCases, ...randomCases(11, 36, true)];
  it.each(cases.map((c) => [fmt(...c), ...c] as const))('%s', async (_, xs, o) => {
    const rng = new Rng(numel(xs) + o.kernel[0] * 7 + o.stride[1]);
    const x = distinct(rng, numel(xs));
    const ref = maxPool2dRef(x, xs, o);
    const tx = Tensor.from(gpu, x, xs);
    const { y, argmax } = maxPool2d(tx, o);
    expect([...y.shape]).toEqual(ref.shape);
    expectClose(`maxPool fwd ${fmt(xs, o)}`, await y.read(), ref.y, 0);
    expect(await readArgmax(argmax)).toEqual(ref.argmax);
    const dy = rng.array(ref.y.length);
    const tdy = Tensor.from(gpu, dy, ref.shape);
    const dxs: Float32Array[] = [];
    for (const version of poolBackwardVersions(xs, o)) {
      const dX = maxPool2dBackward(tdy, argmax, xs, { ...o, version });
      const dx = await dX.read();
      dX.dispose();
      dxs.push(dx);
      expectClose(`maxPool bwd v${version} ${fmt(xs, o)}`, dx, maxPool2dBackwardRef(dy, ref.argmax, xs, ref.shape), ...SUM_TOL);
      // eps 1e-3 < half the 0.01 spacing: no argmax changes under the probe.
      if (!ref.argmax.includes(NO_ARGMAX_REF)) gradcheck(`maxPool v${version} ${fmt(xs, o)}`, (v) => maxPool2dRef(v, xs, o).y, x, dy, dx, { eps: 1e-3 });
    }
    // v2 sums the same terms in the same order as v1: bit-identical.
    if (dxs.length === 2) expect(dxs[1]).toEqual(dxs[0]);
    for (const t of [tx, y, argmax, tdy]) t.dispose();
  });

  it('ties go to the first max in scan order (PyTorch)', async () => {
    const rng = new Rng(5);
    for (const o of [opt([3, 3], [1, 1], [1, 1, 1, 1]), opt([3, 2], [2, 1], [1, 1, 1, 1], true), opt([2, 2], [1, 1], [0, 0, 0, 0], false, true, [2, 2])]) {
      const xs: Shape4 = [2, 3, 17, 7];
      const x = Float32Array.from({ length: numel(xs) }, () => rng.int(3)); // many ties
      const ref = maxPool2dRef(x, xs, o);
      const { y, argmax } = maxPool2d(Tensor.from(gpu, x, xs), o);
      expectClose('maxPool ties fwd', await y.read(), ref.y, 0);
      expect(await readArgmax(argmax)).toEqual(ref.argmax);
      const dy = rng.array(ref.y.length);
      for (const version of [1, 2] as const) {
        const dx = await maxPool2dBackward(Tensor.from(gpu, dy, ref.shape), argmax, xs, { ...o, version }).read();
        expectClose(`maxPool ties bwd v${version}`, dx, maxPool2dBackwardRef(dy, ref.argmax, xs, ref.shape), ...SUM_TOL);
      }
    }
  });

  it('a window of padding only gives −∞, NO_ARGMAX and no gradient', async () => {
    // H = 1 with a dilated 2-tap window and pad 1: rows −1 and 2 (both outside) for p = 0.
    const xs: Shape4 = [1, 2, 1, 3];
    const o = opt([2, 1], [1, 1], [1, 0, 2, 0], false, true, [3, 1]);
    const x = new Rng(2).array(numel(xs));
    const ref = maxPool2dRef(x, xs, o);
    expect(ref.argmax.includes(NO_ARGMAX_REF)).toBe(true);
    const { y, argmax } = maxPool2d(Tensor.from(gpu, x, xs), o);
    const got = await y.read();
    expect([...got].map((v) => (v === -Infinity ? 'empty' : v))).toEqual([...ref.y].map((v) => (v === -Infinity ? 'empty' : Math.fround(v))));
    const am = await readArgmax(argmax);
    expect(am).toEqual(ref.argmax);
    expect(NO_ARGMAX).toBe(NO_ARGMAX_REF);
    const dy = Float32Array.from({ length: ref.y.length }, () => 1);
    for (const version of [1, 2] as const) {
      const dx = await maxPool2dBackward(Tensor.from(gpu, dy, ref.shape), argmax, xs, { ...o, version }).read();
      expectClose(`maxPool empty-window bwd v${version}`, dx, maxPool2dBackwardRef(dy, ref.argmax, xs, ref.shape), 0);
    }
  });

  it('accepts shorthand options (number / [h, w] padding, stride defaults to kernel)', async () => {
    const xs: Shape4 = [1, 2, 17, 17];
    const x = distinct(new Rng(9), numel(xs));
    const tx = Tensor.from(gpu, x, xs);
    const a = maxPool2d(tx, { kernel: 3, stride: 2, padding: 1 });
    expectClose('shorthand number', await a.y.read(), maxPool2dRef(x, xs, opt([3, 3], [2, 2], [1, 1, 1, 1])).y, 0);
    const b = maxPool2d(tx, { kernel: [3, 2], padding: [1, 0], ceilMode: true });
    expectClose('shorthand pair', await b.y.read(), maxPool2dRef(x, xs, opt([3, 2], [3, 2], [1, 0, 1, 0], true)).y, 0);
    expect(() => maxPool2d(tx, { kernel: 19 })).toThrow(/does not fit/);
  });
});

describe('avgPool2d', () => {
  const cases = [...handCases, ...randomCases(23, 36, false)];
  it.each(cases.map((c) => [`${fmt(...c)} includePad=${c[1].countIncludePad}`, ...c] as const))('%s', async (name, xs, o) => {
    const rng = new Rng(numel(xs) + o.kernel[1] * 5 + o.stride[0]);
    const x = rng.array(numel(xs));
    const ref = avgPool2dRef(x, xs, o);
    const y = avgPool2d(Tensor.from(gpu, x, xs), o);
    expect([...y.shape]).toEqual(ref.shape);
    expectClose(`avgPool fwd ${name}`, await y.read(), ref.y, ...SUM_TOL);
    const dy = rng.array(ref.y.length);
    const dxs: Float32Array[] = [];
    for (const version of poolBackwardVersions(xs, o)) {
      const dx = await avgPool2dBackward(Tensor.from(gpu, dy, ref.shape), xs, { ...o, version }).read();
      dxs.push(dx);
      expectClose(`avgPool bwd v${version} ${name}`, dx, avgPool2dBackwardRef(dy, xs, o), ...SUM_TOL);
      gradcheck(`avgPool v${version} ${name}`, (v) => avgPool2dRef(v, xs, o).y, x, dy, dx);
    }
    if (dxs.length === 2) expect(dxs[1]).toEqual(dxs[0]);
  });

  it('countIncludePad changes only windows that touch padding', async () => {
    const xs: Shape4 = [1, 1, 7, 7];
    const x = Float32Array.from({ length: 49 }, () => 1);
    const on = await avgPool2d(Tensor.from(gpu, x, xs), { kernel: 3, stride: 2, padding: 1, ceilMode: true }).read();
    const off = await avgPool2d(Tensor.from(gpu, x, xs), { kernel: 3, stride: 2, padding: 1, ceilMode: true, countIncludePad: false }).read();
    expect([...off]).toEqual(Array(16).fill(1)); // mean of ones over real pixels
    expect(on[0]).toBeCloseTo(4 / 9, 6);         // corner: 4 real of 9
    expect(on[5]).toBeCloseTo(1, 6);             // interior
  });
});

describe('adaptiveAvgPool2d', () => {
  const cases: [Shape4, [number, number]][] = [
    [[2, 3, 7, 7], [1, 1]], [[1, 2, 7, 7], [3, 3]], [[2, 2, 17, 33], [5, 7]], [[1, 3, 3, 7], [7, 3]],
    [[1, 2, 1, 1], [3, 3]], [[1, 2, 33, 17], [33, 17]], [[1, 1, 33, 33], [7, 7]], [[3, 1, 17, 3], [4, 2]],
  ];
  it.each(cases)('x %j -> %j', async (xs, out) => {
    const rng = new Rng(numel(xs) + out[0]);
    const x = rng.array(numel(xs));
    const y = adaptiveAvgPool2d(Tensor.from(gpu, x, xs), out);
    expect([...y.shape]).toEqual([xs[0], xs[1], ...out]);
    expectClose(`adaptive fwd ${xs}->${out}`, await y.read(), adaptiveAvgPool2dRef(x, xs, out), ...SUM_TOL);
    const dy = rng.array(y.size);
    const dx = await adaptiveAvgPool2dBackward(Tensor.from(gpu, dy, y.shape), xs).read();
    expectClose(`adaptive bwd ${xs}->${out}`, dx, adaptiveAvgPool2dBackwardRef(dy, xs, out), ...SUM_TOL);
    gradcheck(`adaptive ${xs}->${out}`, (v) => adaptiveAvgPool2dRef(v, xs, out), x, dy, dx);
  });
});

describe('globalAvgPool', () => {
  const cases: Shape4[] = [[1, 1, 1, 1], [2, 3, 7, 7], [3, 5, 17, 33], [2, 70, 3, 3], [1, 8, 112, 112]];
  it.each(cases)('x %j', async (...xs) => {
    const rng = new Rng(numel(xs));
    const x = rng.array(numel(xs));
    const tx = Tensor.from(gpu, x, xs);
    const ref = globalAvgPoolRef(x, xs);
    for (const version of [1, 2] as const) {
      const y = globalAvgPool(tx, { version });
      expect([...y.shape]).toEqual([xs[0], xs[1], 1, 1]);
      expectClose(`global v${version} fwd [${xs}]`, await y.read(), ref, ...SUM_TOL);
    }
    const dy = rng.array(xs[0] * xs[1]);
    const dx = await globalAvgPoolBackward(Tensor.from(gpu, dy, [xs[0], xs[1], 1, 1]), xs).read();
    expectClose(`global bwd [${xs}]`, dx, globalAvgPoolBackwardRef(dy, xs), 1e-6);
    gradcheck(`global [${xs}]`, (v) => globalAvgPoolRef(v, xs), x, dy, dx);
  });
});

describe('backward versions', () => {
  // Settings that stress the v2 cell grid: gaps between windows (stride > kernel: pixels no window
  // covers), cells wholly in the padding (pad ≥ stride), stride 4 (cell row = a whole vec4), wide
  // windows (CH·CW = 16, the v2 limit), and ones v2 does not take (stride 5, 25 windows per cell).
  const cases: [Shape4, Pool2dRefOptions, number[]][] = [
    [[1, 2, 17, 17], opt([1, 1], [3, 3], [0, 0, 0, 0]), [1, 2]],
    [[1, 2, 17, 33], opt([2, 3], [3, 4], [1, 1, 1, 2], true), [1, 2]],
    [[2, 2, 7, 17], opt([3, 3], [1, 1], [1, 1, 1, 1]), [1, 2]],
    [[1, 3, 33, 17], opt([3, 3], [1, 2], [2, 3, 1, 0], false, true, [2, 2]), [1, 2]],
    [[1, 2, 33, 33], opt([4, 4], [4, 4], [2, 2, 2, 2], true), [1, 2]],
    [[1, 2, 17, 17], opt([4, 4], [1, 1], [1, 2, 2, 1]), [1, 2]],
    [[1, 2, 17, 17], opt([3, 3], [5, 5], [1, 1, 1, 1]), [1]],
    [[1, 2, 17, 17], opt([5, 5], [1, 1], [2, 2, 2, 2]), [1]],
  ];
  it.each(cases.map((c) => [fmt(c[0], c[1]), ...c] as const))('%s', async (name, xs, o, versions) => {
    expect(poolBackwardVersions(xs, o)).toEqual(versions);
    if (versions.length === 1) {
      const ys = maxPool2dRef(new Float32Array(numel(xs)), xs, o).shape;
      expect(() => maxPool2dBackward(Tensor.zeros(gpu, ys), Tensor.zeros(gpu, ys), xs, { ...o, version: 2 })).toThrow(/version 2 needs/);
      expect(() => avgPool2dBackward(Tensor.zeros(gpu, ys), xs, { ...o, version: 2 })).toThrow(/version 2 needs/);
    }
    const rng = new Rng(numel(xs) + o.stride[0]);
    const x = distinct(rng, numel(xs));
    const ref = maxPool2dRef(x, xs, o);
    const { argmax } = maxPool2d(Tensor.from(gpu, x, xs), o);
    const dy = rng.array(ref.y.length);
    const tdy = Tensor.from(gpu, dy, ref.shape);
    const o1 = { ...o, countIncludePad: false };
    for (const version of versions as (1 | 2)[]) {
      const dx = await maxPool2dBackward(tdy, argmax, xs, { ...o, version }).read();
      expectClose(`max bwd v${version} ${name}`, dx, maxPool2dBackwardRef(dy, ref.argmax, xs, ref.shape), ...SUM_TOL);
      if (o.dilation[0] === 1 && o.dilation[1] === 1) {
        for (const oo of [o, o1]) {
          const da = await avgPool2dBackward(tdy, xs, { ...oo, version }).read();
          expectClose(`avg bwd v${version} ${name} includePad=${oo.countIncludePad}`, da, avgPool2dBackwardRef(dy, xs, oo), ...SUM_TOL);
        }
      }
    }
  });
});

describe('tensors split into windows of planes (binding limit)', () => {
  it('every kernel gives the same result with a 4 KiB binding cap', async () => {
    // 34 planes of 7×7 = 49 floats: windows of 19 planes whose first plane is not 256-byte aligned.
    const xs: Shape4 = [2, 17, 7, 7];
    const rng = new Rng(77);
    const x = distinct(rng, numel(xs));
    const tx = Tensor.from(gpu, x, xs);
    const o = opt([3, 3], [2, 2], [1, 1, 1, 1], true, false);
    poolTesting.maxBindingBytes = 4096;
    const before = gpu.dispatchesByName.get('maxPool2d.fwd.v1') ?? 0;
    const mp = maxPool2d(tx, o);
    expect((gpu.dispatchesByName.get('maxPool2d.fwd.v1') ?? 0) - before).toBe(2);
    const mref = maxPool2dRef(x, xs, o);
    expectClose('windowed maxPool fwd', await mp.y.read(), mref.y, 0);
    expect(await readArgmax(mp.argmax)).toEqual(mref.argmax);
    const dy = rng.array(mref.y.length);
    const tdy = Tensor.from(gpu, dy, mref.shape);
    for (const version of [1, 2] as const) {
      expectClose(`windowed maxPool bwd v${version}`, await maxPool2dBackward(tdy, mp.argmax, xs, { ...o, version }).read(), maxPool2dBackwardRef(dy, mref.argmax, xs, mref.shape), ...SUM_TOL);
    }
    // Averages on ±1 data (the distinct ramp above reaches ±8, and its sums cancel to near 0).
    const xa = rng.array(numel(xs));
    const ta = Tensor.from(gpu, xa, xs);
    expectClose('windowed avgPool fwd', await avgPool2d(ta, o).read(), avgPool2dRef(xa, xs, o).y, ...SUM_TOL);
    for (const version of [1, 2] as const) {
      expectClose(`windowed avgPool bwd v${version}`, await avgPool2dBackward(tdy, xs, { ...o, version }).read(), avgPool2dBackwardRef(dy, xs, o), ...SUM_TOL);
    }
    expectClose('windowed adaptive fwd', await adaptiveAvgPool2d(ta, [3, 2]).read(), adaptiveAvgPool2dRef(xa, xs, [3, 2]), ...SUM_TOL);
    const dya = rng.array(2 * 17 * 3 * 2);
    expectClose('windowed adaptive bwd', await adaptiveAvgPool2dBackward(Tensor.from(gpu, dya, [2, 17, 3, 2]), xs).read(),
      adaptiveAvgPool2dBackwardRef(dya, xs, [3, 2]), ...SUM_TOL);
    for (const version of [1, 2] as const) {
      expectClose(`windowed global v${version}`, await globalAvgPool(ta, { version }).read(), globalAvgPoolRef(xa, xs), ...SUM_TOL);
    }
    const dyg = rng.array(34);
    expectClose('windowed global bwd', await globalAvgPoolBackward(Tensor.from(gpu, dyg, [2, 17, 1, 1]), xs).read(), globalAvgPoolBackwardRef(dyg, xs), 1e-6);
  });
});
