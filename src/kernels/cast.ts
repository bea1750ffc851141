// Cast: change a tensor's storage precision (f32 ↔ f16). Elementwise over any shape (n elements).
//
//   cast(x, 'f16'):  y = f16(x)     rounded to a nearby f16 (see NOTE), |x| > 65504 → ±∞
//   cast(x, 'f32'):  y = f32(x)     exact (every f16 is an f32)
//
// The f16 side is read and written as packed pairs, one u32 holding halves 2i (low 16 bits) and 2i+1
// (high), with WGSL's core pack2x16float / unpack2x16float: one invocation per pair, and no
// `shader-f16` feature needed, so f16 storage can be produced and read on every adapter (only kernels
// that compute on f16 operands, such as matmul, need the feature).
// NOTE: f32 → f16 rounding. WGSL lets an implementation round an inexact conversion to either
// neighbour; the CPU side (`Tensor.from(…, 'f16')`, tensor.ts `f16Bits`) rounds to nearest, ties to
// even. They agree on every value that is exactly representable, and on lavapipe (measured: the test
// compares both on random values) everywhere; elsewhere they may differ by one f16 ulp.
// NOTE: an odd count leaves the high half of the last u32 as padding: the cast writes it as 0 (the
// buffer is rounded up to 4 bytes, so the padding is ours to write).
//
// Versions: v1 only (memory-bound, like elementwise.ts). Tensors above the binding limit are cast in
// windows of whole pairs, each window's start aligned to 256 bytes on both sides.

import { grid1d, LINEAR_INDEX, memo, type KernelSpec } from '../gpu/kernel.js';
import { Tensor, type DType } from '../gpu/tensor.js';

const WG = 256;
const CAST_U = { n: 'u32' } as const; // elements in this window
type CastU = typeof CAST_U;

/** The kernel converting `from` storage into `to` storage; f16 is bound as packed u32 pairs. */
const castKernel = memo((to: DType) => to, (to: DType): KernelSpec<CastU> => {
  const toF16 = to === 'f16';
  return {
    name: `cast.${to}`, key: `cast.${to}`,
    uniforms: CAST_U,
    bindings: [
      { name: 'X', access: 'read', type: toF16 ? 'f32' : 'u32' },
      { name: 'Y', access: 'read_write', type: toF16 ? 'u32' : 'f32' },
    ],
    workgroupSize: [WG, 1, 1],
    body: /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = ${LINEAR_INDEX}; // pair index: elements 2i and 2i + 1
  if (2u * i >= u.n) { return; }
  let second = 2u * i + 1u < u.n;
${toF16 ? `  // Y[i] = f16(X[2i]) | f16(X[2i+1]) << 16 (the padding half of an odd count is 0)
  Y[i] = pack2x16float(vec2f(X[2u * i], select(0.0, X[2u * i + 1u], second)));`
    : `  // X[i] holds halves 2i (low) and 2i + 1 (high)
  let v = unpack2x16float(X[i]);
  Y[2u * i] = v.x;
  if (second) { Y[2u * i + 1u] = v.y; }`}
}`,
  };
});

/**
 * y = x converted to `dtype` storage (a new tensor, same shape; a plain copy when x already has it).
 * The values read back by `read()` are f32 either way.
 */
export function cast(x: Tensor, dtype: DType): Tensor {
  x.assertLive();
  const gpu = x.gpu;
  const y = Tensor.empty(gpu, x.shape, 'cast', dtype);
  const n = x.size;
  if (n === 0) return y;
  if (x.dtype === dtype) {
    gpu.copy(x.buffer, 0, y.buffer, 0, Math.ceil(x.byteLength / 4) * 4);
    return y;
  }
  // Windows of `chunk` elements: a multiple of 128, so both the f32 offset (4 B/element) and the f16
  // offset (2 B/element) are multiples of 256 bytes, and the f32 side fits one binding.
  const chunk = Math.floor(gpu.maxBinding / 4 / 128) * 128;
  const [f32t, f16t] = dtype === 'f16' ? [x, y] : [y, x];
  for (let s = 0; s < n; s += chunk) {
    const count = Math.min(chunk, n - s), pairs = Math.ceil(count / 2);
    const f32w = { buffer: f32t.buffer, offset: s * 4, size: count * 4 };
    const f16w = { buffer: f16t.buffer, offset: s * 2, size: pairs * 4 };
    const [X, Y] = dtype === 'f16' ? [f32w, f16w] : [f16w, f32w];
    gpu.run(castKernel(dtype), [X, Y], { n: count }, grid1d(pairs, WG), 'cast');
  }
  return y;
}
