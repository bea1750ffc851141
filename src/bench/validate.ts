// Checking a kernel's output against the float64 CPU reference (src/kernels/reference/) before it
// is timed: a fast wrong kernel is worth nothing, and a benchmark is where a wrong tile shows up first.
//
// The references are plain loops, far slower than the kernels, so for large problems they run on an
// exact slice of the problem: the outputs of a few images / channels / rows, which depend only on the
// matching slice of the inputs (e.g. y[n, k] of a convolution needs x[n] and w[k] only).

import type { Validation } from './types.js';

type Arr = ArrayLike<number>;

/** Error relative to the output's scale: max |a − e| / max |e|. Any non-finite value fails. */
export function relErr(actual: Arr, expected: Arr): number {
  if (actual.length !== expected.length) return Infinity;
  let maxDiff = 0, scale = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!, e = expected[i]!;
    if (!Number.isFinite(a)) return Infinity;
    maxDiff = Math.max(maxDiff, Math.abs(a - e));
    scale = Math.max(scale, Math.abs(e));
  }
  return scale > 0 ? maxDiff / scale : maxDiff;
}

/** One comparison as a Validation. */
export function compare(what: string, actual: Arr, expected: Arr, tol: number): Validation {
  const err = relErr(actual, expected);
  return { ok: err <= tol, err, tol, what };
}

/** The worst of several comparisons (all must pass). */
export function worst(...vs: Validation[]): Validation {
  const bad = vs.find((v) => !v.ok);
  const top = vs.reduce((a, b) => (b.err / b.tol > a.err / a.tol ? b : a));
  return { ok: !bad, err: top.err, tol: top.tol, what: vs.map((v) => v.what).join('; ') };
}

/** `k` indices spread evenly over [0, n) (all of them when k ≥ n), always including 0 and n − 1. */
export function spread(n: number, k: number): number[] {
  if (k >= n) return Array.from({ length: n }, (_, i) => i);
  if (k <= 1) return [0];
  return Array.from({ length: k }, (_, i) => Math.round((i * (n - 1)) / (k - 1)));
}

/**
 * The sub-tensor [ns, cs, ...rest] of a [N, C, ...rest] array (rest flattened to `inner` values):
 * images `ns`, channels `cs`, in the given order.
 */
export function take(x: Arr, C: number, inner: number, ns: readonly number[], cs: readonly number[]): Float32Array {
  const out = new Float32Array(ns.length * cs.length * inner);
  let o = 0;
  for (const n of ns) {
    for (const c of cs) {
      const base = (n * C + c) * inner;
      for (let i = 0; i < inner; i++) out[o++] = x[base + i]!;
    }
  }
  return out;
}

/** Rows `rows` of a row-major [*, cols] array. */
export function takeRows(x: Arr, cols: number, rows: readonly number[]): Float32Array {
  return take(x, 1, cols, rows, [0]);
}

/** Element i of x[i] for the indices listed. */
export function pick(x: Arr, idx: readonly number[]): Float64Array {
  return Float64Array.from(idx, (i) => x[i]!);
}
