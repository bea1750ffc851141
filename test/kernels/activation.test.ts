import { beforeAll, describe, expect, it } from 'vitest';
import { Tensor, type Gpu } from '../../src/gpu/index.js';
import { clip, clipBackward, sigmoid, sigmoidBackward, tanh, tanhBackward } from '../../src/kernels/activation.js';
import {
  clipBackwardRef, clipRef, sigmoidBackwardRef, sigmoidRef, tanhBackwardRef, tanhRef,
} from '../../src/kernels/reference/activation.js';
import { device, expectClose, gradcheck, Rng } from '../helpers.js';

let gpu: Gpu;
beforeAll(async () => { gpu = await device(); });

/** n values: mostly in [−6, 6], plus tiny and saturating ones (where the stable formulas matter). */
function inputs(rng: Rng, n: number): Float32Array {
  const special = [0, 1e-6, -1e-6, 1e-4, -3e-3, 0.1249, 0.1251, -0.125, 20, -20, 60, -60, 100, -100];
  return Float32Array.from({ length: n }, (_, i) => (i < special.length && n > 64 ? special[i]! : rng.uniform(-6, 6)));
}

const SIZES = [1, 7, 33 * 17, 3 * 5 * 7 * 11 * 13];

describe('sigmoid', () => {
  it.each(SIZES)('forward + backward, n=%i', async (n) => {
    const rng = new Rng(n + 1);
    const x = inputs(rng, n), dy = rng.array(n);
    const tx = Tensor.from(gpu, x);
    const ty = sigmoid(tx);
    const y = await ty.read();
    // Relative to the value itself (atol 1e-30): σ(−100) ≈ 3.7e-44 (a denormal) is the only value
    // below f32's normal range, and rounds the same on both sides.
    expectClose(`sigmoid fwd n=${n}`, y, sigmoidRef(x), 1e-5, 1e-30);
    const dx = await sigmoidBackward(ty, Tensor.from(gpu, dy)).read();
    expectClose(`sigmoid bwd n=${n}`, dx, sigmoidBackwardRef(y, dy), 1e-5, 1e-7);
    // The backward is the derivative of the forward (away from saturation, where y = 1 − tiny loses it).
    const xs = Float32Array.from(x, (v) => Math.max(-8, Math.min(8, v)));
    const dxs = await sigmoidBackward(sigmoid(Tensor.from(gpu, xs)), Tensor.from(gpu, dy)).read();
    gradcheck(`sigmoid n=${n}`, sigmoidRef, xs, dy, dxs);
  });
});

describe('tanh', () => {
  it.each(SIZES)('forward + backward, n=%i', async (n) => {
    const rng = new Rng(n + 2);
    const x = inputs(rng, n), dy = rng.array(n);
    const ty = tanh(Tensor.from(gpu, x));
    const y = await ty.read();
    // Relative error measured against the value itself, also near 0 (the small-|x| series).
    expectClose(`tanh fwd n=${n}`, y, tanhRef(x), 1e-5, 1e-30);
    const dx = await tanhBackward(ty, Tensor.from(gpu, dy)).read();
    expectClose(`tanh bwd n=${n}`, dx, tanhBackwardRef(y, dy), 1e-5, 1e-7);
    const xs = Float32Array.from(x, (v) => Math.max(-4, Math.min(4, v)));
    const dxs = await tanhBackward(tanh(Tensor.from(gpu, xs)), Tensor.from(gpu, dy)).read();
    gradcheck(`tanh n=${n}`, tanhRef, xs, dy, dxs);
  });

  it('is odd and saturates to exactly ±1', async () => {
    const x = Float32Array.from([0.3, -0.3, 0.01, -0.01, 9, -9, 50, -50]);
    const y = await tanh(Tensor.from(gpu, x)).read();
    for (let i = 0; i < 4; i += 2) expect(y[i]).toBe(-y[i + 1]!);
    expect([...y.slice(4)]).toEqual([1, -1, 1, -1]);
  });
});

describe('clip', () => {
  // x on a 0.25 grid, so many values sit exactly on the bounds.
  const grid = (rng: Rng, n: number) => Float32Array.from({ length: n }, () => (rng.int(33) - 16) * 0.25);
  const cases: [string, number, number][] = [
    ['[-1, 2]', -1, 2], ['ReLU6 [0, 6]', 0, 6], ['min only', 0.5, Infinity], ['max only', -Infinity, -0.75],
    ['no bounds', -Infinity, Infinity], ['min > max', 1, -1], ['min = max', 0.25, 0.25],
  ];
  it.each(cases)('%s: forward exact, backward (clamp and hardtanh modes) exact', async (_, lo, hi) => {
    const rng = new Rng(Math.round(lo * 8 + 100) ^ 7);
    const n = 33 * 17;
    const x = grid(rng, n), dy = rng.array(n);
    const tx = Tensor.from(gpu, x), tdy = Tensor.from(gpu, dy);
    expectClose(`clip fwd ${lo},${hi}`, await clip(tx, lo, hi).read(), clipRef(x, lo, hi), 0);
    for (const mode of ['clamp', 'hardtanh'] as const) {
      expectClose(`clip bwd ${mode} ${lo},${hi}`, await clipBackward(tx, tdy, lo, hi, { mode }).read(), clipBackwardRef(x, dy, lo, hi, mode), 0);
    }
  });

  it('boundary convention: clamp passes the gradient on the bounds, hardtanh does not (as PyTorch)', async () => {
    const x = Float32Array.from([-1, 2, -1.5, 0, 2.5]);
    const dy = Float32Array.from([1, 1, 1, 1, 1]);
    const tx = Tensor.from(gpu, x), tdy = Tensor.from(gpu, dy);
    expect([...await clipBackward(tx, tdy, -1, 2).read()]).toEqual([1, 1, 0, 1, 0]);
    expect([...await clipBackward(tx, tdy, -1, 2, { mode: 'hardtanh' }).read()]).toEqual([0, 0, 0, 1, 0]);
    // min > max: y = max everywhere, and no x is inside [min, max].
    expect([...await clip(tx, 1, -1).read()]).toEqual([-1, -1, -1, -1, -1]);
    expect([...await clipBackward(tx, tdy, 1, -1).read()]).toEqual([0, 0, 0, 0, 0]);
  });

  it('gradient check away from the kinks', async () => {
    const rng = new Rng(9);
    const x = Float32Array.from(rng.array(257, -3, 3), (v) => (Math.abs(Math.abs(v) - 1) < 0.01 ? v + 0.05 : v));
    const dy = rng.array(257);
    const dx = await clipBackward(Tensor.from(gpu, x), Tensor.from(gpu, dy), -1, 1).read();
    gradcheck('clip [-1, 1]', (v) => clipRef(v, -1, 1), x, dy, dx);
  });

  it('rejects NaN bounds', () => {
    const t = Tensor.from(gpu, [1, 2]);
    expect(() => clip(t, NaN, 1)).toThrow(/NaN/);
  });
});

describe('versions (v1 scalar, v2 vec4 + scalar tail)', () => {
  it.each([[1], [7], [33 * 17], [4096]])('agree bit for bit, n=%i', async (n) => {
    const rng = new Rng(n + 3);
    const x = inputs(rng, n), dy = rng.array(n);
    const tx = Tensor.from(gpu, x), tdy = Tensor.from(gpu, dy);
    const ty = sigmoid(tx);
    const y = await ty.read();
    const ops: [string, (version: 1 | 2) => Tensor, ArrayLike<number>][] = [
      ['sigmoid', (version) => sigmoid(tx, { version }), sigmoidRef(x)],
      ['sigmoidBackward', (version) => sigmoidBackward(ty, tdy, { version }), sigmoidBackwardRef(y, dy)],
      ['tanh', (version) => tanh(tx, { version }), tanhRef(x)],
      ['tanhBackward', (version) => tanhBackward(ty, tdy, { version }), tanhBackwardRef(y, dy)],
      ['clip', (version) => clip(tx, -1, 2, { version }), clipRef(x, -1, 2)],
      ['clipBackward', (version) => clipBackward(tx, tdy, -1, 2, { version }), clipBackwardRef(x, dy, -1, 2)],
      ['clipBackward hardtanh', (version) => clipBackward(tx, tdy, -1, 2, { version, mode: 'hardtanh' }), clipBackwardRef(x, dy, -1, 2, 'hardtanh')],
    ];
    for (const [name, f, ref] of ops) {
      const [v1, v2] = [await f(1).read(), await f(2).read()];
      expectClose(`${name} v2 n=${n}`, v2, ref, 1e-5, 1e-7);
      expect(v2, name).toEqual(v1);
    }
  });
});
