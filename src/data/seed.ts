// Deriving independent random streams from one user seed.
//
// Every random decision in the data pipeline is a pure function of (seed, purpose, epoch, index):
// the shuffle of epoch e, the crop and flip of item i in epoch e, the split of class c. Nothing
// depends on the order in which asynchronous decodes finish, so prefetching, concurrency and
// resuming from a checkpoint cannot change what the model sees.

/** Stream tags: distinct purposes get unrelated streams even for equal (seed, epoch, index). */
export const STREAM = {
  shuffle: 0x53485546, // 'SHUF'
  augment: 0x41554730, // 'AUG0'
  split: 0x53504c54, //   'SPLT'
} as const;

/**
 * Mixes integer parts into one u32 seed for `Rng`. Each step is h ← fmix32(h ⊕ part), murmur3's
 * finalizer: a bijection on u32 with full avalanche, so seeds that differ in one bit, or (seed, epoch)
 * pairs like (1, 0) and (0, 1), give unrelated streams (a plain seed + epoch would make those equal).
 * NOTE: parts are taken mod 2^32; a non-integer part is truncated first.
 */
export function mixSeed(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const p of parts) {
    h = (h ^ (Math.trunc(p) >>> 0)) >>> 0;
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/** FNV-1a over the string's UTF-16 code units: a stable u32 for a class name or a path. */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
