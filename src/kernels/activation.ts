// Activations beyond ReLU: sigmoid, tanh and clip (ONNX Sigmoid / Tanh / Clip, torch.clamp, ReLU6),
// forward and backward side by side. Elementwise: x, y, dY, dX have any shape (n elements).
//
//   sigmoid:          y = σ(x) = 1 / (1 + e^−x)
//   sigmoidBackward:  dX = dY · y · (1 − y)                 saved: y       (dσ/dx = σ(1 − σ))
//   tanh:             y = tanh x
//   tanhBackward:     dX = dY · (1 − y²)                    saved: y       (d tanh/dx = 1 − tanh²)
//   clip:             y = min(max(x, lo), hi)               lo/hi default to ∓∞ (ONNX's optional inputs)
//   clipBackward:     dX = dY · [lo ≤ x ≤ hi]               saved: x       mode 'clamp' (default)
//                     dX = dY · [lo < x < hi]                              mode 'hardtanh'
//
// NOTE: the boundary convention of clip's gradient. The derivative does not exist at x = lo and
// x = hi; frameworks pick different subgradients there:
//   - torch.clamp / torch.clip (what `torch.onnx.export` of clamp turns into ONNX Clip) pass the
//     gradient where lo ≤ x ≤ hi (PyTorch's clamp_backward: `where(self >= min & self <= max, grad, 0)`),
//   - torch.nn.Hardtanh and ReLU6 (= hardtanh(0, 6), also exported as Clip) pass it only where
//     lo < x < hi (hardtanh_backward zeroes where x ≤ lo or x ≥ hi).
// An ONNX Clip does not say which module it came from, so 'clamp' is the default (ONNX Clip is
// clamp's definition); 'hardtanh' is there for an importer that recognises ReLU6. The two differ only
// where x equals a bound exactly, which does happen in f32 (x = 0 after a ReLU, zero padding, a dead
// channel). With only min given (max = +∞), 'clamp' is a ReLU whose gradient at 0 is 1, unlike
// relu's 0: again what PyTorch's clamp(min=0) does.
// NOTE: lo > hi gives y = hi everywhere (min after max), as ONNX Clip and torch.clamp define it; the
// backward then passes nothing in 'clamp' mode (no x has lo ≤ x ≤ hi), as PyTorch.
// NOTE: NaN handling follows PyTorch's formulas on paper (a NaN x gets dX = 0 in 'clamp' mode, dY in
// 'hardtanh' mode), but WGSL lets implementations assume no NaNs, so it is not guaranteed (or tested).
//
// Numerics (f32 on the GPU, compared with float64 references):
//   σ(x) = 1/(1 + e) for x ≥ 0, e/(1 + e) for x < 0, e = exp(−|x|) ∈ (0, 1]: exp never overflows
//   (1/(1 + exp(−x)) would compute exp(88.8) = ∞ for x < −88.7; harmless here, but the stable form
//   costs nothing) and there is no cancellation, so the relative error is a few ulp everywhere.
//   tanh(x) = sign(x)·(1 − e)/(1 + e), e = exp(−2|x|), for |x| ≥ 0.125; below that 1 − e cancels
//   (at |x| = 1e-4 half the digits are gone) so we use the odd series x − x³/3 + 2x⁵/15 − 17x⁷/315,
//   whose first omitted term (62/2835)x⁹ is < 2e-9 of the result there. NOTE: not WGSL's tanh(),
//   which implementations may compute as sinh/cosh (NaN for large |x| on some) or with the same
//   cancellation near 0.
//   The backwards use the saved y, as PyTorch does: y(1 − y) for y near 1 has the absolute error of
//   y (~6e-8), which is large relative to σ'(x) ≈ e^−x when x ≫ 1. That is inherent to saving y.
//
// Versions (every kernel here; `version` option, default 2), as elementwise.ts `mapBody`/`launchMap`:
//   v1  one invocation per element.
//   v2  one invocation per 4 elements, vec4 loads and stores, the scalar formulas per component;
//       the ≤ 3 elements past the last whole vec4 run v1. Bit-identical to v1.
//   Measured on lavapipe (2 vCPUs shared with other jobs, load average 2–4: ±2× between runs),
//   GB/s of loads + stores, gpu-timestamp medians, v1 and v2 interleaved in one scratch script:
//                             [2,64,56,56] (401k)   [8,64,56,56] (1.6M)
//     sigmoid          v1     3.2 ms 1.0            24.0 ms 0.5
//                      v2     2.4 ms 1.4             8.2 ms 1.6
//     sigmoidBackward  v1     4.7 ms 1.0            26.8 ms 0.7
//                      v2     1.0 ms 5.0            10.0 ms 1.9
//   (An earlier, quieter run of v1 gave sigmoid 7–14 ms at 1.6M elements.) The forward's exp keeps
//   it nearer compute-bound than relu, so it gains less. Tensors above maxStorageBufferBindingSize
//   are processed in windows (elementwise.ts `launchMap`).

import { memo, type KernelSpec } from '../gpu/kernel.js';
import { Tensor, expectShape } from '../gpu/tensor.js';
import { launchMap, mapBody, mapElem, type ElementwiseOptions, type ElementwiseVersion } from './elementwise.js';

const WG = 256;

export type ActivationOp = 'sigmoid' | 'tanh' | 'clip';

/** Which subgradient clip's backward uses on the bounds (see the header). */
export type ClipGradMode = 'clamp' | 'hardtanh';

export interface ClipBackwardOptions extends ElementwiseOptions {
  /** 'clamp' (default): dX = dY where lo ≤ x ≤ hi. 'hardtanh' (ReLU6): where lo < x < hi. */
  mode?: ClipGradMode;
}

// One uniform layout for every kernel here: n, off as elementwise.ts `launchMap`; lo, hi: clip's bounds.
const ACT_U = { n: 'u32', off: 'u32', lo: 'f32', hi: 'f32' } as const;
type ActU = typeof ACT_U;

// Stable scalar helpers (see the header for the numerics).
const HELPERS = /* wgsl */ `
fn sigmoid_stable(v: f32) -> f32 {
  let e = exp(-abs(v));
  return select(e, 1.0, v >= 0.0) / (1.0 + e);
}
fn tanh_stable(v: f32) -> f32 {
  let a = abs(v);
  if (a < 0.125) {
    let s = v * v;
    return v * (1.0 + s * (-1.0 / 3.0 + s * (2.0 / 15.0 + s * (-17.0 / 315.0))));
  }
  let e = exp(-2.0 * a);
  return sign(v) * (1.0 - e) / (1.0 + e);
}`;

const FWD_EXPR: Record<ActivationOp, string> = {
  sigmoid: 'sigmoid_stable(v)',
  tanh: 'tanh_stable(v)',
  // NOTE: min(max()) and not clamp(): WGSL's clamp(v, lo, hi) is undefined for lo > hi.
  clip: 'min(max(v, u.lo), u.hi)',
};

const vname = (vec4: boolean) => `v${vec4 ? 2 : 1}`;

/** y[i] = f(x[i]). */
const fwdKernel = memo((op: ActivationOp, vec4: boolean) => `${op}.${vec4}`, (op: ActivationOp, vec4: boolean): KernelSpec<ActU> => {
  const type = mapElem(vec4);
  return {
    name: `${op}.${vname(vec4)}`, key: `activation.${op}.fwd.${vname(vec4)}`,
    uniforms: ACT_U,
    bindings: [{ name: 'x', access: 'read', type }, { name: 'y', access: 'read_write', type }],
    workgroupSize: [WG, 1, 1],
    body: mapBody([['v', 'x']], 'y', FWD_EXPR[op], vec4, HELPERS),
  };
});

// Backward expressions in s (the saved tensor: y for sigmoid/tanh, x for clip) and g = dY.
type BwdVariant = 'sigmoid' | 'tanh' | 'clip.clamp' | 'clip.hardtanh';
const BWD_EXPR: Record<BwdVariant, string> = {
  sigmoid: 'g * s * (1.0 - s)',
  // NOTE: (1 − y)(1 + y), not 1 − y²: for y near ±1, 1 − y·y cancels the rounding error of y·y
  // (~6e-8) against a small result; 1 − y is exact there (Sterbenz), so the product keeps ~1 ulp.
  tanh: 'g * (1.0 - s) * (1.0 + s)',
  'clip.clamp': 'select(0.0, g, s >= u.lo && s <= u.hi)',
  'clip.hardtanh': 'select(g, 0.0, s <= u.lo || s >= u.hi)',
};

/** dX[i] = dY[i] · f'(…) from the saved tensor s (y or x, see BWD_EXPR). */
const bwdKernel = memo((v: BwdVariant, vec4: boolean) => `${v}.${vec4}`, (v: BwdVariant, vec4: boolean): KernelSpec<ActU> => {
  const type = mapElem(vec4);
  return {
    name: `${v.split('.')[0]}.bwd.${vname(vec4)}`, key: `activation.${v}.bwd.${vname(vec4)}`,
    uniforms: ACT_U,
    bindings: [{ name: 'saved', access: 'read', type }, { name: 'dy', access: 'read', type }, { name: 'dx', access: 'read_write', type }],
    workgroupSize: [WG, 1, 1],
    body: mapBody([['s', 'saved'], ['g', 'dy']], 'dx', BWD_EXPR[v], vec4),
  };
});

function forward(op: ActivationOp, x: Tensor, lo: number, hi: number, version: ElementwiseVersion = 2): Tensor {
  const y = Tensor.empty(x.gpu, x.shape);
  launchMap(x.gpu, (v4) => fwdKernel(op, v4), [x, y], x.size, { lo, hi }, version, op);
  return y;
}

function backward(v: BwdVariant, saved: Tensor, dY: Tensor, lo: number, hi: number, version: ElementwiseVersion = 2): Tensor {
  expectShape(`${v} backward dY`, dY, saved.shape);
  const dX = Tensor.empty(saved.gpu, saved.shape);
  launchMap(saved.gpu, (v4) => bwdKernel(v, v4), [saved, dY, dX], saved.size, { lo, hi }, version, `${v}.bwd`);
  return dX;
}

/** y = σ(x) = 1/(1 + e^−x). */
export function sigmoid(x: Tensor, opts: ElementwiseOptions = {}): Tensor { return forward('sigmoid', x, 0, 0, opts.version); }

/** dX = dY·y·(1 − y), from the forward's OUTPUT y. */
export function sigmoidBackward(y: Tensor, dY: Tensor, opts: ElementwiseOptions = {}): Tensor { return backward('sigmoid', y, dY, 0, 0, opts.version); }

/** y = tanh(x). */
export function tanh(x: Tensor, opts: ElementwiseOptions = {}): Tensor { return forward('tanh', x, 0, 0, opts.version); }

/** dX = dY·(1 − y²), from the forward's OUTPUT y. */
export function tanhBackward(y: Tensor, dY: Tensor, opts: ElementwiseOptions = {}): Tensor { return backward('tanh', y, dY, 0, 0, opts.version); }

function bounds(what: string, lo: number, hi: number) {
  if (Number.isNaN(lo) || Number.isNaN(hi)) throw new Error(`${what}: min/max must not be NaN`);
}

/**
 * y = min(max(x, lo), hi). Omit a bound (or pass ∓Infinity) for a one-sided clip, as ONNX Clip's
 * optional min/max inputs. lo > hi gives hi everywhere (ONNX, torch.clamp).
 */
export function clip(x: Tensor, lo = -Infinity, hi = Infinity, opts: ElementwiseOptions = {}): Tensor {
  bounds('clip', lo, hi);
  return forward('clip', x, lo, hi, opts.version);
}

/**
 * dX = dY·[lo ≤ x ≤ hi] ('clamp', default: torch.clamp) or dY·[lo < x < hi] ('hardtanh': ReLU6),
 * from the forward's INPUT x. See the header for why the bound matters.
 */
export function clipBackward(x: Tensor, dY: Tensor, lo = -Infinity, hi = Infinity, opts: ClipBackwardOptions = {}): Tensor {
  bounds('clipBackward', lo, hi);
  const mode = opts.mode ?? 'clamp';
  switch (mode) {
    case 'clamp': return backward('clip.clamp', x, dY, lo, hi, opts.version);
    case 'hardtanh': return backward('clip.hardtanh', x, dY, lo, hi, opts.version);
    default: return mode satisfies never;
  }
}
