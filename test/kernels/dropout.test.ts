import { beforeAll, describe, expect, it } from 'vitest';
import { Tensor, type Gpu } from '../../src/gpu/index.js';
import { dropout, dropoutBackward } from '../../src/kernels/dropout.js';
import { dropoutBackwardRef, dropoutHashRef, dropoutMaskRef, dropoutRef, pcgHashRef } from '../../src/kernels/reference/dropout.js';
import { device, expectClose, gradcheck, Rng } from '../helpers.js';

let gpu: Gpu;
beforeAll(async () => { gpu = await device(); });

/** Values bounded away from 0, so y ≠ 0 exactly where the mask keeps. */
function nonzero(n: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => (rng.next() < 0.5 ? -1 : 1) * rng.uniform(0.5, 1.5));
}

function maskOf(y: ArrayLike<number>): Uint8Array { return Uint8Array.from(y as ArrayLike<number>, (v) => (v !== 0 ? 1 : 0)); }

function mismatches(a: Uint8Array, b: Uint8Array): number {
  let k = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) k++;
  return k;
}

describe('dropout', () => {
  it('reference hash is a fixed function (PCG output permutation)', () => {
    // Hand-computed from the definition: s = 0·747796405 + 2891336453 = 0xAC564B05; s>>28 = 10, so
    // w = ((s >> 14) ^ s)·277803737 mod 2³², and the result is (w >> 22) ^ w.
    const s = 0xac564b05;
    const w = Math.imul(((s >>> 14) ^ s) >>> 0, 277803737) >>> 0;
    expect(pcgHashRef(0)).toBe(((w >>> 22) ^ w) >>> 0);
    expect(dropoutHashRef(1, 2)).toBe(pcgHashRef((pcgHashRef(2) ^ pcgHashRef(1)) >>> 0));
  });

  it.each([
    [1, 0.5, 1, 2], [7, 0.3, 2, 2], [33 * 17, 0.5, 3, 1], [33 * 17, 0.1, 4, 2], [1001, 0.37, 5, 2],
    [1001, 0.37, 5, 1], [100_003, 0.25, 0xffffffff, 2],
  ] as const)('n=%i p=%f seed=%i v%i: mask matches the reference exactly', async (n, p, seed, version) => {
    const x = nonzero(n, n);
    const { y, maskSeed } = dropout(Tensor.from(gpu, x), p, seed, { version });
    expect(maskSeed).toBe(seed >>> 0);
    const got = await y.read();
    expect(mismatches(maskOf(got), dropoutMaskRef(n, p, seed))).toBe(0);
    expectClose(`dropout n=${n} p=${p} v${version}`, got, dropoutRef(x, p, seed), 1e-6);
  });

  it('windowed (tiny binding windows): same mask, global indices', async () => {
    const n = 1001, p = 0.4, seed = 77;
    const x = nonzero(n, 9);
    for (const version of [1, 2] as const) {
      const y = await dropout(Tensor.from(gpu, x), p, seed, { version, maxWindowBytes: 1024 }).y.read();
      expect(mismatches(maskOf(y), dropoutMaskRef(n, p, seed))).toBe(0);
      expectClose(`dropout windowed v${version}`, y, dropoutRef(x, p, seed), 1e-6);
    }
  });

  it('fraction dropped ≈ p for n = 100k; deterministic per seed; seeds differ', async () => {
    const n = 100_000;
    const tx = Tensor.from(gpu, nonzero(n, 1));
    for (const p of [0.1, 0.5, 0.9]) {
      const m = maskOf(await dropout(tx, p, 1234).y.read());
      let dropped = 0;
      for (const v of m) dropped += 1 - v;
      const frac = dropped / n, sigma = Math.sqrt((p * (1 - p)) / n);
      console.log(`p=${p}: dropped ${frac.toFixed(4)} (${((frac - p) / sigma).toFixed(2)} σ)`);
      expect(Math.abs(frac - p)).toBeLessThan(5 * sigma);
    }
    const a = maskOf(await dropout(tx, 0.5, 42).y.read());
    const b = maskOf(await dropout(tx, 0.5, 42).y.read());
    const c = maskOf(await dropout(tx, 0.5, 43).y.read());
    expect(mismatches(a, b)).toBe(0);
    // Independent masks agree on about half the elements.
    const diff = mismatches(a, c) / n;
    expect(Math.abs(diff - 0.5)).toBeLessThan(5 * Math.sqrt(0.25 / n));
  });

  it('p = 0 is the identity, p = 1 gives exact zeros', async () => {
    const x = nonzero(333, 2);
    x[5] = Infinity;
    const tx = Tensor.from(gpu, x);
    expect(Array.from(await dropout(tx, 0, 9).y.read())).toEqual(Array.from(x));
    const y1 = await dropout(tx, 1, 9).y.read();
    expect(Array.from(y1).every((v) => v === 0)).toBe(true);
    expect(() => dropout(tx, 1.5, 0)).toThrow(/p must be/);
  });

  it.each([[1], [37], [33 * 17]])('backward n=%i: dX = mask·dY/(1 − p), gradcheck', async (n) => {
    const p = 0.3, seed = 1000 + n;
    const x = nonzero(n, 3), dy = new Rng(n).array(n);
    const { maskSeed } = dropout(Tensor.from(gpu, x), p, seed);
    const dx = await dropoutBackward(Tensor.from(gpu, dy), p, maskSeed).read();
    const mask = dropoutMaskRef(n, p, seed);
    expectClose(`dropout bwd n=${n}`, dx, Float64Array.from(dy, (g, i) => (mask[i] ? g / (1 - p) : 0)), 1e-6);
    expectClose(`dropout bwd ref n=${n}`, dx, dropoutBackwardRef(dy, p, seed), 1e-6);
    gradcheck(`dropout n=${n}`, (v) => dropoutRef(v, p, seed), x, dy, dx);
  });
});
