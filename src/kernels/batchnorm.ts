// Batch normalisation over NCHW: inference and training forward, and both backwards.
//
//   x, y, dY, dX: [N, C, H, W] (or [N, C]: H·W = 1, as ONNX BatchNormalization after a Flatten)
//   gamma, beta, runningMean, runningVar, saveMean, saveInvStd, dGamma, dBeta: [C];  m = N·H·W
//
//   inference:  y = gamma·(x − mean)/sqrt(var + eps) + beta              (running statistics)
//               (option relu: y = max(0, that), the fused BN + ReLU; its backward is the caller's:
//               mask dY with [y > 0], then the inference backward below, see autograd/ops.ts)
//   training:   mean = Σx/m, var = Σ(x − mean)²/m (biased), invStd = 1/sqrt(var + eps),
//               y = gamma·(x − mean)·invStd + beta; saves mean and invStd for the backward, and updates
//               running = (1 − momentum)·running + momentum·batch, with the UNBIASED var·m/(m − 1).
//   backward (training):  x̂ = (x − mean)·invStd
//               dGamma = Σ dY·x̂,  dBeta = Σ dY,  dX = gamma·invStd/m · (m·dY − Σ dY − x̂·Σ(dY·x̂))
//   backward (inference, frozen statistics): BN is a per-channel affine map
//               dX = dY·gamma·invStd,  dGamma = Σ dY·x̂,  dBeta = Σ dY      (x̂, invStd from running stats)
//
// NOTE: momentum is PyTorch's (default 0.1: weight of the NEW batch statistic). ONNX's
// BatchNormalization `momentum` attribute (default 0.9) is the weight of the OLD running value:
// torch_momentum = 1 − onnx_momentum. Convert when importing/exporting.
//
// Structure: every path is "per-channel coefficients, then one elementwise pass". The per-channel
// reductions (statistics; Σ dY and Σ dY·(x − mean)) run as chunked partial sums in one dispatch and a
// per-channel finalize in a second; no workgroup barriers (expensive on lavapipe, software-adapter.md).
// The finalize writes coef[c] = (A, B, M, D) and the elementwise pass computes
//   out = A·p + B·(q − M) + D          (forward: q = x; training backward: p = dY, q = x)
// NOTE: (q − M) is kept instead of folding B·M into D: with |mean| ≫ std, B·x − B·mean cancels.
//
// Statistics, numerically: each chunk computes its own count, mean and M2 = Σ(x − chunk mean)² in two
// passes over the chunk (the second pass reads from cache; the first sums x − x₀, shifted by the
// chunk's first value); the finalize merges chunks exactly (Chan et al.): mean = Σ nᵢ·meanᵢ / m,
// M2 = Σ M2ᵢ + nᵢ·(meanᵢ − mean)². Never E[x²] − E[x]², which loses every digit when |mean| ≫ std.
// (Chosen over Welford: the same accuracy here, and no division per element.)
//
// Versions:
//   v1: one invocation per channel reduces the whole channel (the "chunk" is the channel), scalar
//       loads; the elementwise pass is one invocation per element on a flat grid. Parallelism = C
//       invocations for the reductions, so it leaves most of the machine idle.
//   v2 (default): chunks of ~max(256, √m) elements, so C·√m invocations reduce in parallel and the
//       finalize loops over ~√m partials per channel; vec4 loads when H·W % 4 == 0; and the
//       elementwise pass on a plane grid (channel = workgroup id, no per-lane integer division) for
//       planes of ≥ 32 units.
//   Measured on lavapipe (2 vCPU, heavily shared while measuring: ranges over runs), [8,64,56,56]
//   training forward + backward, effective bandwidth counting 8 tensor passes of 6.4 MB (fwd: read x
//   twice, write y; bwd: read x and dY twice, write dX):
//     v1 41–75 ms ≈ 0.7–1.3 GB/s;  v2 on a flat grid 21 ms ≈ 2.4 GB/s;  v2 11–19 ms ≈ 2.7–4.8 GB/s
//     (the shader-copy ceiling here is ~4 GB/s). Reductions are ~1/3 of v2's time, the two
//     elementwise passes the rest. [8,128,28,28]: v1 0.7, v2 3.6 GB/s; [8,512,7,7]: v1 1.3, v2 1.7.
//   inference + ReLU (v1 and v2, `relu` option): the elementwise pass stores max(0, ·) ('fwdRelu'
//     kernels), so BN(running stats) → ReLU reads x and writes y once instead of also reading and
//     writing y again in a ReLU pass. Measured on lavapipe (GPU timestamps, best of 2×7 samples, 2
//     shared vCPUs under load), [8,64,56,56] (ResNet layer1, 6.4 MB): BN alone 3.1–4.1 ms; BN then
//     ReLU 5.7–7.5 ms; fused 3.1–4.5 ms, i.e. 1.7–2.3 GB/s → 2.9–4.2 GB/s of useful traffic
//     (x in + y out): ~1.7× faster, the fused pass costs what BN alone costs.
//
// Tensors above maxStorageBufferBindingSize are processed in windows of whole samples (a window binds
// [n0·C·H·W, n1·C·H·W) rounded down to 256 bytes); reductions keep one set of partials per window and
// the finalize merges all of them.

import { grid1d, LINEAR_INDEX, MAX_GROUPS, memo, type KernelSpec } from '../gpu/kernel.js';
import { Tensor, numel, assertF32 } from '../gpu/tensor.js';
import type { Gpu } from '../gpu/device.js';

const WG = 64;

export type BatchNormVersion = 1 | 2;

export interface BatchNormKernelOptions {
  /** Kernel version (default 2). */
  version?: BatchNormVersion;
  /** Binding window size in bytes (default: the adapter's maxStorageBufferBindingSize). For tests. */
  maxWindowBytes?: number;
}

export interface BatchNormTrainOptions extends BatchNormKernelOptions {
  eps?: number;
  /** PyTorch momentum (weight of the batch statistic), default 0.1. ONNX's is 1 − this. */
  momentum?: number;
  /** Update runningMean/runningVar in place (default true). */
  updateStats?: boolean;
}

export interface BatchNormInferenceOptions extends BatchNormKernelOptions {
  /** Fused ReLU: y = max(0, BN(x)) in the same elementwise pass (saves a read and a write of y). */
  relu?: boolean;
}

export interface BatchNormBackwardOptions extends BatchNormKernelOptions {
  needDX?: boolean;
  needDGamma?: boolean;
  needDBeta?: boolean;
}

export interface BatchNormTrainResult {
  y: Tensor;
  /** Batch mean [C] (for the backward). */
  saveMean: Tensor;
  /** 1/sqrt(biased batch var + eps) [C] (for the backward). */
  saveInvStd: Tensor;
}

/** Gradients; null where not requested. */
export interface BatchNormGrads { dX: Tensor | null; dGamma: Tensor | null; dBeta: Tensor | null }

// ---- geometry: N, C, H·W, vector width, sample windows ----------------------------------------

interface Geom { N: number; C: number; HW: number; m: number; vw: 1 | 4 }

function geometry(what: string, x: Tensor, version: BatchNormVersion, params: Record<string, Tensor | null>): Geom {
  assertF32(what, x, ...Object.values(params));
  if (x.shape.length < 2) throw new Error(`${what}: expected x of shape [N, C, H, W] or [N, C], got [${x.shape.join(', ')}]`);
  const N = x.shape[0]!, C = x.shape[1]!, HW = numel(x.shape.slice(2));
  for (const [name, t] of Object.entries(params)) {
    if (t && t.size !== C) throw new Error(`${what}: ${name} must have C = ${C} elements, got [${t.shape.join(', ')}]`);
  }
  return { N, C, HW, m: N * HW, vw: version === 2 && HW % 4 === 0 ? 4 : 1 };
}

/** A binding window of whole samples [n0, n1): binds elements [start, start+count); sample n0 is at start+base. */
interface SampleWindow { n0: number; n1: number; start: number; count: number; base: number }

function sampleWindows(gpu: Gpu, g: Geom, maxWindowBytes?: number): SampleWindow[] {
  const S = g.C * g.HW;
  const maxElems = Math.floor((maxWindowBytes ?? gpu.maxBinding) / 4);
  if (S * g.N <= maxElems) return [{ n0: 0, n1: g.N, start: 0, count: S * g.N, base: 0 }];
  if (S + 63 > maxElems) throw new Error(`batchnorm: one sample (${S} values) exceeds the binding limit; use smaller images`);
  const out: SampleWindow[] = [];
  for (let n0 = 0; n0 < g.N;) {
    // NOTE: binding offsets must be multiples of 256 bytes = 64 floats, so start is rounded down.
    const start = Math.floor((n0 * S) / 64) * 64, base = n0 * S - start;
    const n1 = Math.min(g.N, n0 + Math.floor((maxElems - base) / S));
    out.push({ n0, n1, start, count: n1 * S - start, base });
    n0 = n1;
  }
  return out;
}

function win(t: Tensor, w: SampleWindow) {
  return { buffer: t.buffer, offset: w.start * 4, size: w.count * 4 };
}

/** Chunking of each channel's values per window: P chunks of `chunk` units; Q = Σ P over windows. */
interface Plan { chunk: number; P: number[]; qoff: number[]; Q: number }

function plan(g: Geom, ws: SampleWindow[], version: BatchNormVersion): Plan {
  const mvs = ws.map((w) => ((w.n1 - w.n0) * g.HW) / g.vw);
  const chunk = version === 1
    ? Math.max(...mvs)
    : Math.max(Math.ceil(256 / g.vw), Math.ceil(Math.sqrt(g.m / g.vw)));
  const P = mvs.map((mv) => Math.ceil(mv / chunk));
  const qoff: number[] = [];
  let Q = 0;
  for (const p of P) { qoff.push(Q); Q += p; }
  return { chunk, P, qoff, Q };
}

// ---- kernels -----------------------------------------------------------------------------------

type PartU = { C: 'u32'; hwv: 'u32'; mv: 'u32'; chunk: 'u32'; P: 'u32'; base: 'u32'; Q: 'u32'; qoff: 'u32' };
const partUniforms: PartU = { C: 'u32', hwv: 'u32', mv: 'u32', chunk: 'u32', P: 'u32', base: 'u32', Q: 'u32', qoff: 'u32' };

/**
 * WGSL walking chunk p of channel c: units k in [k0, k1) of the channel's (n, j) index space,
 * k = n·hwv + j, at address base + n·C·hwv + c·hwv + j. BODY runs per unit with address `a`.
 */
function chunkLoop(body: string): string {
  return `
  { var a = a0; var j = j0;
    for (var k = k0; k < k1; k++) {
      ${body}
      a++; j++;
      if (j == u.hwv) { j = 0u; a += skip; }
    } }`;
}

const CHUNK_PROLOGUE = `
  let t = ${LINEAR_INDEX};
  if (t >= u.C * u.P) { return; }
  let c = t / u.P;
  let p = t % u.P;
  let k0 = p * u.chunk;
  let k1 = min(k0 + u.chunk, u.mv);
  let a0 = u.base + (k0 / u.hwv) * u.C * u.hwv + c * u.hwv + k0 % u.hwv;
  let j0 = k0 % u.hwv;
  let skip = (u.C - 1u) * u.hwv;`;

const vecType = (vw: number) => (vw === 4 ? 'vec4<f32>' : 'f32');
const hsum = (vw: number, e: string) => (vw === 4 ? `dot(${e}, vec4<f32>(1.0))` : e);

/** Per chunk: (count, mean, M2, 0) of x over the chunk, two passes. part: [C, Q] vec4. */
const statsPartialKernel = memo((vw: number) => `${vw}`, (vw: number): KernelSpec<PartU> => ({
  name: `batchnorm.stats.v${vw === 4 ? 2 : 1}`, key: `batchnorm.stats.vw${vw}`,
  uniforms: partUniforms,
  bindings: [{ name: 'x', access: 'read', type: vecType(vw) }, { name: 'part', access: 'read_write', type: 'vec4<f32>' }],
  workgroupSize: [WG, 1, 1],
  body: /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  ${CHUNK_PROLOGUE}
  // NOTE: summing x − x₀ (x₀: the chunk's first value) keeps the sum at the scale of the spread, not
  // of |x|, so the chunk mean is accurate to about an ulp of itself even when |mean| ≫ std.
  let x0 = x[a0]${vw === 4 ? '.x' : ''};
  var s = ${vecType(vw)}(0.0);
  ${chunkLoop('s += x[a] - x0;')}
  let cnt = f32((k1 - k0) * ${vw}u);
  let mean = x0 + ${hsum(vw, 's')} / cnt;
  var s2 = ${vecType(vw)}(0.0);
  ${chunkLoop('let d = x[a] - mean; s2 += d * d;')}
  part[c * u.Q + u.qoff + p] = vec4<f32>(cnt, mean, ${hsum(vw, 's2')}, 0.0);
}`,
}));

type StatsU = { C: 'u32'; Q: 'u32'; m: 'u32'; eps: 'f32'; momentum: 'f32'; update: 'u32' };

/**
 * Per channel: merge the chunk statistics, save mean and invStd, update running stats, and write
 * the forward coefficients coef[c] = (0, gamma·invStd, mean, beta).
 */
const statsFinalizeKernel: KernelSpec<StatsU> = {
  name: 'batchnorm.statsFinalize', key: 'batchnorm.statsFinalize',
  uniforms: { C: 'u32', Q: 'u32', m: 'u32', eps: 'f32', momentum: 'f32', update: 'u32' },
  bindings: [
    { name: 'part', access: 'read', type: 'vec4<f32>' }, { name: 'gamma', access: 'read' }, { name: 'beta', access: 'read' },
    { name: 'smean', access: 'read_write' }, { name: 'sinv', access: 'read_write' },
    { name: 'rmean', access: 'read_write' }, { name: 'rvar', access: 'read_write' },
    { name: 'coef', access: 'read_write', type: 'vec4<f32>' },
  ],
  workgroupSize: [WG, 1, 1],
  body: /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let c = ${LINEAR_INDEX};
  if (c >= u.C) { return; }
  let m = f32(u.m);
  let q0 = c * u.Q;
  // mean = Σ nᵢ·meanᵢ / m, summed relative to the first chunk's mean (same NOTE as the chunks).
  let mean0 = part[q0].y;
  var s = 0.0;
  for (var q = 0u; q < u.Q; q++) { let pq = part[q0 + q]; s += pq.x * (pq.y - mean0); }
  let mean = mean0 + s / m;
  // Chan's merge: M2 = Σ M2ᵢ + nᵢ·(meanᵢ − mean)².
  var m2 = 0.0;
  for (var q = 0u; q < u.Q; q++) { let pq = part[q0 + q]; let d = pq.y - mean; m2 += pq.z + pq.x * d * d; }
  let inv = 1.0 / sqrt(m2 / m + u.eps);
  smean[c] = mean;
  sinv[c] = inv;
  if (u.update != 0u) {
    // NOTE: PyTorch momentum, unbiased variance in the running estimate (m ≥ 2 checked on the CPU).
    rmean[c] = (1.0 - u.momentum) * rmean[c] + u.momentum * mean;
    rvar[c] = (1.0 - u.momentum) * rvar[c] + u.momentum * (m2 / (m - 1.0));
  }
  coef[c] = vec4<f32>(0.0, gamma[c] * inv, mean, beta[c]);
}`,
};

/** Inference coefficients: k = gamma/sqrt(var + eps); coef[c] = (k, k, mean, beta). */
const inferCoefKernel: KernelSpec<{ C: 'u32'; eps: 'f32' }> = {
  name: 'batchnorm.inferCoef', key: 'batchnorm.inferCoef',
  uniforms: { C: 'u32', eps: 'f32' },
  bindings: [
    { name: 'gamma', access: 'read' }, { name: 'beta', access: 'read' }, { name: 'rmean', access: 'read' }, { name: 'rvar', access: 'read' },
    { name: 'coef', access: 'read_write', type: 'vec4<f32>' },
  ],
  workgroupSize: [WG, 1, 1],
  body: /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let c = ${LINEAR_INDEX};
  if (c >= u.C) { return; }
  let k = gamma[c] / sqrt(rvar[c] + u.eps);
  coef[c] = vec4<f32>(k, k, rmean[c], beta[c]);
}`,
};

/** Per chunk: (Σ dY, Σ dY·(x − mean_c)). part: [C, Q] vec2. */
const gradPartialKernel = memo((vw: number) => `${vw}`, (vw: number): KernelSpec<PartU> => ({
  name: `batchnorm.gradSums.v${vw === 4 ? 2 : 1}`, key: `batchnorm.gradSums.vw${vw}`,
  uniforms: partUniforms,
  bindings: [
    { name: 'x', access: 'read', type: vecType(vw) }, { name: 'dy', access: 'read', type: vecType(vw) },
    { name: 'mean', access: 'read' }, { name: 'part', access: 'read_write', type: 'vec2<f32>' },
  ],
  workgroupSize: [WG, 1, 1],
  body: /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  ${CHUNK_PROLOGUE}
  let mu = mean[c];
  var s1 = ${vecType(vw)}(0.0);
  var s2 = ${vecType(vw)}(0.0);
  ${chunkLoop('let g = dy[a]; s1 += g; s2 += g * (x[a] - mu);')}
  part[c * u.Q + u.qoff + p] = vec2<f32>(${hsum(vw, 's1')}, ${hsum(vw, 's2')});
}`,
}));

type GradFinU = { C: 'u32'; Q: 'u32'; m: 'u32'; eps: 'f32' };

/**
 * Per channel: S1 = Σ dY, S2 = Σ dY·(x − mean) from the partials; dBeta = S1, dGamma = S2·invStd.
 * Training mode (s = saveInvStd) also writes the dX coefficients, with k = gamma·invStd:
 *   dX = k·dY − k·invStd²·S2/m·(x − mean) − k·S1/m  →  coef = (k, −k·invStd²·S2/m, mean, −k·S1/m).
 * Inference mode (s = runningVar, invStd = 1/sqrt(s + eps)) writes only dGamma, dBeta.
 */
const gradFinalizeKernel = memo((train: boolean) => `${train}`, (train: boolean): KernelSpec<GradFinU> => ({
  name: `batchnorm.gradFinalize.${train ? 'train' : 'infer'}`, key: `batchnorm.gradFinalize.${train}`,
  uniforms: { C: 'u32', Q: 'u32', m: 'u32', eps: 'f32' },
  bindings: [
    { name: 'part', access: 'read', type: 'vec2<f32>' }, { name: 'gamma', access: 'read' }, { name: 'mean', access: 'read' },
    { name: 's', access: 'read' }, { name: 'dgamma', access: 'read_write' }, { name: 'dbeta', access: 'read_write' },
    { name: 'coef', access: 'read_write', type: 'vec4<f32>' },
  ],
  workgroupSize: [WG, 1, 1],
  body: /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let c = ${LINEAR_INDEX};
  if (c >= u.C) { return; }
  var s1 = 0.0;
  var s2 = 0.0;
  for (var q = 0u; q < u.Q; q++) { let pq = part[c * u.Q + q]; s1 += pq.x; s2 += pq.y; }
  let inv = ${train ? 's[c]' : '1.0 / sqrt(s[c] + u.eps)'};
  dbeta[c] = s1;
  dgamma[c] = s2 * inv;
  ${train ? `let k = gamma[c] * inv;
  let m = f32(u.m);
  coef[c] = vec4<f32>(k, -k * inv * inv * s2 / m, mean[c], -k * s1 / m);` : ''}
}`,
}));

/**
 * Which terms of out = A·p + B·(q − M) + D an elementwise pass uses. 'fwdRelu' is the inference
 * forward with a fused ReLU, max(0, B·(x − M) + D): one pass instead of two (`zero` is 0 of the
 * pass's vector type; max is the same expression as the elementwise ReLU's, so both agree bit for bit).
 */
type AffineMode = 'fwd' | 'fwdRelu' | 'bwdTrain' | 'bwdInfer';
const AFFINE: Record<AffineMode, { names: string[]; expr: string }> = {
  fwd: { names: ['x'], expr: 'cf.y * (x[i] - cf.z) + cf.w' },
  fwdRelu: { names: ['x'], expr: 'max(cf.y * (x[i] - cf.z) + cf.w, zero)' },
  bwdTrain: { names: ['dy', 'x'], expr: 'cf.x * dy[i] + cf.y * (x[i] - cf.z) + cf.w' },
  bwdInfer: { names: ['dy'], expr: 'cf.x * dy[i]' },
};

const zeroDecl = (mode: AffineMode, vw: number) => (mode === 'fwdRelu' ? `\n  let zero = ${vecType(vw)}(0.0);` : '');

type AffU = { n: 'u32'; base: 'u32'; C: 'u32'; hwv: 'u32' };
/** Workgroup width of the plane-grid elementwise pass. */
const PLANE_WG = 64;
/** Planes of fewer units use the flat grid (a 7×7 plane, 49 units, still gains from the plane grid). */
const PLANE_MIN = 32;

/**
 * Flat grid: one invocation per unit t of the window, channel (t / hwv) % C.
 * Plane grid (v2, planes of ≥ PLANE_MIN units): grid [⌈hwv/64⌉, C, N]; the channel is the workgroup's
 * y, so the coefficient load is the same for the whole workgroup and no lane divides.
 * NOTE: integer division has no SIMD instruction on the CPU: lavapipe runs it lane by lane, and the
 * two per unit (/ and %) cost as much as the loads. The plane grid halved this pass on lavapipe.
 */
const affineKernel = memo((mode: AffineMode, vw: number, planes: boolean) => `${mode}.${vw}.${planes}`, (mode: AffineMode, vw: number, planes: boolean): KernelSpec<AffU> => ({
  name: `batchnorm.${mode}.v${vw === 4 || planes ? 2 : 1}`, key: `batchnorm.affine.${mode}.vw${vw}.${planes ? 'planes' : 'flat'}`,
  uniforms: { n: 'u32', base: 'u32', C: 'u32', hwv: 'u32' },
  bindings: [
    ...AFFINE[mode].names.map((name) => ({ name, access: 'read' as const, type: vecType(vw) })),
    { name: 'coef', access: 'read', type: 'vec4<f32>' },
    { name: 'out', access: 'read_write', type: vecType(vw) },
  ],
  workgroupSize: [planes ? PLANE_WG : 256, 1, 1],
  body: planes ? /* wgsl */ `
@compute @workgroup_size(${PLANE_WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let j = gid.x;
  if (j >= u.hwv) { return; }
  let cf = coef[wid.y];
  let i = u.base + (wid.z * u.C + wid.y) * u.hwv + j;${zeroDecl(mode, vw)}
  out[i] = ${AFFINE[mode].expr};
}` : /* wgsl */ `
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = ${LINEAR_INDEX};
  if (t >= u.n) { return; }
  // t counts units from the window's first sample, so its channel is (t / hwv) % C.
  let cf = coef[(t / u.hwv) % u.C];
  let i = u.base + t;${zeroDecl(mode, vw)}
  out[i] = ${AFFINE[mode].expr};
}`,
}));

// ---- launchers -----------------------------------------------------------------------------------

function runAffine(mode: AffineMode, g: Geom, ws: SampleWindow[], inputs: Tensor[], coef: Tensor, out: Tensor, version: BatchNormVersion) {
  const gpu = out.gpu;
  const hwv = g.HW / g.vw;
  for (const w of ws) {
    const n = (w.n1 - w.n0) * g.C * hwv;
    const planes = version === 2 && hwv >= PLANE_MIN && g.C <= MAX_GROUPS && w.n1 - w.n0 <= MAX_GROUPS;
    const groups: [number, number, number] = planes ? [Math.ceil(hwv / PLANE_WG), g.C, w.n1 - w.n0] : grid1d(n, 256);
    gpu.run(affineKernel(mode, g.vw, planes), [...inputs.map((t) => win(t, w)), coef.buffer, win(out, w)],
      { n, base: w.base / g.vw, C: g.C, hwv }, groups, `batchnorm.${mode}`);
  }
}

function partUniformsFor(g: Geom, w: SampleWindow, pl: Plan, wi: number) {
  return {
    C: g.C, hwv: g.HW / g.vw, mv: ((w.n1 - w.n0) * g.HW) / g.vw, chunk: pl.chunk,
    P: pl.P[wi]!, base: w.base / g.vw, Q: pl.Q, qoff: pl.qoff[wi]!,
  };
}

/**
 * y = gamma·(x − mean)/sqrt(var + eps) + beta (frozen statistics); with opts.relu, y = max(0, that).
 * 2 dispatches: coefficients, map.
 */
export function batchNorm2dInference(
  x: Tensor, gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVar: Tensor, eps = 1e-5,
  opts: BatchNormInferenceOptions = {},
): Tensor {
  const version = opts.version ?? 2;
  const g = geometry('batchNorm2dInference', x, version, { gamma, beta, runningMean, runningVar });
  const gpu = x.gpu;
  const coef = Tensor.empty(gpu, [g.C, 4]);
  gpu.run(inferCoefKernel, [gamma.buffer, beta.buffer, runningMean.buffer, runningVar.buffer, coef.buffer], { C: g.C, eps }, grid1d(g.C, WG), 'batchnorm');
  const y = Tensor.empty(gpu, x.shape);
  runAffine(opts.relu ? 'fwdRelu' : 'fwd', g, sampleWindows(gpu, g, opts.maxWindowBytes), [x], coef, y, version);
  coef.dispose();
  return y;
}

/**
 * Training forward with batch statistics. Updates runningMean/runningVar IN PLACE when updateStats
 * (they may be null otherwise). 3 dispatches: chunk statistics, finalize, normalise.
 */
export function batchNorm2dTrain(
  x: Tensor, gamma: Tensor, beta: Tensor, runningMean: Tensor | null, runningVar: Tensor | null,
  opts: BatchNormTrainOptions = {},
): BatchNormTrainResult {
  const { eps = 1e-5, momentum = 0.1, updateStats = true } = opts;
  const version = opts.version ?? 2;
  const g = geometry('batchNorm2dTrain', x, version, { gamma, beta, runningMean, runningVar });
  if (g.m < 2) {
    // NOTE: with one value per channel the batch variance is 0/0 unbiased (PyTorch raises too).
    throw new Error(`batchNorm2dTrain: x [${x.shape.join(', ')}] has N·H·W = ${g.m} value per channel; training-mode batch norm needs at least 2 (use a larger batch, or inference mode with frozen statistics)`);
  }
  if (updateStats && (!runningMean || !runningVar)) throw new Error('batchNorm2dTrain: updateStats needs runningMean and runningVar');
  if (runningMean && runningVar && runningMean.buffer === runningVar.buffer) throw new Error('batchNorm2dTrain: runningMean and runningVar must be distinct buffers');
  const gpu = x.gpu;
  const ws = sampleWindows(gpu, g, opts.maxWindowBytes);
  const pl = plan(g, ws, version);
  const part = Tensor.empty(gpu, [g.C * pl.Q, 4]);
  ws.forEach((w, wi) => {
    const uni = partUniformsFor(g, w, pl, wi);
    gpu.run(statsPartialKernel(g.vw), [win(x, w), part.buffer], uni, grid1d(g.C * uni.P, WG), 'batchnorm.stats');
  });
  const saveMean = Tensor.empty(gpu, [g.C]), saveInvStd = Tensor.empty(gpu, [g.C]), coef = Tensor.empty(gpu, [g.C, 4]);
  // Running stats are bound even when not updated (the kernel only writes them when update = 1).
  const rm = runningMean ?? Tensor.empty(gpu, [g.C]), rv = runningVar ?? Tensor.empty(gpu, [g.C]);
  gpu.run(statsFinalizeKernel,
    [part.buffer, gamma.buffer, beta.buffer, saveMean.buffer, saveInvStd.buffer, rm.buffer, rv.buffer, coef.buffer],
    { C: g.C, Q: pl.Q, m: g.m, eps, momentum, update: updateStats ? 1 : 0 }, grid1d(g.C, WG), 'batchnorm.statsFinalize');
  if (!runningMean) rm.dispose();
  if (!runningVar) rv.dispose();
  part.dispose();
  const y = Tensor.empty(gpu, x.shape);
  runAffine('fwd', g, ws, [x], coef, y, version);
  coef.dispose();
  return { y, saveMean, saveInvStd };
}

/** Σ dY and Σ dY·(x − mean) per channel (partials + finalize); returns dGamma, dBeta and coef. */
function gradSums(
  train: boolean, g: Geom, ws: SampleWindow[], version: BatchNormVersion,
  x: Tensor, dY: Tensor, gamma: Tensor, mean: Tensor, s: Tensor, eps: number,
): { dGamma: Tensor; dBeta: Tensor; coef: Tensor } {
  const gpu = x.gpu;
  const pl = plan(g, ws, version);
  const part = Tensor.empty(gpu, [g.C * pl.Q, 2]);
  ws.forEach((w, wi) => {
    const uni = partUniformsFor(g, w, pl, wi);
    gpu.run(gradPartialKernel(g.vw), [win(x, w), win(dY, w), mean.buffer, part.buffer], uni, grid1d(g.C * uni.P, WG), 'batchnorm.gradSums');
  });
  const dGamma = Tensor.empty(gpu, [g.C]), dBeta = Tensor.empty(gpu, [g.C]), coef = Tensor.empty(gpu, [g.C, 4]);
  gpu.run(gradFinalizeKernel(train), [part.buffer, gamma.buffer, mean.buffer, s.buffer, dGamma.buffer, dBeta.buffer, coef.buffer],
    { C: g.C, Q: pl.Q, m: g.m, eps }, grid1d(g.C, WG), 'batchnorm.gradFinalize');
  part.dispose();
  return { dGamma, dBeta, coef };
}

function checkSameShape(what: string, x: Tensor, dY: Tensor) {
  if (x.size !== dY.size || x.shape.length !== dY.shape.length) throw new Error(`${what}: dY [${dY.shape.join(', ')}] does not match x [${x.shape.join(', ')}]`);
}

/**
 * Training-mode backward. Uses the statistics the forward saved (saveMean, saveInvStd); x is the
 * forward's input. dX needs the two channel sums, so they are computed whenever anything is asked.
 */
export function batchNorm2dBackward(
  x: Tensor, dY: Tensor, gamma: Tensor, saveMean: Tensor, saveInvStd: Tensor,
  opts: BatchNormBackwardOptions = {},
): BatchNormGrads {
  const { needDX = true, needDGamma = true, needDBeta = true } = opts;
  const version = opts.version ?? 2;
  const g = geometry('batchNorm2dBackward', x, version, { gamma, saveMean, saveInvStd });
  checkSameShape('batchNorm2dBackward', x, dY);
  if (!needDX && !needDGamma && !needDBeta) return { dX: null, dGamma: null, dBeta: null };
  const ws = sampleWindows(x.gpu, g, opts.maxWindowBytes);
  const { dGamma, dBeta, coef } = gradSums(true, g, ws, version, x, dY, gamma, saveMean, saveInvStd, 0);
  let dX: Tensor | null = null;
  if (needDX) {
    dX = Tensor.empty(x.gpu, x.shape);
    runAffine('bwdTrain', g, ws, [dY, x], coef, dX, version);
  }
  coef.dispose();
  if (!needDGamma) dGamma.dispose();
  if (!needDBeta) dBeta.dispose();
  return { dX, dGamma: needDGamma ? dGamma : null, dBeta: needDBeta ? dBeta : null };
}

/**
 * Inference-mode backward (frozen running statistics, e.g. fine-tuning with BN in eval mode):
 * dX = dY·gamma/sqrt(var + eps) needs no reduction; dGamma, dBeta need the channel sums (x is only
 * read for dGamma).
 */
export function batchNorm2dInferenceBackward(
  x: Tensor, dY: Tensor, gamma: Tensor, runningMean: Tensor, runningVar: Tensor, eps = 1e-5,
  opts: BatchNormBackwardOptions = {},
): BatchNormGrads {
  const { needDX = true, needDGamma = true, needDBeta = true } = opts;
  const version = opts.version ?? 2;
  const g = geometry('batchNorm2dInferenceBackward', x, version, { gamma, runningMean, runningVar });
  checkSameShape('batchNorm2dInferenceBackward', x, dY);
  const gpu = x.gpu;
  const ws = sampleWindows(gpu, g, opts.maxWindowBytes);
  let dX: Tensor | null = null, dGamma: Tensor | null = null, dBeta: Tensor | null = null;
  if (needDX) {
    const coef = Tensor.empty(gpu, [g.C, 4]);
    // beta is not used by the dX map; gamma fills its binding.
    gpu.run(inferCoefKernel, [gamma.buffer, gamma.buffer, runningMean.buffer, runningVar.buffer, coef.buffer], { C: g.C, eps }, grid1d(g.C, WG), 'batchnorm');
    dX = Tensor.empty(gpu, x.shape);
    runAffine('bwdInfer', g, ws, [dY], coef, dX, version);
    coef.dispose();
  }
  if (needDGamma || needDBeta) {
    const r = gradSums(false, g, ws, version, x, dY, gamma, runningMean, runningVar, eps);
    r.coef.dispose();
    if (needDGamma) dGamma = r.dGamma; else r.dGamma.dispose();
    if (needDBeta) dBeta = r.dBeta; else r.dBeta.dispose();
  }
  return { dX, dGamma, dBeta };
}
