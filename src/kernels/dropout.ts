// Dropout with a stateless mask: nothing is stored between forward and backward but a seed.
//
//   dropout:          y  = x · mask / (1 − p)          x, y: any shape (n elements)
//   dropoutBackward:  dX = dY · mask / (1 − p)         the same map: the mask is regenerated
//   mask[i] = 1  iff  (hash(seed, i) >> 8) ≥ round(p·2²⁴),   hash(seed, i) = pcg(pcg(i) ^ pcg(seed))
//
// pcg is the PCG-RXS-M-XS output permutation used as an integer hash (Jarzynski & Olano, "Hash
// functions for GPU rendering", 2020). The reference (reference/dropout.ts) computes the identical
// 32-bit integer hash, so tests compare the mask exactly.
//
// NOTE: the keep test is an integer comparison against a 24-bit threshold computed on the CPU, not
// `u < p` in floats: a float p would be rounded to f32 on the GPU and to nothing in the reference,
// and the two masks could differ at the boundary. The keep probability is 1 − round(p·2²⁴)/2²⁴.
// NOTE: p = 1 drops everything: the scale is 0 rather than 1/0, and the select() below makes every
// element exactly 0 (also where x is Inf/NaN, unlike PyTorch's x·0 which gives NaN).
// NOTE: i is the flat element index, so the mask of a tensor depends on its shape only through its
// size; two dropout layers must use different seeds (the caller draws one per call).
//
// Versions:
//   v1: one invocation per element.
//   v2 (default): one invocation per 4 elements with vec4 loads/stores (the few trailing elements of
//       a size that is not a multiple of 4 go through v1). Measured on lavapipe (2 vCPU, shared),
//       n = 8·64·56·56 (read x + write y, 12.8 MB): v1 5.6–14 ms ≈ 0.9–2.3 GB/s, v2 2.0–2.5 ms ≈
//       5.2–6.6 GB/s (the hash is ~30 integer ops per element; vec4 memory access is what counts).
//       Again with gpu-timestamp medians of a scratch script, [2,64,56,56] (load average 2–3):
//       v1 1.8–2.9 ms (1.1–1.8 GB/s), v2 1.0–1.35 ms (2.4–3.1 GB/s).
// Tensors above maxStorageBufferBindingSize are processed in windows; the index i is global.

import { grid1d, LINEAR_INDEX, memo, type KernelSpec } from '../gpu/kernel.js';
import { Tensor, assertF32 } from '../gpu/tensor.js';
import type { UniformValues } from '../gpu/uniforms.js';

const WG = 256;

export interface DropoutOptions {
  /** Kernel version (default 2). */
  version?: 1 | 2;
  /** Binding window size in bytes (default: the adapter's maxStorageBufferBindingSize). For tests. */
  maxWindowBytes?: number;
}

export interface DropoutResult {
  y: Tensor;
  /** The seed the mask came from (as a u32): pass it to dropoutBackward. */
  maskSeed: number;
}

/** 24-bit keep threshold: element i is kept iff (hash >> 8) ≥ threshold; p = 1 gives 2²⁴ (drop all). */
export function dropoutThreshold(p: number): number {
  if (!(p >= 0 && p <= 1)) throw new Error(`dropout: p must be in [0, 1], got ${p}`);
  return Math.round(p * 2 ** 24);
}

type DropU = { n: 'u32'; off: 'u32'; start: 'u32'; seed: 'u32'; thresh: 'u32'; scale: 'f32' };

const HASH_WGSL = /* wgsl */ `
fn pcg(v: u32) -> u32 {
  let s = v * 747796405u + 2891336453u;
  let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
  return (w >> 22u) ^ w;
}
// Element i (global index) is kept iff its 24 high hash bits reach the threshold.
fn keep(i: u32, key: u32) -> bool { return (pcg(pcg(i) ^ key) >> 8u) >= u.thresh; }`;

/**
 * Bindings x, y are a window starting at global element `start`; this dispatch covers local
 * elements [off, off + n) (v1) or local vec4s [0, n) (v2).
 */
const dropoutKernel = memo((vw: number) => `${vw}`, (vw: number): KernelSpec<DropU> => ({
  name: `dropout.v${vw === 4 ? 2 : 1}`, key: `dropout.vw${vw}`,
  uniforms: { n: 'u32', off: 'u32', start: 'u32', seed: 'u32', thresh: 'u32', scale: 'f32' },
  bindings: [
    { name: 'x', access: 'read', type: vw === 4 ? 'vec4<f32>' : 'f32' },
    { name: 'y', access: 'read_write', type: vw === 4 ? 'vec4<f32>' : 'f32' },
  ],
  workgroupSize: [WG, 1, 1],
  body: /* wgsl */ `${HASH_WGSL}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = ${LINEAR_INDEX};
  if (t >= u.n) { return; }
  let key = pcg(u.seed);
  ${vw === 4 ? `let i = u.start + 4u * t;
  let k = vec4<bool>(keep(i, key), keep(i + 1u, key), keep(i + 2u, key), keep(i + 3u, key));
  y[t] = select(vec4<f32>(0.0), x[t] * u.scale, k);` : `let l = u.off + t;
  y[l] = select(0.0, x[l] * u.scale, keep(u.start + l, key));`}
}`,
}));

/**
 * Launches the mask-multiply and returns y with a `reseed` that rewrites the seed of the dispatches
 * just encoded: a captured training step replays them with a fresh mask each time.
 */
export function dropoutLaunch(x: Tensor, p: number, seed: number, opts: DropoutOptions = {}): { y: Tensor; reseed: (seed: number) => void } {
  assertF32('dropoutLaunch', x);
  const thresh = dropoutThreshold(p);
  if (!Number.isInteger(seed)) throw new Error(`dropout: seed must be an integer, got ${seed}`);
  if (x.size >= 2 ** 32) throw new Error('dropout: more than 2³² elements');
  const gpu = x.gpu;
  const y = Tensor.empty(gpu, x.shape);
  const base = { seed: seed >>> 0, thresh, scale: p < 1 ? 1 / (1 - p) : 0 };
  const launched: { k: KernelSpec<DropU>; ubuf: GPUBuffer | null; u: UniformValues<DropU> }[] = [];
  // NOTE: windows are multiples of 64 elements (256-byte binding offsets), so only the last window
  // can have a tail that is not a multiple of 4.
  const maxElems = Math.floor((opts.maxWindowBytes ?? gpu.maxBinding) / 4 / 64) * 64;
  if (maxElems < 64) throw new Error('dropout: maxWindowBytes below 256');
  for (let start = 0; start < x.size; start += maxElems) {
    const count = Math.min(maxElems, x.size - start);
    const n4 = opts.version === 1 ? 0 : Math.floor(count / 4);
    if (n4 > 0) {
      const b = { offset: start * 4, size: n4 * 16 };
      const u = { ...base, n: n4, off: 0, start };
      launched.push({ k: dropoutKernel(4), u, ubuf: gpu.run(dropoutKernel(4), [{ buffer: x.buffer, ...b }, { buffer: y.buffer, ...b }], u, grid1d(n4, WG), 'dropout') });
    }
    const rest = count - 4 * n4;
    if (rest > 0) {
      const b = { offset: start * 4, size: count * 4 };
      const u = { ...base, n: rest, off: 4 * n4, start };
      launched.push({ k: dropoutKernel(1), u, ubuf: gpu.run(dropoutKernel(1), [{ buffer: x.buffer, ...b }, { buffer: y.buffer, ...b }], u, grid1d(rest, WG), 'dropout') });
    }
  }
  const reseed = (next: number) => {
    for (const l of launched) if (l.ubuf) gpu.writeUniforms(l.k, l.ubuf, { ...l.u, seed: next >>> 0 });
  };
  return { y, reseed };
}

/** y = x·mask/(1 − p) with mask from (seed, element index). Deterministic for a given seed. */
export function dropout(x: Tensor, p: number, seed: number, opts: DropoutOptions = {}): DropoutResult {
  return { y: dropoutLaunch(x, p, seed, opts).y, maskSeed: seed >>> 0 };
}

/** dX = dY·mask/(1 − p): regenerates the forward's mask from its seed (nothing was stored). */
export function dropoutBackward(dY: Tensor, p: number, maskSeed: number, opts: DropoutOptions = {}): Tensor {
  assertF32('dropoutBackward', dY);
  return dropoutLaunch(dY, p, maskSeed, opts).y;
}
