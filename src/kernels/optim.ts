// Optimizer update kernels: SGD (momentum, dampening, Nesterov, weight decay) and Adam / AdamW,
// PyTorch semantics (torch.optim, single-tensor path, maximize=False, amsgrad=False). Everything is
// in place on the parameter and its state; one launch per parameter tensor. Hyperparameters are
// uniforms, so ONE pipeline serves every parameter group, whatever its LR or weight decay.
//
//   param p, grad g, state (momentum buf | m, v): same element count n, distinct buffers.
//   sgdStep:   d = g + wd·p
//              μ ≠ 0:  buf = d (first step) | μ·buf + (1 − dampening)·d
//                      d = nesterov ? d + μ·buf : buf
//              p ← p − lr·d
//   adamStep:  Adam:  g ← g + wd·p (L2)          AdamW (decoupled): p ← p·(1 − lr·wd)
//              m ← m + (1−β1)·(g − m)             (= β1·m + (1−β1)·g; PyTorch's lerp_)
//              v ← β2·v + (1−β2)·g²
//              p ← p − stepSize · m / (sqrt(v)/sqrt(bc2) + eps),  stepSize = lr/bc1,
//              bc1 = 1 − β1^t, bc2 = 1 − β2^t, t = step (1-based)             (PyTorch's formula)
//   NOTE: bc1, bc2, stepSize, sqrt(bc2), 1 − dampening, 1 − β are computed on the CPU in float64
//   and passed as f32 uniforms: β2^t in f32 loses digits (1 − 0.999^t for small t cancels), and it
//   is also how PyTorch rounds them (Python floats, cast once to the tensor's type).
//   NOTE: m and v must start as zeros (Tensor.zeros), as PyTorch's state does.
//   NOTE: the first SGD step reads the momentum buffer only to discard it (`select`), so it may
//   start uninitialised; the caller says which step is the first (`firstStep`).
//   NOTE: wd = 0 adds 0·p (PyTorch skips the add): the same result unless p is inf or NaN.
//
// Versions: elementwise and memory-bound (Adam moves 7 floats per element), so there is no tiling;
//   v1: one invocation per element (scalar loads).
//   v2: one invocation per 4 elements with vec4 loads/stores (fewer, wider loads: what lavapipe
//       rewards), over the 256-byte blocks of each window; the < 64-element tail of a window runs
//       v1 (a binding window must start at a 256-byte aligned offset). Default.
//   Measured on lavapipe (2 shared cores, noisy: a second run under load gave about half), n = 2^24,
//   GB/s of loads + stores (SGD 3, SGD-momentum 5, Adam 7 floats per element):
//                     v1     v2
//     sgd            2.2    4.4
//     sgd momentum   3.0    5.4
//     adam           2.8    5.0     (adam v2: ~94 ms per 16M-element tensor; VGG16's 103M-element
//                                    classifier.0.weight ≈ 0.6 s per step on this adapter)
//   `wgtrain bench --quick --no-e2e --filter adam` (v2, load average ~3): ResNet34 layer4 conv weight
//   (2.36M elements) 14.8 ms, 4.5 GB/s (the bench's copy roofline in the same run: 6.6 GB/s).
// Tensors above maxStorageBufferBindingSize (VGG16's 392 MiB classifier.0.weight) are updated in
// windows of the same buffers (`windows`/`win` from elementwise.ts), one dispatch per window.

import { grid1d, LINEAR_INDEX, memo, type BindingSpec, type KernelSpec } from '../gpu/kernel.js';
import type { Tensor } from '../gpu/tensor.js';
import { assertF32 } from '../gpu/tensor.js';
import type { UniformSpec, UniformValues } from '../gpu/uniforms.js';
import { windows, win } from './elementwise.js';

export type OptimVersion = 'v1' | 'v2';

const WG = 256;
const BLOCK = 64; // elements in 256 bytes: the binding-offset alignment, and the v2 granule

type SgdU = { n: 'u32'; lr: 'f32'; momentum: 'f32'; damp1: 'f32'; wd: 'f32'; nesterov: 'u32'; first: 'u32' };
const SGD_U: SgdU = { n: 'u32', lr: 'f32', momentum: 'f32', damp1: 'f32', wd: 'f32', nesterov: 'u32', first: 'u32' };

type AdamU = { n: 'u32'; l2: 'f32'; decay: 'f32'; w1: 'f32'; beta2: 'f32'; w2: 'f32'; stepSize: 'f32'; sqrtBc2: 'f32'; eps: 'f32' };
const ADAM_U: AdamU = { n: 'u32', l2: 'f32', decay: 'f32', w1: 'f32', beta2: 'f32', w2: 'f32', stepSize: 'f32', sqrtBc2: 'f32', eps: 'f32' };

/** Element type of the arrays: f32 (v1) or vec4<f32> (v2). The bodies below are written for either. */
const elem = (vec4: boolean) => (vec4 ? 'vec4<f32>' : 'f32');
const arr = (name: string, access: BindingSpec['access'], vec4: boolean): BindingSpec => ({ name, access, type: elem(vec4) });

function main(body: string): string {
  return /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = ${LINEAR_INDEX};
  if (i >= u.n) { return; }
${body}
}`;
}

// ---- SGD -------------------------------------------------------------------------------------

const sgdKernel = memo((mom: boolean, vec4: boolean) => `${mom}.${vec4}`, (mom: boolean, vec4: boolean): KernelSpec<SgdU> => ({
  name: `sgd.${vec4 ? 'v2' : 'v1'}`, key: `optim.sgd.${mom ? 'momentum' : 'plain'}.${elem(vec4)}`,
  uniforms: SGD_U,
  bindings: [arr('param', 'read_write', vec4), arr('grad', 'read', vec4), ...(mom ? [arr('mom', 'read_write', vec4)] : [])],
  workgroupSize: [WG, 1, 1],
  body: main(/* wgsl */ `
  let p = param[i];
  var d = grad[i] + u.wd * p;
  ${mom ? /* wgsl */ `// NOTE: on the first step buf[i] is not read into the result (select, not a branch on data).
  let b = select(u.momentum * mom[i] + u.damp1 * d, d, u.first != 0u);
  mom[i] = b;
  d = select(b, d + u.momentum * b, u.nesterov != 0u);` : ''}
  param[i] = p - u.lr * d;`),
}));

export interface SgdStepOptions {
  lr: number;
  momentum?: number;
  dampening?: number;
  weightDecay?: number;
  nesterov?: boolean;
  /** Required when momentum ≠ 0: true on the parameter's first step (buf = d). */
  firstStep?: boolean;
  version?: OptimVersion;
}

/**
 * One torch.optim.SGD step on one parameter tensor, in place on `param` (and `momentumBuf`, needed
 * iff momentum ≠ 0).
 */
export function sgdStep(param: Tensor, grad: Tensor, momentumBuf: Tensor | null, o: SgdStepOptions): (next: SgdStepOptions) => void {
  assertF32('sgdStep', param, grad, momentumBuf);
  const { momentum = 0, dampening = 0, nesterov = false, firstStep, version = 'v2' } = o;
  if (nesterov && (momentum <= 0 || dampening !== 0)) throw new Error('sgdStep: Nesterov momentum requires a momentum and zero dampening');
  const mom = momentum !== 0;
  if (mom && !momentumBuf) throw new Error('sgdStep: momentum ≠ 0 needs a momentum buffer');
  if (mom && firstStep === undefined) throw new Error('sgdStep: with momentum, say whether this is the first step (firstStep)');
  const ts = mom ? [param, grad, momentumBuf!] : [param, grad];
  checkOperands('sgdStep', ts);
  const rewrite = launch(ts, (vec4) => sgdKernel(mom, vec4), sgdUniforms(o), version, 'sgd');
  return (next) => rewrite(sgdUniforms(next));
}

function sgdUniforms(o: SgdStepOptions): UniformValues<SgdU> {
  const { lr, momentum = 0, dampening = 0, weightDecay = 0, nesterov = false, firstStep } = o;
  return { n: 0, lr, momentum, damp1: 1 - dampening, wd: weightDecay, nesterov: nesterov ? 1 : 0, first: firstStep ? 1 : 0 };
}

// ---- Adam / AdamW ----------------------------------------------------------------------------

const adamKernel = memo((vec4: boolean) => String(vec4), (vec4: boolean): KernelSpec<AdamU> => ({
  name: `adam.${vec4 ? 'v2' : 'v1'}`, key: `optim.adam.${elem(vec4)}`,
  uniforms: ADAM_U,
  bindings: [arr('param', 'read_write', vec4), arr('grad', 'read', vec4), arr('expAvg', 'read_write', vec4), arr('expAvgSq', 'read_write', vec4)],
  workgroupSize: [WG, 1, 1],
  // l2 = wd, decay = 1 for Adam; l2 = 0, decay = 1 − lr·wd for AdamW: one pipeline for both.
  body: main(/* wgsl */ `
  var p = param[i];
  let g = grad[i] + u.l2 * p;
  p = p * u.decay;
  let m0 = expAvg[i];
  // PyTorch's lerp: the formula is chosen by |weight| < 0.5 (u.w1 is uniform: no divergence).
  let m = select(g - (g - m0) * (1.0 - u.w1), m0 + u.w1 * (g - m0), abs(u.w1) < 0.5);
  let v = expAvgSq[i] * u.beta2 + u.w2 * g * g;
  expAvg[i] = m;
  expAvgSq[i] = v;
  param[i] = p - u.stepSize * (m / (sqrt(v) / u.sqrtBc2 + u.eps));`),
}));

export interface AdamStepOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** AdamW (decoupled weight decay) when true; Adam's L2 penalty otherwise. */
  decoupled?: boolean;
  /** 1-based step count of this parameter (PyTorch's state['step'] after its increment). */
  step: number;
  version?: OptimVersion;
}

/** One torch.optim.Adam / AdamW step on one parameter tensor, in place on param, m and v. */
export function adamStep(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, o: AdamStepOptions): (next: AdamStepOptions) => void {
  assertF32('adamStep', param, grad, m, v);
  const { beta1 = 0.9, beta2 = 0.999, step, version = 'v2' } = o;
  if (!Number.isInteger(step) || step < 1) throw new Error(`adamStep: step must be an integer ≥ 1 (1 on the first step), got ${step}`);
  if (!(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1)) throw new Error(`adamStep: betas (${beta1}, ${beta2}) must be in [0, 1)`);
  checkOperands('adamStep', [param, grad, m, v]);
  const rewrite = launch([param, grad, m, v], adamKernel, adamUniforms(o), version, 'adam');
  return (next) => rewrite(adamUniforms(next));
}

function adamUniforms(o: AdamStepOptions): UniformValues<AdamU> {
  const { lr, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0, decoupled = false, step } = o;
  // float64 on the CPU (see header NOTE).
  const bc1 = 1 - beta1 ** step, bc2 = 1 - beta2 ** step;
  return {
    n: 0,
    l2: decoupled ? 0 : weightDecay,
    decay: decoupled ? 1 - lr * weightDecay : 1,
    w1: 1 - beta1, beta2, w2: 1 - beta2,
    stepSize: lr / bc1, sqrtBc2: Math.sqrt(bc2), eps,
  };
}

// ---- launching -------------------------------------------------------------------------------

function checkOperands(what: string, ts: Tensor[]) {
  const n = ts[0]!.size;
  for (const t of ts) {
    t.assertLive();
    if (t.size !== n) throw new Error(`${what}: operands have ${ts.map((x) => x.size).join(' vs ')} elements`);
  }
  // WebGPU rejects a buffer bound twice when one binding is writable; say so in our words.
  if (new Set(ts.map((t) => t.buffer)).size !== ts.length) throw new Error(`${what}: parameter, gradient and state must be distinct buffers`);
}

/**
 * Runs `kernel` over every element of same-sized tensors: per binding window, a vec4 dispatch over
 * the whole 64-element blocks (v2) and a scalar one over the rest.
 */
function launch<U extends UniformSpec & { n: 'u32' }>(
  ts: Tensor[], kernel: (vec4: boolean) => KernelSpec<U>, u: UniformValues<U>, version: OptimVersion, label: string,
): Rewrite<U> {
  const gpu = ts[0]!.gpu;
  const launched: { k: KernelSpec<U>; ubuf: GPUBuffer | null; n: number }[] = [];
  for (const w of windows(gpu, ts[0]!.size)) {
    const body = version === 'v2' ? Math.floor(w.count / BLOCK) * BLOCK : 0;
    if (body > 0) {
      const k = kernel(true);
      launched.push({ k, n: body / 4, ubuf: gpu.run(k, ts.map((t) => win(t, w.start, body)), { ...u, n: body / 4 }, grid1d(body / 4, WG), label) });
    }
    const rest = w.count - body;
    if (rest > 0) {
      const k = kernel(false);
      launched.push({ k, n: rest, ubuf: gpu.run(k, ts.map((t) => win(t, w.start + body, rest)), { ...u, n: rest }, grid1d(rest, WG), label) });
    }
  }
  // NOTE: rewriting uniforms is only meaningful for a captured step (capture.ts), where the same
  // uniform buffers are bound again on every replay.
  return (nu) => { for (const l of launched) if (l.ubuf) gpu.writeUniforms(l.k, l.ubuf, { ...nu, n: l.n }); };
}

/** Rewrites the uniforms of dispatches already launched (for replays of a captured step). */
type Rewrite<U extends UniformSpec> = (u: UniformValues<U>) => void;
