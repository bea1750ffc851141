// Reference: dropout with a stateless hash mask (float64 values, exact integer mask). The hash is
// written with the same 32-bit integer operations as the WGSL in ../dropout.ts (Math.imul, >>> 0),
// so the GPU mask can be checked bit for bit.

type Arr = ArrayLike<number>;

/** PCG output permutation of one 32-bit word (the "pcg_hash" integer hash). */
export function pcgHashRef(v: number): number {
  const s = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
  const w = Math.imul(((s >>> ((s >>> 28) + 4)) ^ s) >>> 0, 277803737) >>> 0;
  return ((w >>> 22) ^ w) >>> 0;
}

/** 24-bit keep threshold: element i is kept iff (hash(seed, i) >>> 8) ≥ threshold. p = 1 drops all. */
export function dropoutThresholdRef(p: number): number {
  if (!(p >= 0 && p <= 1)) throw new Error(`dropout: p must be in [0, 1], got ${p}`);
  return Math.round(p * 2 ** 24);
}

/** hash(seed, i) = pcg(pcg(i) ^ pcg(seed)). */
export function dropoutHashRef(seed: number, i: number): number {
  return pcgHashRef((pcgHashRef(i) ^ pcgHashRef(seed)) >>> 0);
}

/** Keep mask (1 = kept) for elements 0..n−1. */
export function dropoutMaskRef(n: number, p: number, seed: number): Uint8Array {
  const t = dropoutThresholdRef(p);
  const mask = new Uint8Array(n);
  for (let i = 0; i < n; i++) mask[i] = dropoutHashRef(seed, i) >>> 8 >= t ? 1 : 0;
  return mask;
}

/** y = x·mask/(1 − p); all zeros for p = 1. */
export function dropoutRef(x: Arr, p: number, seed: number): Float64Array {
  const mask = dropoutMaskRef(x.length, p, seed);
  const scale = p < 1 ? 1 / (1 - p) : 0;
  return Float64Array.from(x, (v, i) => (mask[i] ? v * scale : 0));
}

/** dX = dY·mask/(1 − p): the same map as the forward, with the mask regenerated from the seed. */
export function dropoutBackwardRef(dY: Arr, p: number, seed: number): Float64Array {
  return dropoutRef(dY, p, seed);
}
