// Shared test utilities: the device, seeded data, comparisons with a reported error, and
// central-difference gradient checks against the float64 CPU references.

import { expect } from 'vitest';
import { getGpu, type Gpu } from '../src/gpu/index.js';
import { Rng } from '../src/util/rng.js';

export { Rng };

export function device(): Promise<Gpu> {
  return getGpu();
}

export interface Err { maxAbs: number; maxRel: number; worst: number }

/**
 * Max absolute and relative error of `actual` vs `expected`. The relative error of each element is
 * |a − e| / (|e| + atol), so elements near zero do not dominate.
 */
export function errors(actual: ArrayLike<number>, expected: ArrayLike<number>, atol = 1e-5): Err {
  expect(actual.length).toBe(expected.length);
  let maxAbs = 0, maxRel = 0, worst = -1;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!, e = expected[i]!;
    if (!Number.isFinite(a) && a !== e) return { maxAbs: Infinity, maxRel: Infinity, worst: i };
    const d = Math.abs(a - e);
    const r = d / (Math.abs(e) + atol);
    if (d > maxAbs) maxAbs = d;
    if (r > maxRel) { maxRel = r; worst = i; }
  }
  return { maxAbs, maxRel, worst };
}

/** Asserts closeness and prints the measured error, so every test reports its max relative error. */
export function expectClose(what: string, actual: ArrayLike<number>, expected: ArrayLike<number>, rtol = 1e-4, atol = 1e-5): Err {
  const e = errors(actual, expected, atol);
  const msg = `${what}: max rel err ${e.maxRel.toExponential(2)} (max abs ${e.maxAbs.toExponential(2)})`;
  console.log(msg);
  if (!(e.maxRel <= rtol)) {
    throw new Error(`${msg} exceeds rtol ${rtol}; worst index ${e.worst}: got ${actual[e.worst]}, want ${expected[e.worst]}`);
  }
  return e;
}

/**
 * Central-difference check of a gradient. `f` is a float64 forward (a CPU reference) of the input
 * being checked; the scalar probed is L = Σ f(x) · dY, so dL/dx is what a backward kernel given dY
 * must return. Checks up to `samples` coordinates (all of them for small inputs).
 */
export function gradcheck(
  what: string,
  f: (x: Float64Array) => ArrayLike<number>,
  x: ArrayLike<number>,
  dY: ArrayLike<number>,
  grad: ArrayLike<number>,
  { eps = 1e-3, rtol = 2e-3, atol = 1e-4, samples = 48, seed = 7 } = {},
): Err {
  const xs = Float64Array.from(x);
  const L = (v: Float64Array) => {
    const y = f(v);
    let s = 0;
    for (let i = 0; i < y.length; i++) s += y[i]! * dY[i]!;
    return s;
  };
  const rng = new Rng(seed);
  const idx = xs.length <= samples ? [...xs.keys()] : Array.from({ length: samples }, () => rng.int(xs.length));
  const num: number[] = [], ana: number[] = [];
  for (const i of idx) {
    const x0 = xs[i]!;
    xs[i] = x0 + eps; const lp = L(xs);
    xs[i] = x0 - eps; const lm = L(xs);
    xs[i] = x0;
    num.push((lp - lm) / (2 * eps));
    ana.push(grad[i]!);
  }
  return expectClose(`${what} vs finite differences`, ana, num, rtol, atol);
}
