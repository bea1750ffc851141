// Local response normalisation across channels (ONNX LRN; AlexNet, GoogLeNet v1, CaffeNet), forward
// and backward side by side.
//
//   x, y, dY, dX, denom: [N, C, D1, …, Dk], any rank ≥ 2; the spatial axes are flattened: [N, C, S]
//   with S = Π D (S = 1 for [N, C]). Every (n, s) column of C channels is normalised on its own.
//
//   Window of channel c (ONNX):  W(c) = [max(0, c − lo), min(C − 1, c + hi)],  lo = ⌊(size−1)/2⌋,
//                                                                             hi = ⌈(size−1)/2⌉
//   lrn:          d_c = bias + (α/size)·Σ_{i∈W(c)} x_i²          (the "denominator", saved)
//                 y_c = x_c · d_c^−β
//   lrnBackward (saves: x, d):
//                 ∂y_c/∂x_j = [c = j]·d_c^−β − β·x_c·d_c^(−β−1)·(α/size)·2x_j·[j ∈ W(c)], so
//                 dX_j = dY_j·d_j^−β − (2αβ/size)·x_j · Σ_{c : j∈W(c)} dY_c·x_c·d_c^(−β−1)
//                 and j ∈ W(c) ⟺ c ∈ [j − hi, j + lo]: the window mirrored (the same for odd sizes).
//
// NOTE: α is divided by size (ONNX, PyTorch, Caffe; not cuDNN's "alpha" convention, which is the
// same thing written per element). ONNX defaults: α = 1e-4, β = 0.75, bias = 1.
// NOTE: for an EVEN size, ONNX and PyTorch centre the window differently: ONNX takes ⌊(size−1)/2⌋
// channels before c and ⌈(size−1)/2⌉ after; torch.nn.LocalResponseNorm pads ⌊size/2⌋ before and
// ⌊(size−1)/2⌋ after (size 4: ONNX [c−1, c+2], PyTorch [c−2, c+1]). We follow ONNX. Odd sizes (all
// the classic networks use 5) agree.
// NOTE: d^−β is pow(d, −β), which WGSL defines for d > 0 only: with bias > 0 (every real model) d ≥
// bias. bias = 0 and an all-zero window would give 0^−β: undefined on the GPU (∞ in the reference).
//
// Versions: v1 only. Forward: one invocation per element, `size` loads of its channel window (a
// column's elements are S apart). Backward: one invocation per input element, a gather over the
// mirrored window (3·size loads and `size` pows); a gather sums in a fixed order (deterministic) and
// needs no atomics. A sliding window down each column (one invocation per (n, s), a running Σx²)
// would load each element once instead of `size` times; with size = 5 and LRN's place in old
// networks only, v1 is kept. Measured on lavapipe (2 shared vCPUs, loaded), [8,64,56,56] size 5:
// forward 26–45 ms, backward 36–79 ms (0.4–0.7 GB/s of compulsory traffic). Again with gpu-timestamp
// medians of a scratch script, [2,64,56,56] size 5 (load average 2–3): forward 9.8–10.3 ms (0.5 GB/s
// of x read + y, denom written), backward 13–15.5 ms (0.4–0.5 GB/s of x, denom, dY read + dX written).
//
// Tensors above maxStorageBufferBindingSize are processed in windows of whole samples (a sample's
// C·S elements must fit one binding).

import { grid1d, LINEAR_INDEX, type KernelSpec } from '../gpu/kernel.js';
import { Tensor, expectShape, numel, assertF32 } from '../gpu/tensor.js';
import type { Binding, Gpu } from '../gpu/device.js';
import type { UniformValues } from '../gpu/uniforms.js';

const WG = 64;

export interface LrnOptions {
  /** Channels in the window (ONNX `size`, required). */
  size: number;
  /** default 1e-4 (ONNX) */
  alpha?: number;
  /** default 0.75 (ONNX) */
  beta?: number;
  /** default 1 (ONNX) */
  bias?: number;
}

export interface LrnResult {
  /** same shape as x */
  y: Tensor;
  /** d = bias + (α/size)·Σ_window x², same shape as x: what the backward needs (with x). */
  denom: Tensor;
}

/** Test hook: caps the binding size used to split tensors into sample windows (0: the adapter's limit). */
export const lrnTesting = { maxBindingBytes: 0 };

// One uniform layout for both kernels. n: elements in this dispatch; xo: element offset of the
// window's first sample inside the bound (256-byte aligned) windows; a = α/size.
const LRN_U = {
  n: 'u32', C: 'u32', S: 'u32', lo: 'u32', hi: 'u32', xo: 'u32', a: 'f32', beta: 'f32', bias: 'f32',
} as const;
type LrnU = typeof LRN_U;
type LrnValues = UniformValues<LrnU>;

/** WGSL: decode element i of the window into (sample base, channel c, position s). */
const DECODE = /* wgsl */ `
  let s = i % u.S;
  let c = (i / u.S) % u.C;
  // element (n, 0, s) of this invocation's sample; channel k is at col + k·S
  let col = u.xo + (i / (u.S * u.C)) * u.C * u.S + s;`;

const fwdKernel: KernelSpec<LrnU> = {
  name: 'lrn.fwd.v1', key: 'lrn.fwd.v1',
  uniforms: LRN_U,
  bindings: [{ name: 'x', access: 'read' }, { name: 'y', access: 'read_write' }, { name: 'denom', access: 'read_write' }],
  workgroupSize: [WG, 1, 1],
  body: /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = ${LINEAR_INDEX};
  if (i >= u.n) { return; }
  ${DECODE}
  // W(c) = [c − lo, c + hi] ∩ [0, C − 1]
  let k0 = select(0u, c - u.lo, c >= u.lo);
  let k1 = min(u.C - 1u, c + u.hi);
  var sq = 0.0;
  for (var k = k0; k <= k1; k++) {
    let v = x[col + k * u.S];
    sq += v * v;
  }
  let d = u.bias + u.a * sq;
  denom[u.xo + i] = d;
  y[u.xo + i] = x[u.xo + i] * pow(d, -u.beta);
}`,
};

const bwdKernel: KernelSpec<LrnU> = {
  name: 'lrn.bwd.v1', key: 'lrn.bwd.v1',
  uniforms: LRN_U,
  bindings: [
    { name: 'x', access: 'read' }, { name: 'denom', access: 'read' }, { name: 'dy', access: 'read' },
    { name: 'dx', access: 'read_write' },
  ],
  workgroupSize: [WG, 1, 1],
  body: /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = ${LINEAR_INDEX};
  if (i >= u.n) { return; }
  ${DECODE}
  // This element is channel j = c. The outputs whose window holds j: k ∈ [j − hi, j + lo] ∩ [0, C − 1].
  let k0 = select(0u, c - u.hi, c >= u.hi);
  let k1 = min(u.C - 1u, c + u.lo);
  var acc = 0.0;   // Σ_k dY_k · x_k · d_k^(−β−1)
  for (var k = k0; k <= k1; k++) {
    let e = col + k * u.S;
    let d = denom[e];
    acc += dy[e] * x[e] * pow(d, -u.beta) / d;
  }
  let j = u.xo + i;
  dx[j] = dy[j] * pow(denom[j], -u.beta) - 2.0 * u.a * u.beta * x[j] * acc;
}`,
};

// ---- geometry, sample windows, launch --------------------------------------------------------

interface LrnGeom { N: number; C: number; S: number; vals: Omit<LrnValues, 'n' | 'xo'> }

function geometry(what: string, shape: readonly number[], o: LrnOptions): LrnGeom {
  if (shape.length < 2) throw new Error(`${what}: expected x of shape [N, C, ...], got [${shape.join(', ')}]`);
  const { size } = o, alpha = o.alpha ?? 1e-4, beta = o.beta ?? 0.75, bias = o.bias ?? 1;
  if (!Number.isInteger(size) || size < 1) throw new Error(`${what}: size must be a positive integer, got ${size}`);
  if (![alpha, beta, bias].every(Number.isFinite)) throw new Error(`${what}: alpha, beta and bias must be finite`);
  const N = shape[0]!, C = shape[1]!, S = numel(shape.slice(2));
  return {
    N, C, S,
    vals: { C, S, lo: Math.floor((size - 1) / 2), hi: Math.ceil((size - 1) / 2), a: alpha / size, beta, bias },
  };
}

/** Whole samples [n0, n1) bound as elements [start, start + count); sample n0 sits at start + xo. */
interface SampleWindow { n0: number; n1: number; start: number; count: number; xo: number }

function sampleWindows(gpu: Gpu, g: LrnGeom): SampleWindow[] {
  const per = g.C * g.S;
  const align = Number(gpu.limits.minStorageBufferOffsetAlignment) / 4;
  const limit = Math.floor((lrnTesting.maxBindingBytes || gpu.maxBinding) / 4);
  if (g.N * per <= limit) return [{ n0: 0, n1: g.N, start: 0, count: g.N * per, xo: 0 }];
  if (per + align - 1 > limit) throw new Error(`lrn: one sample (${per} values) exceeds the storage binding limit`);
  const out: SampleWindow[] = [];
  for (let n0 = 0; n0 < g.N;) {
    // NOTE: binding offsets must be multiples of 256 bytes, so the window starts at or before n0·C·S.
    const start = Math.floor((n0 * per) / align) * align, xo = n0 * per - start;
    const n1 = Math.min(g.N, n0 + Math.floor((limit - xo) / per));
    out.push({ n0, n1, start, count: n1 * per - start, xo });
    n0 = n1;
  }
  return out;
}

function launch(k: KernelSpec<LrnU>, label: string, g: LrnGeom, tensors: readonly Tensor[]) {
  if (g.N * g.C * g.S === 0) return;
  const gpu = tensors[0]!.gpu;
  for (const w of sampleWindows(gpu, g)) {
    const b: Binding[] = tensors.map((t) => ({ buffer: t.buffer, offset: w.start * 4, size: w.count * 4 }));
    const n = (w.n1 - w.n0) * g.C * g.S;
    gpu.run(k, b, { ...g.vals, n, xo: w.xo }, grid1d(n, WG), label);
  }
}

/** ONNX LRN across channels. Returns y and the denominators d that the backward needs. */
export function lrn(x: Tensor, opts: LrnOptions): LrnResult {
  assertF32('lrn', x);
  const g = geometry('lrn', x.shape, opts);
  const y = Tensor.empty(x.gpu, x.shape), denom = Tensor.empty(x.gpu, x.shape, 'lrn.denom');
  launch(fwdKernel, 'lrn', g, [x, y, denom]);
  return { y, denom };
}

/** dX from the forward's input x, its saved denominators and dY; `opts` must be the forward's. */
export function lrnBackward(x: Tensor, denom: Tensor, dY: Tensor, opts: LrnOptions): Tensor {
  assertF32('lrnBackward', x, denom, dY);
  const g = geometry('lrnBackward', x.shape, opts);
  expectShape('lrnBackward denom', denom, x.shape);
  expectShape('lrnBackward dY', dY, x.shape);
  const dX = Tensor.empty(x.gpu, x.shape);
  launch(bwdKernel, 'lrn.bwd', g, [x, denom, dY, dX]);
  return dX;
}
