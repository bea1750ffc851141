// 2-D convolution, NCHW, f32 or f16 storage: forward, input gradient, weight gradient, bias gradient.
//
//   x  [N, C, H, W]   w [K, C/G, R, S]   b [K]   y [N, K, P, Q]      (G = groups, Cg = C/G, Kg = K/G)
//   P = ⌊(H + padTop + padBottom − dh·(R−1) − 1) / sh⌋ + 1,  Q likewise with W, padLeft/Right, dw, S, sw.
//
//   forward      y[n,k,p,q]  = b[k] + Σ_{c<Cg, r, s} w[k,c,r,s] · x[n, g·Cg+c, p·sh + r·dh − pt, q·sw + s·dw − pl]
//                                                                (g = ⌊k/Kg⌋; x outside the image reads 0)
//                (activation 'relu': y = max(0, that), applied in the store: the fused conv+ReLU)
//   input grad   dX[n,ci,h,v] = Σ_{k in group, r, s : h = p·sh + r·dh − pt, v = q·sw + s·dw − pl}  dY[n,k,p,q] · w[k,c,r,s]
//                (a transposed convolution: each x pixel gathers from the output pixels whose window covered it)
//   weight grad  dW[k,c,r,s] = Σ_{n,p,q} dY[n,k,p,q] · x[n, g·Cg+c, p·sh + r·dh − pt, q·sw + s·dw − pl]
//   bias grad    db[k]       = Σ_{n,p,q} dY[n,k,p,q]
//
// The backward saves nothing from the forward but x (for dW) and w (for dX): `conv2dBackward` takes
// both plus dY, and launches only the kernels asked for (a frozen layer launches no dW kernel, the
// first layer no dX kernel).
//
// GEMM view (implicit GEMM, no im2col buffer): with A[m, j] = x at the window tap j = (c, r, s) of
// output pixel m = (n, p, q), forward is  Y[m, k] = Σ_j A[m, j] · Wᵀ[j, k]   (M = N·P·Q, K, J = Cg·R·S);
// dX is the same with the roles of x/y swapped and the taps flipped; dW is  dW[k, j] = Σ_m dY[m, k] · A[m, j],
// a GEMM whose reduction (M, ~10⁵) is long and whose output (K·J, ~10⁴) is small.
//
// Versions (GFLOP/s on the software adapter: lavapipe, 2 vCPUs shared with other jobs, so approximate;
// VGG-like 3×3 conv 64→64, 56×56, batch 4, pad 1, 0.92 GFLOP per pass; bench/conv-gflops.ts):
//   v1  naive: one invocation per output element (a y, dX or dW element) looping over its whole
//       reduction, two scalar loads per multiply-add. dX v1 also tests every tap for divisibility by
//       the stride.                       forward ~0.7, backward-input ~0.2, backward-weight ~1.0
//   v2  register tiles + loads shared across 8-lane groups. On lavapipe every invocation is one SIMD
//       lane and a load whose address differs per lane is a per-lane scalar loop, so loads are the
//       cost, not multiply-adds (software-adapter.md). A lane group (8 lanes of a subgroup) shares a
//       tile of TM pixels: per block of 8 reduction channels, lane i loads channel i of each pixel
//       (TM scalar loads) and the others take it with subgroupShuffle; each lane owns TK output
//       channels whose weights are vec4 loads from a re-laid-out copy [G, R, S, rows8, cols4].
//       Per 8 reduction steps: TM scalar + 8·TK/4 vec4 loads for 8·TM·TK multiply-adds (TM×TK = 8×4:
//       32 accumulators; 8×8 spills registers and is slower, 4×4 and 16×4 slower too).
//       dX runs the same kernel once per stride phase (pixels h ≡ a mod sh, v ≡ b mod sw), where the
//       taps that can reach a pixel are the same for the whole dispatch: no per-tap divisibility test
//       and no wasted taps. dW shares dY across the lane group (TA = 16 output channels) while each
//       lane loads TB = 2 input channels of x at one tap, and splits its long N·P·Q reduction over
//       workgroups (split-K) into partial sums that a second pass adds.
//                                         forward ~10–14, backward-input ~10–12, backward-weight ~10–14
//       (≈ 15–20× v1; a lower bound on an idle machine: runs here were sharing the 2 cores)
//       Without subgroups each lane loads all 8 channels itself: ~2.5, ~2.6, ~1.6.
//       subgroupBroadcast with constant lanes measured no faster than subgroupShuffle here.
//       Depthwise and other tiny groups keep v1 by default: a v2 tile would be mostly padding
//       (pickVersion; depthwise 64 channels 56×56: v1 forward 48 ms vs v2 800 ms).
//       Small images (≤ 4096 output pixels) run 2 lane groups per workgroup instead of 8 (`lg`,
//       defaultTile): a workgroup covers 16 pixels instead of 64, so e.g. 4·3×3 = 36 pixels fill 3
//       workgroups to 75% instead of one to 56%. dX / forward ms, 3×3 pad 1, batch 4: 512 channels
//       3×3 px 52 → 40 / 56 → 46, 7×7 px 112 → 78 / 94 → 84; 256 ch 7×7 28 → 21; 128 ch 14×14 19 → 15.
//   v3  explicit im2col + matmul (forward and dX; f32, groups = 1; see its section): the windows are
//       copied into a [pixels, C·R·S] matrix and one GEMM (matmul.ts, autotuned) does the arithmetic.
//       More memory traffic, but no empty tile slots and no per-tap masks in the GEMM: it wins where
//       images are tiny. ms v2 → v3, 3×3 pad 1, batch 4 (lavapipe, under load): 512 ch at 3×3 px
//       forward 75 → 22, dX 73 → 40; at 7×7 px 130 → 85, 148 → 117; 256 ch at 7×7 dX 34 → 39; from
//       14×14 up it is 2–4× slower. Only a tuning candidate (≤ 1024 pixels), never the default.
//   autotuned  the variants above are candidates per shape class (convCandidates, end of file): the
//       autotuner (gpu/tune.ts) measures them on the adapter and the launchers run the winner.
//       On lavapipe (`wgtrain bench --quick`, 62 classes) it kept the default on about half of them
//       and switched the rest for 1.06–2.0× on its own measurement (median 1.16×): v1 on 1×1 and
//       2×2 images, 4×4 / 16×4 tiles on small ones, dW 8×2.
//   v1/v2 + ReLU  the forward kernels of both versions take a compile-time `relu` flag (kernel key
//       suffix `.relu`, same kernel names): the epilogue stores max(0, acc + b), so conv → ReLU is
//       one dispatch and y is written once instead of written, read and written again. Measured
//       (GPU timestamps, best of 2×7 samples, 2 shared vCPUs under load, so ±10%), VGG-like 3×3
//       64→64 56×56 batch 4 v2: conv alone 71–72 ms, the separate ReLU pass 1.3–2.7 ms, conv + ReLU
//       separate 73.6–86 ms, fused 70–76 ms: the fused kernel costs what the conv alone costs (the
//       clamp is free), so fusion saves the ReLU pass, ~2–4% of the pair here where the conv is
//       compute-bound; more where a conv is cheap next to its output (1×1, few input channels).
//   v1/v2 f16  the same kernels with f16 storage (kernel key suffix `.f16`; see Precision below):
//       f16 loads and stores, f32 arithmetic. Measured (bench/conv-gflops.ts --precision f32|f16,
//       the two interleaved 3 times, median of 9 runs each, 2 shared vCPUs so ±15%) on the VGG-like
//       layer above, GFLOP/s f32 → f16:
//         v2 forward 11.1–12.9 → 12.7–13.8, backward-input 10.2–14.5 → 13.7–14.0,
//            backward-weight 10.2–13.5 → 13.8–15.0    (median ms f32 71–84 / 64–91 / 68–91, f16 67–73 / 66–68 / 62–67)
//         v1 forward 1.16 → 1.01, backward-input 0.35 → 0.36, backward-weight 1.64 → 1.55
//       On lavapipe a load costs a per-lane scalar access whatever its width, so half the bytes buys
//       little: v2 ~5–10% by median (the packed weights are vec4<f16>, 8 bytes instead of 16), v1
//       nothing, and the f16↔f32 conversions are about free. What f16 buys everywhere is memory (half
//       the activations, weights and gradients), and on GPUs where a convolution is bandwidth-bound,
//       bandwidth (not measured: no GPU was lent for this).
//
// Precision: f32 by default. With f16 tensors (x, w, b and dY all f16: Tensor dtype, kernels/cast.ts)
// every kernel reads and writes f16 storage (`enable f16`; array<f16>, and vec4<f16> for the packed
// weights), converts each load to f32, multiplies, accumulates and shares (subgroupShuffle) in f32,
// and rounds once, at the store: the outputs (y, dX, dW, db) are f16, each within half an f16 ulp
// (2^−11 relative) of the f32 result computed from the same f16 inputs. Temporaries that are summed
// again stay f32: dW's split-K partial sums, and dW / db accumulated across batch chunks (cast to f16
// at the end). Needs the adapter's `shader-f16` feature.
//
// Tensors larger than the adapter's storage-binding limit are processed in batch chunks: each
// chunk binds a window of x / y (a window starts at a 256-byte-aligned offset, and the kernels take
// the remaining element offset as a uniform).

import { grid1d, LINEAR_INDEX, memo, MAX_GROUPS, type KernelSpec } from '../gpu/kernel.js';
import { Tensor, dtypeBytes, expectShape, type DType, type Shape } from '../gpu/tensor.js';
import type { Binding, Gpu } from '../gpu/device.js';
import { cast } from './cast.js';
import { matmul } from './matmul.js';
import { transpose } from './shape.js';
import { isSoftwareAdapter, type TuneSpec } from '../gpu/tune.js';
import { Rng } from '../util/rng.js';

// ---- options and geometry ----------------------------------------------------------------------

/** A number for both spatial axes, or [h, w]. */
export type Pair = number | readonly [number, number];
/** One number for all sides, [h, w] (top = bottom = h, left = right = w), or [top, left, bottom, right] (ONNX order). */
export type Padding = number | readonly [number, number] | readonly [number, number, number, number];

export interface Conv2dOptions {
  stride?: Pair;
  padding?: Padding;
  dilation?: Pair;
  groups?: number;
  /**
   * Kernel version: 1 naive, 2 tiled, 3 explicit im2col + matmul (forward and dX; f32, groups = 1;
   * the weight gradient runs v2 for it). Default: 2, unless the channel tiles would be mostly padding
   * (depthwise and other tiny groups, see `pickVersion`), where the naive kernel is faster; the
   * autotuner may pick any of them per shape class.
   */
  version?: 1 | 2 | 3;
  /** Testing hook: treat the storage-binding limit as this many bytes (forces batch chunking). */
  bindingLimit?: number;
  /** v2's load sharing (testing/benchmarks): default the fastest the adapter supports; 'none' forces the fallback. */
  share?: Share;
  /**
   * Fused activation in the forward's epilogue: 'relu' stores y = max(0, conv + b) instead of conv + b,
   * saving the separate ReLU pass (a read and a write of y). Forward only: the backward launchers
   * ignore it, so a caller first masks dY with [y > 0] (autograd/ops.ts `conv2d` does).
   */
  activation?: ConvActivation;
}

/** The activations the forward can apply in its epilogue. */
export type ConvActivation = 'relu';

/** Everything a convolution's kernels need to know about its shapes. */
export interface ConvGeometry {
  N: number; C: number; H: number; W: number;
  K: number; R: number; S: number; P: number; Q: number;
  G: number; Cg: number; Kg: number;
  sh: number; sw: number; dh: number; dw: number;
  pt: number; pl: number; pb: number; pr: number;
}

function pair(v: Pair | undefined, dflt: number, what: string): [number, number] {
  const [a, b] = v === undefined ? [dflt, dflt] : typeof v === 'number' ? [v, v] : v;
  if (!Number.isInteger(a) || !Number.isInteger(b) || a < 0 || b < 0) throw new Error(`conv2d: bad ${what} ${String(v)}`);
  return [a, b];
}

function pads(p: Padding | undefined): [number, number, number, number] {
  if (p === undefined || typeof p === 'number') { const v = p ?? 0; return [v, v, v, v]; }
  // NOTE: the type allows only 2 or 4 entries, but options may come from an ONNX file at run time.
  if (p.length !== 2 && p.length !== 4) throw new Error(`conv2d: padding must be a number, [h, w] or [top, left, bottom, right], got [${String(p)}]`);
  const t = p.length === 2 ? [p[0], p[1], p[0], p[1]] as const : p;
  if (t.some((v) => !Number.isInteger(v) || v < 0)) throw new Error(`conv2d: bad padding [${p.join(', ')}]`);
  return [t[0], t[1], t[2], t[3]];
}

/** Resolves options against x [N,C,H,W] and w [K,C/G,R,S]; throws on inconsistent shapes. */
export function convGeometry(xShape: Shape, wShape: Shape, opts: Conv2dOptions = {}): ConvGeometry {
  if (xShape.length !== 4 || wShape.length !== 4) throw new Error(`conv2d: x [${xShape.join(', ')}] and w [${wShape.join(', ')}] must be 4-D (NCHW, KCRS)`);
  const [N, C, H, W] = xShape as [number, number, number, number];
  const [K, Cw, R, S] = wShape as [number, number, number, number];
  const G = opts.groups ?? 1;
  if (!Number.isInteger(G) || G < 1 || C % G !== 0 || K % G !== 0 || Cw !== C / G) {
    throw new Error(`conv2d: groups=${G} does not fit x [${xShape.join(', ')}] and w [${wShape.join(', ')}] (need C and K divisible by groups and w[1] = C/groups)`);
  }
  const [sh, sw] = pair(opts.stride, 1, 'stride');
  const [dh, dw] = pair(opts.dilation, 1, 'dilation');
  if (sh < 1 || sw < 1 || dh < 1 || dw < 1) throw new Error('conv2d: stride and dilation must be ≥ 1');
  const [pt, pl, pb, pr] = pads(opts.padding);
  const P = Math.floor((H + pt + pb - dh * (R - 1) - 1) / sh) + 1;
  const Q = Math.floor((W + pl + pr - dw * (S - 1) - 1) / sw) + 1;
  if (P < 1 || Q < 1 || R < 1 || S < 1) throw new Error(`conv2d: a ${R}×${S} window (dilation ${dh}×${dw}) does not fit the padded ${H}×${W} input`);
  return { N, C, H, W, K, R, S, P, Q, G, Cg: C / G, Kg: K / G, sh, sw, dh, dw, pt, pl, pb, pr };
}

/** Multiply-adds ×2 of one pass (forward, dX and dW all cost the same): 2·N·K·P·Q·Cg·R·S. */
export function convFlops(g: ConvGeometry): number {
  return 2 * g.N * g.K * g.P * g.Q * g.Cg * g.R * g.S;
}

// ---- uniforms, batch chunks ------------------------------------------------------------------

// One uniform layout for every conv kernel: the geometry, the element offsets of the batched
// tensors inside their bound windows (xo: x or dX, yo: y or dY), the number of work items, and
// kernel-specific extras.
const CONV_U = {
  N: 'u32', C: 'u32', H: 'u32', W: 'u32', K: 'u32', R: 'u32', S: 'u32', P: 'u32', Q: 'u32',
  Cg: 'u32', Kg: 'u32', sh: 'u32', sw: 'u32', dh: 'u32', dw: 'u32', pt: 'u32', pl: 'u32',
  xo: 'u32', yo: 'u32', total: 'u32', e0: 'u32', e1: 'u32', e2: 'u32', e3: 'u32', e4: 'u32', e5: 'u32', e6: 'u32',
} as const;
type ConvU = typeof CONV_U;
type ConvUV = Record<keyof ConvU, number>;

function uniformsOf(g: ConvGeometry, n: number, extra: Partial<ConvUV> = {}): ConvUV {
  return {
    N: n, C: g.C, H: g.H, W: g.W, K: g.K, R: g.R, S: g.S, P: g.P, Q: g.Q, Cg: g.Cg, Kg: g.Kg,
    sh: g.sh, sw: g.sw, dh: g.dh, dw: g.dw, pt: g.pt, pl: g.pl,
    xo: 0, yo: 0, total: 0, e0: 0, e1: 0, e2: 0, e3: 0, e4: 0, e5: 0, e6: 0, ...extra,
  };
}

interface Chunk { n0: number; n: number }

/**
 * Splits the batch so that every batched tensor's window (per-image sizes `perImage`, in elements of
 * `dtype`) fits the binding limit. One chunk covering the batch when everything fits.
 * NOTE: a window is at most align − 1 elements of lead-in (windowOf) plus the chunk, rounded up to
 * 4 bytes: with the chunk limited to ⌊limit / eb⌋ − align elements that stays within the limit.
 */
function batchChunks(gpu: Gpu, opts: Conv2dOptions, N: number, perImage: readonly number[], dtype: DType): Chunk[] {
  const limit = Math.min(gpu.maxBinding, opts.bindingLimit ?? Infinity);
  const eb = dtypeBytes(dtype), align = alignElems(gpu, dtype);
  let per = N;
  for (const e of perImage) {
    if (N * e * eb <= limit) continue;
    const fit = Math.floor((Math.floor(limit / eb) - align) / e);
    if (fit < 1) throw new Error(`conv2d: one image of ${e} elements exceeds the storage-binding limit (${limit} bytes)`);
    per = Math.min(per, fit);
  }
  const out: Chunk[] = [];
  for (let n0 = 0; n0 < N; n0 += per) out.push({ n0, n: Math.min(per, N - n0) });
  return out;
}

/** The binding-offset alignment (256 bytes) in elements of `dtype`: 64 f32s or 128 halves. */
function alignElems(gpu: Gpu, dtype: DType): number {
  return Math.max(1, Number(gpu.limits.minStorageBufferOffsetAlignment) / dtypeBytes(dtype));
}

/**
 * Window of `count` elements from `start`: the binding starts at an aligned offset, `off` (elements)
 * is the rest. NOTE: for f16 the binding size is rounded up to 4 bytes (storage bindings must be);
 * that never passes the buffer's end, which is rounded up to 4 bytes from an aligned start too.
 */
function windowOf(t: Tensor, start: number, count: number): { bind: Binding; off: number } {
  const eb = dtypeBytes(t.dtype), align = alignElems(t.gpu, t.dtype);
  const a = Math.floor(start / align) * align;
  const bytes = Math.ceil(((start + count - a) * eb) / 4) * 4;
  return { bind: { buffer: t.buffer, offset: a * eb, size: Math.max(4, bytes) }, off: start - a };
}

// ---- storage precision -----------------------------------------------------------------------
//
// The kernels are written once, in f32 arithmetic; these put the storage type at the edges: the
// binding's element type, a conversion on every load and one rounding at every store.

/** WGSL element type of a binding of `dtype` storage: scalar, or vec4 (the packed weights). */
const storage = (dtype: DType, vec = false) => (vec ? `vec4<${dtype}>` : dtype);
/** A loaded scalar (or vec4) as an f32 value for arithmetic: a conversion only for f16 storage. */
const ld = (dtype: DType, e: string, vec = false) => (dtype === 'f16' ? `${vec ? 'vec4f' : 'f32'}(${e})` : e);
/** An f32 value as stored: rounded to f16 for f16 storage. */
const st = (dtype: DType, e: string) => (dtype === 'f16' ? `f16(${e})` : e);
/** The WGSL extensions a kernel needs. */
const enablesOf = (dtype: DType, subgroups = false) => [...(dtype === 'f16' ? ['f16'] : []), ...(subgroups ? ['subgroups'] : [])];
/** Kernel key suffix of the storage type ('' for f32: the f32 keys are unchanged). */
const keyOf = (dtype: DType) => (dtype === 'f16' ? '.f16' : '');

/**
 * The storage type of one launch: all tensors the same (f32, or f16 with the adapter's shader-f16
 * feature), else a one-line error naming the odd ones.
 */
function storageOf(op: string, tensors: readonly (readonly [string, Tensor | undefined])[]): DType {
  const given = tensors.filter((t): t is readonly [string, Tensor] => t[1] !== undefined);
  const [first, t0] = given[0]!;
  const dtype = t0.dtype;
  const odd = given.filter(([, t]) => t.dtype !== dtype).map(([what]) => what);
  if (odd.length) {
    throw new Error(`${op}: ${first} is ${dtype} but ${odd.join(', ')} ${odd.length > 1 ? 'are' : 'is'} not (all f32 or all f16: cast them first, kernels/cast.ts)`);
  }
  if (dtype === 'f16' && !t0.gpu.features.has('shader-f16')) {
    throw new Error(`${op}: f16 tensors need the adapter's shader-f16 feature, which ${t0.gpu.adapterName} lacks; use f32`);
  }
  return dtype;
}

function checkSmall(what: string, t: Tensor) {
  if (t.byteLength > t.gpu.maxBinding) throw new Error(`conv2d: ${what} (${t.byteLength} bytes) exceeds the storage-binding limit`);
}

const WG = 64;
const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const unroll = (n: number, f: (i: number) => string, sep = '\n') => range(n).map(f).join(sep);

/** Dispatch of `groups` workgroups along x, spilling into z beyond 65535. */
function gridXZ(groups: number, y: number): [number, number, number] {
  const g = Math.max(1, groups);
  if (g <= MAX_GROUPS) return [g, y, 1];
  const z = Math.ceil(g / MAX_GROUPS);
  return [Math.ceil(g / z), y, z];
}

/**
 * How v2 shares loads across a lane group of 8: 'shuffle' (subgroupShuffle from the aligned 8-lane
 * slice of the subgroup: any subgroup size that is a multiple of 8) or 'none' (every lane loads for
 * itself). NOTE: on lavapipe (subgroups of exactly 8) subgroupBroadcast with a constant lane measured
 * no faster than the shuffle, so there is no third variant.
 */
export type Share = 'none' | 'shuffle';

export function shareMode(gpu: Gpu, opts: Pick<Conv2dOptions, 'share'> = {}): Share {
  if (opts.share === 'none' || !gpu.hasSubgroups) return 'none';
  // NOTE: Gpu does not expose the adapter's subgroup sizes; GPUDevice.adapterInfo has them.
  const min = (gpu.device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo?.subgroupMinSize;
  return min !== undefined && min >= 8 ? 'shuffle' : 'none';
}

/** WGSL: value `v` of lane `i` (a constant) of this lane's 8-lane group. */
function fromLane(v: string, i: number): string {
  return `subgroupShuffle(${v}, sbase | ${i}u)`;
}


// =================================================================================================
// v1: naive kernels, one invocation per output element
// =================================================================================================

const fwdV1Kernel = memo((bias: boolean, relu: boolean, dt: DType) => `${bias}.${relu}.${dt}`, (bias: boolean, relu: boolean, dt: DType): KernelSpec<ConvU> => ({
  name: 'conv2d.fwd.v1', key: `conv2d.fwd.v1.${bias ? 'bias' : 'nobias'}${relu ? '.relu' : ''}${keyOf(dt)}`,
  uniforms: CONV_U,
  bindings: [
    { name: 'x', access: 'read', type: dt }, { name: 'w', access: 'read', type: dt },
    ...(bias ? [{ name: 'b', access: 'read', type: dt } as const] : []), { name: 'y', access: 'read_write', type: dt },
  ],
  workgroupSize: [WG, 1, 1],
  enables: enablesOf(dt),
  body: /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = ${LINEAR_INDEX};                 // i = ((n·K + k)·P + p)·Q + q within this batch chunk
  if (i >= u.total) { return; }
  let q = i % u.Q; let p = (i / u.Q) % u.P; let k = (i / (u.Q * u.P)) % u.K; let n = i / (u.Q * u.P * u.K);
  let g = k / u.Kg;
  var acc = ${bias ? ld(dt, 'b[k]') : '0.0'};
  for (var c = 0u; c < u.Cg; c++) {
    let xc = u.xo + (n * u.C + g * u.Cg + c) * u.H * u.W;
    let wc = (k * u.Cg + c) * u.R * u.S;
    for (var r = 0u; r < u.R; r++) {
      let ih = i32(p * u.sh + r * u.dh) - i32(u.pt);
      if (ih < 0 || ih >= i32(u.H)) { continue; }   // taps in the zero padding contribute nothing
      for (var s = 0u; s < u.S; s++) {
        let iw = i32(q * u.sw + s * u.dw) - i32(u.pl);
        if (iw < 0 || iw >= i32(u.W)) { continue; }
        acc += ${ld(dt, 'x[xc + u32(ih) * u.W + u32(iw)]')} * ${ld(dt, 'w[wc + r * u.S + s]')};
      }
    }
  }
  y[u.yo + i] = ${st(dt, relu ? 'max(acc, 0.0)' : 'acc')};
}`,
}));

/**
 * dX v1, the gather form of the transposed convolution: input pixel (h, v) received dY[p, q]·w[r, s]
 * from every output pixel whose window tap (r, s) landed on it, i.e. h = p·sh + r·dh − pt. So for each
 * r, p = (h + pt − r·dh) / sh must be a whole number in [0, P).
 * NOTE: with stride > 1 and P rounded down, some input rows/columns are covered by no window (or
 * by fewer taps): they simply find no valid (p, q) and get 0, never a stray neighbour's gradient.
 */
const dxV1Kernel = memo((dt: DType) => dt, (dt: DType): KernelSpec<ConvU> => ({
  name: 'conv2d.dx.v1', key: `conv2d.dx.v1${keyOf(dt)}`,
  uniforms: CONV_U,
  bindings: [{ name: 'dy', access: 'read', type: dt }, { name: 'w', access: 'read', type: dt }, { name: 'dx', access: 'read_write', type: dt }],
  workgroupSize: [WG, 1, 1],
  enables: enablesOf(dt),
  body: /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = ${LINEAR_INDEX};                 // i = ((n·C + ci)·H + h)·W + v within this batch chunk
  if (i >= u.total) { return; }
  let v = i % u.W; let h = (i / u.W) % u.H; let ci = (i / (u.W * u.H)) % u.C; let n = i / (u.W * u.H * u.C);
  let g = ci / u.Cg; let c = ci % u.Cg;
  var acc = 0.0;
  for (var kk = 0u; kk < u.Kg; kk++) {
    let k = g * u.Kg + kk;
    for (var r = 0u; r < u.R; r++) {
      let th = i32(h + u.pt) - i32(r * u.dh);                   // = p·sh if tap r of row p hit h
      if (th < 0 || th % i32(u.sh) != 0) { continue; }
      let p = u32(th) / u.sh;
      if (p >= u.P) { continue; }
      for (var s = 0u; s < u.S; s++) {
        let tw = i32(v + u.pl) - i32(s * u.dw);
        if (tw < 0 || tw % i32(u.sw) != 0) { continue; }
        let q = u32(tw) / u.sw;
        if (q >= u.Q) { continue; }
        acc += ${ld(dt, 'dy[u.yo + ((n * u.K + k) * u.P + p) * u.Q + q]')} * ${ld(dt, 'w[((k * u.Cg + c) * u.R + r) * u.S + s]')};
      }
    }
  }
  dx[u.xo + i] = ${st(dt, 'acc')};
}`,
}));

/**
 * dW v1: one invocation per weight element, looping over the N·P·Q output pixels. e0 = 1: add to dw.
 * `dt`: storage of x and dY; `out`: of dw, `dt` or f32 (a temporary summed over several batch chunks).
 */
const dwV1Kernel = memo((dt: DType, out: DType) => `${dt}.${out}`, (dt: DType, out: DType): KernelSpec<ConvU> => ({
  name: 'conv2d.dw.v1', key: `conv2d.dw.v1${keyOf(dt)}${out !== dt ? `.to${out}` : ''}`,
  uniforms: CONV_U,
  bindings: [{ name: 'x', access: 'read', type: dt }, { name: 'dy', access: 'read', type: dt }, { name: 'dw', access: 'read_write', type: out }],
  workgroupSize: [WG, 1, 1],
  enables: enablesOf(dt),
  body: /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = ${LINEAR_INDEX};                 // i = ((k·Cg + c)·R + r)·S + s
  if (i >= u.total) { return; }
  let s = i % u.S; let r = (i / u.S) % u.R; let c = (i / (u.S * u.R)) % u.Cg; let k = i / (u.S * u.R * u.Cg);
  let ci = (k / u.Kg) * u.Cg + c;
  var acc = 0.0;
  for (var n = 0u; n < u.N; n++) {
    for (var p = 0u; p < u.P; p++) {
      let ih = i32(p * u.sh + r * u.dh) - i32(u.pt);
      if (ih < 0 || ih >= i32(u.H)) { continue; }
      let xr = u.xo + ((n * u.C + ci) * u.H + u32(ih)) * u.W;
      let yr = u.yo + ((n * u.K + k) * u.P + p) * u.Q;
      for (var q = 0u; q < u.Q; q++) {
        let iw = i32(q * u.sw + s * u.dw) - i32(u.pl);
        if (iw < 0 || iw >= i32(u.W)) { continue; }
        acc += ${ld(dt, 'dy[yr + q]')} * ${ld(dt, 'x[xr + u32(iw)]')};
      }
    }
  }
  // NOTE: batch chunks (tensors above the binding limit) accumulate into dw.
  dw[i] = ${st(out, `select(acc, ${ld(out, 'dw[i]')} + acc, u.e0 == 1u)`)};
}`,
}));

// =================================================================================================
// v2: register tiles with loads shared across 8-lane groups
// =================================================================================================

/**
 * Packs w [K, Cg, R, S] as B[g, r, s, row, col] with the GEMM's reduction channel as `row` (padded to
 * a multiple of 8, the lane-group width) and the output channel as `col` (padded to a multiple of 4,
 * one vec4), zeros in the padding, so that a lane reads 4 consecutive output channels with one vec4
 * load and the padded rows/cols contribute 0.
 *   forward: row = c (Cg), col = k (Kg)        dX: row = k (Kg), col = c (Cg)
 * Uniforms: e0 = rows, e1 = rows padded (×8), e2 = cols padded (×4), e3 = 1 when rows are k (dX).
 */
const packKernel = memo((dt: DType) => dt, (dt: DType): KernelSpec<ConvU> => ({
  name: 'conv2d.pack', key: `conv2d.pack${keyOf(dt)}`,
  uniforms: CONV_U,
  bindings: [{ name: 'w', access: 'read', type: dt }, { name: 'bp', access: 'read_write', type: dt }],
  workgroupSize: [WG, 1, 1],
  enables: enablesOf(dt),
  body: /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = ${LINEAR_INDEX};
  if (i >= u.total) { return; }
  let col = i % u.e2; let row = (i / u.e2) % u.e1; let rs = (i / (u.e2 * u.e1)) % (u.R * u.S);
  let g = i / (u.e2 * u.e1 * u.R * u.S);
  let forDX = u.e3 == 1u;
  let cols = select(u.Kg, u.Cg, forDX);
  let k = select(col, row, forDX); let c = select(row, col, forDX);
  var v = 0.0;
  if (row < u.e0 && col < cols) { v = ${ld(dt, 'w[((g * u.Kg + k) * u.Cg + c) * u.R * u.S + rs]')}; }
  bp[i] = ${st(dt, 'v')};                  // exact: an f16 weight stays the same f16
}`,
}));

/** The packed copy of w, in w's storage type (f16 halves the v2 kernels' weight loads). */
function packWeights(w: Tensor, g: ConvGeometry, forDX: boolean): { bp: Tensor; rows8: number; cols4: number } {
  const rows = forDX ? g.Kg : g.Cg, cols = forDX ? g.Cg : g.Kg;
  const rows8 = Math.ceil(rows / 8) * 8, cols4 = Math.ceil(cols / 4) * 4;
  const total = g.G * g.R * g.S * rows8 * cols4;
  const bp = Tensor.empty(w.gpu, [total], undefined, w.dtype);
  checkSmall('packed weight', bp);
  w.gpu.run(packKernel(w.dtype), [w.buffer, bp.buffer], uniformsOf(g, 0, { total, e0: rows, e1: rows8, e2: cols4, e3: forDX ? 1 : 0 }),
    grid1d(total, WG), 'conv2d.pack');
  return { bp, rows8, cols4 };
}

/**
 * v2 tile: `tm` pixels per lane group (shared) × `tk` output channels per lane (a multiple of 4);
 * `lg` lane groups per workgroup (default 8: 64 invocations). A workgroup covers lg·tm pixels, so
 * small images (few pixels: 4·3×3 = 36) waste fewer slots with fewer lane groups.
 */
export interface TileConfig { tm: number; tk: number; lg?: number }
/** Chosen by bench/conv-gflops.ts on lavapipe (see the header). */
export const TILE_FWD: TileConfig = { tm: 8, tk: 4 };
export const TILE_DX: TileConfig = { tm: 8, tk: 4 };

/**
 * The heuristic tile for a pass over `pixels` output pixels (forward: N·P·Q; dX: N·H·W / stride
 * phases): the 8×4 tile, with 2 lane groups per workgroup for small images. Measured on lavapipe
 * (dX / forward ms, 3×3 pad 1, batch 4): 512 ch 3×3 px 52 → 40 / 56 → 46; 512 ch 7×7 px 112 → 78 /
 * 94 → 84; 256 ch 7×7 px 28 → 21; 128 ch 14×14 px 19 → 15; at 56×56 no difference. Same sums in the
 * same order: results are bit-identical.
 */
export function defaultTile(pass: 'fwd' | 'dx', pixels: number): TileConfig {
  const t = pass === 'fwd' ? TILE_FWD : TILE_DX;
  return pixels <= SMALL_PIXELS ? { ...t, lg: 2 } : t;
}
const SMALL_PIXELS = 4096;
const convPixels = (g: ConvGeometry, pass: 'fwd' | 'dx') =>
  pass === 'fwd' ? g.N * g.P * g.Q : g.N * Math.ceil(g.H / g.sh) * Math.ceil(g.W / g.sw);

type TiledMode = 'fwd' | 'dx';

/**
 * Forward and dX as one implicit GEMM:  dst[m, col] = Σ_{taps, row} src[pixel(m, tap), row] · B[tap, row, col]
 *   forward: src = x (rows = input channels),   dst = y  (cols = output channels), m = (n, p, q)
 *   dX:      src = dY (rows = output channels), dst = dX (cols = input channels),  m = (n, i, j) of one
 *            stride phase: h = a + sh·i, v = b + sw·j. Within a phase the taps that can reach a pixel are
 *            the same for every pixel (r with (a + pt − r·dh) ≡ 0 mod sh), so the loop skips the others
 *            uniformly and the source row is simply p = i + (a + pt − r·dh)/sh: a transposed convolution
 *            without the sh·sw-fold waste of testing every tap.
 * Workgroup = 64 lanes = 8 lane groups. Lane group γ owns a block of TM pixels; lane ℓ of the group owns
 * TK consecutive output channels. Loop: taps (r, s), then reduction channels in blocks of 8: lane ℓ
 * loads row c0+ℓ of each of its group's TM pixels (TM scalar loads), and step i of the block takes row
 * c0+i from lane i with a shuffle, multiplying it with a vec4 of packed weights (one vec4 load per 4
 * output channels). Without subgroups every lane loads all 8 rows itself.
 * Uniforms: total = pixels M; e0 = column blocks per group; e1 = rows8; e2 = vec4s per packed row;
 *           dX only: e3, e4 = phase (a, b), e5, e6 = phase extent (Hφ, Wφ).
 * NOTE: subgroup operations must be reached by every lane (uniform control flow): no early return,
 * out-of-range pixels and channels are masked to 0 and dropped only at the store.
 * NOTE: lane groups are aligned 8-lane slices of a subgroup (shuffle source (sl & ~7) | i), assuming a
 * subgroup holds consecutive local invocation indices (true of the drivers we know for 1-D workgroups),
 * so that li / 8 names the same lane group for all 8 lanes. shareMode() requires subgroups ≥ 8.
 */
const tiledKernel = memo(
  (mode: TiledMode, t: TileConfig, share: Share, bias: boolean, relu: boolean, dt: DType) => `${mode}.${t.tm}.${t.tk}.${t.lg ?? 8}.${share}.${bias}.${relu}.${dt}`,
  (mode: TiledMode, t: TileConfig, share: Share, bias: boolean, relu: boolean, dt: DType): KernelSpec<ConvU> => {
    const sg = share !== 'none';
    const { tm: TM, tk: TK, lg: LG = 8 } = t, TV = TK / 4;
    if (TK % 4 !== 0 || TM < 1 || ![1, 2, 4, 8].includes(LG)) throw new Error(`conv2d: bad tile ${TM}×${TK} with ${LG} lane groups`);
    const T = range(TM), V = range(TV);
    const fwd = mode === 'fwd';
    // The gathered source tensor (channels, spatial size, window offset, reduction channels per group)
    // and the destination's channels per group, in this mode.
    const S = fwd ? { C: 'u.C', H: 'u.H', W: 'u.W', off: 'u.xo', rows: 'u.Cg' } : { C: 'u.K', H: 'u.P', W: 'u.Q', off: 'u.yo', rows: 'u.Kg' };
    const cols = fwd ? 'u.Kg' : 'u.Cg';
    if (relu && !fwd) throw new Error('conv2d: a fused ReLU is a forward epilogue only');
    // The epilogue: + bias, then the fused activation (the same max(v, 0.0) as the elementwise ReLU).
    const epilogue = (v: string) => { const z = bias ? `${v} + ${ld(dt, 'b[g * u.Kg + col]')}` : v; return st(dt, relu ? `max(${z}, 0.0)` : z); };
    // NOTE: loads convert to f32 before the shuffle: lanes share (and multiply) f32 values.
    const aOf = (tt: number, i: number) => sg
      ? fromLane(`a${tt}`, i)
      : `select(0.0, ${ld(dt, `src[select(0u, si${tt} + (c0 + ${i}u) * SHW, ok${tt} && c0 + ${i}u < ${S.rows})]`)}, ok${tt} && c0 + ${i}u < ${S.rows})`;
    const pixel = (tt: number) => fwd ? `
  let n${tt} = m${tt} / (u.P * u.Q); let pq${tt} = m${tt} % (u.P * u.Q);
  let oh${tt} = i32((pq${tt} / u.Q) * u.sh) - i32(u.pt); let ow${tt} = i32((pq${tt} % u.Q) * u.sw) - i32(u.pl);
  let do${tt} = u.yo + (n${tt} * u.K + g * u.Kg) * DHW + pq${tt};` : `
  let n${tt} = m${tt} / (u.e5 * u.e6); let ij${tt} = m${tt} % (u.e5 * u.e6);
  let oh${tt} = i32(ij${tt} / u.e6); let ow${tt} = i32(ij${tt} % u.e6);
  let do${tt} = u.xo + (n${tt} * u.C + g * u.Cg) * DHW + (u.e3 + u.sh * (ij${tt} / u.e6)) * u.W + u.e4 + u.sw * (ij${tt} % u.e6);`;
    return {
      name: `conv2d.${mode}.v2${sg ? '' : '.nosg'}`,
      key: `conv2d.${mode}.v2.${TM}x${TK}${LG === 8 ? '' : `.lg${LG}`}.${share}.${bias ? 'bias' : 'nobias'}${relu ? '.relu' : ''}${keyOf(dt)}`,
      uniforms: CONV_U,
      bindings: [
        { name: 'src', access: 'read', type: dt }, { name: 'bp', access: 'read', type: storage(dt, true) },
        ...(bias ? [{ name: 'b', access: 'read', type: dt } as const] : []), { name: 'dst', access: 'read_write', type: dt },
      ],
      workgroupSize: [8 * LG, 1, 1],
      enables: enablesOf(dt, sg),
      body: /* wgsl */ `
@compute @workgroup_size(${8 * LG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32${sg ? ', @builtin(subgroup_invocation_id) sl: u32' : ''}) {
  ${sg ? 'let lane = sl & 7u; let sbase = sl & ~7u;' : 'let lane = li & 7u;'}
  let blk = (wg.x + wg.z * nwg.x) * ${LG}u + li / 8u;       // this lane group's pixel block
  let g = wg.y / u.e0;                                  // conv group
  let kvb = ((wg.y % u.e0) * 8u + lane) * ${TV}u;       // this lane's first vec4 of output channels
  let SHW = ${S.H} * ${S.W}; let DHW = ${fwd ? 'u.P * u.Q' : 'u.H * u.W'};
  ${V.map((j) => `let kq${j} = min(kvb + ${j}u, u.e2 - 1u);`).join(' ')}
  ${T.map((tt) => `
  let m${tt} = blk * ${TM}u + ${tt}u; let in${tt} = m${tt} < u.total;${pixel(tt)}
  let sb${tt} = ${S.off} + (n${tt} * ${S.C} + g * ${S.rows}) * SHW;
  ${V.map((j) => `var acc${tt}_${j} = vec4f(0.0);`).join(' ')}`).join('')}
  for (var r = 0u; r < u.R; r++) {
    ${fwd ? 'let dr = i32(r * u.dh);' : `let tr = i32(u.e3 + u.pt) - i32(r * u.dh);
    if (tr % i32(u.sh) != 0) { continue; }            // tap r never reaches this phase's rows
    let dr = tr / i32(u.sh);`}
    for (var s = 0u; s < u.S; s++) {
      ${fwd ? 'let ds = i32(s * u.dw);' : `let ts = i32(u.e4 + u.pl) - i32(s * u.dw);
      if (ts % i32(u.sw) != 0) { continue; }
      let ds = ts / i32(u.sw);`}
      ${T.map((tt) => `let h${tt} = oh${tt} + dr; let v${tt} = ow${tt} + ds;
      let ok${tt} = in${tt} && h${tt} >= 0 && h${tt} < i32(${S.H}) && v${tt} >= 0 && v${tt} < i32(${S.W});
      let si${tt} = select(0u, sb${tt} + u32(h${tt}) * ${S.W} + u32(v${tt}), ok${tt});`).join('\n      ')}
      let brow = ((g * u.R + r) * u.S + s) * u.e1;
      for (var c0 = 0u; c0 < ${S.rows}; c0 += 8u) {
        ${sg ? `let okc = c0 + lane < ${S.rows};
        ${T.map((tt) => `let a${tt} = select(0.0, ${ld(dt, `src[select(0u, si${tt} + (c0 + lane) * SHW, ok${tt} && okc)]`)}, ok${tt} && okc);`).join('\n        ')}` : ''}
        ${unroll(8, (i) => `{
          let bb = (brow + c0 + ${i}u) * u.e2;
          ${V.map((j) => `let b${j} = ${ld(dt, `bp[bb + kq${j}]`, true)};`).join(' ')}
          ${T.map((tt) => `let a${tt}i = ${aOf(tt, i)};`).join('\n          ')}
          ${T.map((tt) => V.map((j) => `acc${tt}_${j} += a${tt}i * b${j};`).join(' ')).join('\n          ')}
        }`, '\n        ')}
      }
    }
  }
  ${T.map((tt) => `
  if (in${tt}) {${V.map((j) => unroll(4, (e) => `
    { let col = (kvb + ${j}u) * 4u + ${e}u; if (col < ${cols}) { dst[do${tt} + col * DHW] = ${epilogue(`acc${tt}_${j}[${e}]`)}; } }`, '')).join('')}
  }`).join('')}
}`,
    };
  });

/**
 * dW v2: dW[k, c, r, s] = Σ_{rows (n,p) of this split, q} dY[n,k,p,q] · x[n, g·Cg+c, p·sh + r·dh − pt, q·sw + s·dw − pl]
 * A GEMM with a long reduction (N·P·Q) and a small output, so the reduction is split (split-K): each
 * split y = wg.y sums its own range of output rows into a partial buffer, and a second pass adds the
 * partials. Lane group γ owns TA output channels k (shared) and 8 column blocks; lane ℓ owns column
 * block jb = (c-block of TB channels, r, s). The reduction runs over output rows, then over q in
 * blocks of 8: lane ℓ loads dY at q0+ℓ for the group's TA channels, and step i takes them from lane i
 * (shuffle) while each lane loads its own TB x values at pixel q0+i (one bounds check for all TB,
 * since they share (r, s)).
 * Uniforms: total = lane groups (G·kBlocks·jGroups); e0 = kBlocks (per group); e1 = jBlocks; e2 = jGroups;
 *           e3 = rows per split; e4 = first partial slice of this batch chunk.
 * Storage: x and dY `dt`; part `out`: f32 partials, or `dt` when the only slice is dW itself.
 */
/** dW v2 tile: `ta` output channels per lane group (shared dY) × `tb` input channels per lane. */
export interface DwTileConfig { ta: number; tb: number }
export const TILE_DW: DwTileConfig = { ta: 16, tb: 2 };
const dwV2Kernel = memo(
  (ta: number, tb: number, share: Share, dt: DType, out: DType) => `${ta}.${tb}.${share}.${dt}.${out}`,
  (ta: number, tb: number, share: Share, dt: DType, out: DType): KernelSpec<ConvU> => {
    const sg = share !== 'none';
    const A = range(ta), B = range(tb);
    const dOf = (t: number, i: number) => sg
      ? fromLane(`d${t}`, i)
      : `select(0.0, ${ld(dt, `dy[select(0u, yb + k${t} * PQ + q0 + ${i}u, kok${t} && q0 + ${i}u < u.Q)]`)}, kok${t} && q0 + ${i}u < u.Q)`;
    return {
      name: `conv2d.dw.v2${sg ? '' : '.nosg'}`, key: `conv2d.dw.v2.${ta}x${tb}.${share}${keyOf(dt)}${out !== dt ? `.to${out}` : ''}`,
      uniforms: CONV_U,
      bindings: [{ name: 'x', access: 'read', type: dt }, { name: 'dy', access: 'read', type: dt }, { name: 'part', access: 'read_write', type: out }],
      workgroupSize: [WG, 1, 1],
      enables: enablesOf(dt, sg),
      body: /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32${sg ? ', @builtin(subgroup_invocation_id) sl: u32' : ''}) {
  ${sg ? 'let lane = sl & 7u; let sbase = sl & ~7u;' : 'let lane = li & 7u;'}
  let lg = wg.x * 8u + li / 8u;                         // lane group = (g, k block, j group)
  let lgOk = lg < u.total;
  let jg = lg % u.e2; let kb = (lg / u.e2) % u.e0; let g = min(lg / (u.e2 * u.e0), u.C / u.Cg - 1u);
  let jb = jg * 8u + lane; let jOk = lgOk && jb < u.e1;
  let s = jb % u.S; let r = (jb / u.S) % u.R; let cb = jb / (u.S * u.R);
  let PQ = u.P * u.Q;
  ${A.map((t) => `let k${t} = kb * ${ta}u + ${t}u; let kok${t} = lgOk && k${t} < u.Kg;`).join('\n  ')}
  ${B.map((e) => `let c${e} = cb * ${tb}u + ${e}u;`).join(' ')}
  ${A.map((t) => B.map((e) => `var acc${t}_${e} = 0.0;`).join(' ')).join('\n  ')}
  let row0 = wg.y * u.e3; let row1 = min(row0 + u.e3, u.N * u.P);
  for (var row = row0; row < row1; row++) {
    let n = row / u.P; let p = row % u.P;
    let ih = i32(p * u.sh + r * u.dh) - i32(u.pt);
    let rowOk = jOk && ih >= 0 && ih < i32(u.H);
    ${B.map((e) => `let xb${e} = u.xo + ((n * u.C + g * u.Cg + c${e}) * u.H + u32(max(ih, 0))) * u.W; let xok${e} = rowOk && c${e} < u.Cg;`).join('\n    ')}
    let yb = u.yo + (n * u.K + g * u.Kg) * PQ + p * u.Q;
    for (var q0 = 0u; q0 < u.Q; q0 += 8u) {
      ${sg ? `let qok = q0 + lane < u.Q;
      ${A.map((t) => `let d${t} = select(0.0, ${ld(dt, `dy[select(0u, yb + k${t} * PQ + q0 + lane, kok${t} && qok)]`)}, kok${t} && qok);`).join('\n      ')}` : ''}
      ${unroll(8, (i) => `{
        let iw = i32((q0 + ${i}u) * u.sw + s * u.dw) - i32(u.pl);
        let wok = iw >= 0 && iw < i32(u.W) && q0 + ${i}u < u.Q;
        ${B.map((e) => `let x${e} = select(0.0, ${ld(dt, `x[select(0u, xb${e} + u32(iw), xok${e} && wok)]`)}, xok${e} && wok);`).join(' ')}
        ${A.map((t) => `let d${t}i = ${dOf(t, i)};`).join('\n        ')}
        ${A.map((t) => B.map((e) => `acc${t}_${e} += d${t}i * x${e};`).join(' ')).join('\n        ')}
      }`, '\n      ')}
    }
  }
  if (jOk) {
    let KCRS = u.K * u.Cg * u.R * u.S;
    let base = (u.e4 + wg.y) * KCRS + r * u.S + s;
    ${A.map((t) => B.map((e) => `if (kok${t} && c${e} < u.Cg) { part[base + ((g * u.Kg + k${t}) * u.Cg + c${e}) * u.R * u.S] = ${st(out, `acc${t}_${e}`)}; }`).join('\n    ')).join('\n    ')}
  }
}`,
    };
  });

/** dw[i] = Σ_t part[t·n + i] over the split-K partial slices (n = total, e0 = slices); part is f32, dw `dt`. */
const sumPartsKernel = memo((dt: DType) => dt, (dt: DType): KernelSpec<ConvU> => ({
  name: 'conv2d.dw.sum', key: `conv2d.dw.sum${keyOf(dt)}`,
  uniforms: CONV_U,
  bindings: [{ name: 'part', access: 'read' }, { name: 'dw', access: 'read_write', type: dt }],
  workgroupSize: [WG, 1, 1],
  enables: enablesOf(dt),
  body: /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = ${LINEAR_INDEX};
  if (i >= u.total) { return; }
  var acc = 0.0;
  for (var t = 0u; t < u.e0; t++) { acc += part[t * u.total + i]; }
  dw[i] = ${st(dt, 'acc')};
}`,
}));

// =================================================================================================
// bias gradient: one workgroup per channel, tree reduction in workgroup memory
// =================================================================================================

/**
 * db[k] = Σ_{n,p,q} dY[n,k,p,q]. Lane ℓ sums pixels ℓ, ℓ+64, … of every image (contiguous, so the
 * loads of a workgroup are adjacent), then the 64 partial sums are added pairwise (6 barriers).
 * Uniforms: e0 = 1: add to db (batch chunks).
 * Storage: dY `dt`; db `out`, `dt` or f32 (a temporary summed over several batch chunks).
 */
const dbKernel = memo((dt: DType, out: DType) => `${dt}.${out}`, (dt: DType, out: DType): KernelSpec<ConvU> => ({
  name: 'conv2d.db', key: `conv2d.db${keyOf(dt)}${out !== dt ? `.to${out}` : ''}`,
  uniforms: CONV_U,
  bindings: [{ name: 'dy', access: 'read', type: dt }, { name: 'db', access: 'read_write', type: out }],
  workgroupSize: [WG, 1, 1],
  enables: enablesOf(dt),
  body: /* wgsl */ `
var<workgroup> red: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let k = wg.x;
  let PQ = u.P * u.Q;
  var acc = 0.0;
  for (var n = 0u; n < u.N; n++) {
    let base = u.yo + (n * u.K + k) * PQ;
    for (var i = li; i < PQ; i += ${WG}u) { acc += ${ld(dt, 'dy[base + i]')}; }
  }
  red[li] = acc;
  workgroupBarrier();
  for (var half = ${WG / 2}u; half > 0u; half /= 2u) {
    if (li < half) { red[li] += red[li + half]; }
    workgroupBarrier();
  }
  if (li == 0u) { db[k] = ${st(out, `select(red[0], ${ld(out, 'db[k]')} + red[0], u.e0 == 1u)`)}; }
}`,
}));

// =================================================================================================
// v3: explicit im2col + matmul (forward and dX)
// =================================================================================================
//
// The textbook lowering: copy every window into a row of a matrix, then one GEMM (matmul.ts, itself
// autotuned) does all the arithmetic.
//   forward  col[m, j] = x[n, c, p·sh + r·dh − pt, q·sw + s·dw − pl]   m = (n, p, q), j = (c, r, s)
//            Y[m, k]   = Σ_j col[m, j] · w[k, j]        (matmul with transB; bias and ReLU in its epilogue)
//   dX       col[m, j] = dY[n, k, p, q] where h = p·sh + r·dh − pt, v = q·sw + s·dw − pl
//                                                         m = (n, h, v), j = (k, r, s); 0 where no (p, q)
//            dX[m, c]  = Σ_j col[m, j] · w[k, c, r, s]   (w re-laid out as [(k, r, s), c])
// and a transpose from [N, pixels, channels] back to NCHW. It moves more memory than v2 (the column
// matrix holds each input R·S times) but runs the whole reduction as one dense GEMM with no padding
// in its tiles: on small images, where v2's pixel tiles are part empty and a third of the taps fall in
// the padding, it is the faster kernel (VGG16 512→512 at 3×3 pixels, batch 4: see the header).
// Only a candidate of the autotuner (or version: 3): f32, groups = 1, tensors within one binding.

const im2colKernel = memo((mode: TiledMode) => mode, (mode: TiledMode): KernelSpec<ConvU> => ({
  name: `conv2d.${mode}.im2col`, key: `conv2d.${mode}.im2col`,
  uniforms: CONV_U,
  bindings: [{ name: 'src', access: 'read' }, { name: 'col', access: 'read_write' }],
  workgroupSize: [WG, 1, 1],
  body: /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = ${LINEAR_INDEX};                 // i = m·J + j
  if (i >= u.total) { return; }
  let J = u.e0 * u.R * u.S;                 // e0: channels of the gathered tensor (C forward, K for dX)
  let m = i / J; let j = i % J;
  let s = j % u.S; let r = (j / u.S) % u.R; let c = j / (u.R * u.S);
  ${mode === 'fwd' ? `
  let q = m % u.Q; let p = (m / u.Q) % u.P; let n = m / (u.P * u.Q);
  let h = i32(p * u.sh + r * u.dh) - i32(u.pt); let v = i32(q * u.sw + s * u.dw) - i32(u.pl);
  let ok = h >= 0 && h < i32(u.H) && v >= 0 && v < i32(u.W);
  col[i] = select(0.0, src[select(0u, ((n * u.C + c) * u.H + u32(h)) * u.W + u32(v), ok)], ok);` : `
  let v = m % u.W; let h = (m / u.W) % u.H; let n = m / (u.H * u.W);
  let th = i32(h + u.pt) - i32(r * u.dh); let tw = i32(v + u.pl) - i32(s * u.dw);   // = p·sh, q·sw if tap (r, s) of (p, q) hit (h, v)
  let ok = th >= 0 && tw >= 0 && th % i32(u.sh) == 0 && tw % i32(u.sw) == 0 && u32(th) / u.sh < u.P && u32(tw) / u.sw < u.Q;
  col[i] = select(0.0, src[select(0u, ((n * u.K + c) * u.P + u32(th) / u.sh) * u.Q + u32(tw) / u.sw, ok)], ok);`}
}`,
}));

/** Bytes of the column matrix a v3 pass needs. */
const im2colBytes = (g: ConvGeometry, pass: 'fwd' | 'dx') =>
  4 * (pass === 'fwd' ? g.N * g.P * g.Q * g.C : g.N * g.H * g.W * g.K) * g.R * g.S;

/** Whether v3 applies: f32, one group, and every tensor (the column matrix too) within one binding and 64 MiB. */
function im2colFits(g: ConvGeometry, pass: 'fwd' | 'dx', gpu: Gpu, dtype: DType): boolean {
  const cap = Math.min(gpu.maxBinding, 64 * 2 ** 20);
  return dtype === 'f32' && g.G === 1 && im2colBytes(g, pass) <= cap && 4 * g.N * Math.max(g.C * g.H * g.W, g.K * g.P * g.Q) <= cap;
}

function im2colCheck(g: ConvGeometry, pass: 'fwd' | 'dx', t: Tensor) {
  if (!im2colFits(g, pass, t.gpu, t.dtype)) {
    throw new Error(`conv2d: version 3 (im2col) needs f32, groups = 1 and a column matrix within one binding (${im2colBytes(g, pass)} bytes here)`);
  }
}

/** [N, pixels, channels] (a matmul's output) → [N, channels, pixels] reshaped to NCHW. */
function toNchw(t: Tensor, N: number, pixels: number, ch: number, shape: Shape): Tensor {
  const out = transpose(t.reshape([N, pixels, ch]), [0, 2, 1]);
  t.dispose();
  // NOTE: the returned tensor takes over `out`'s buffer (a reshape() view would not own it, and the
  // caller must be able to dispose the result); `out` itself is dropped without dispose.
  return new Tensor(out.gpu, out.buffer, shape);
}

function im2colForward(x: Tensor, w: Tensor, b: Tensor | undefined, g: ConvGeometry, relu: boolean): Tensor {
  im2colCheck(g, 'fwd', x);
  const gpu = x.gpu;
  const M = g.N * g.P * g.Q, J = g.C * g.R * g.S;
  const col = Tensor.empty(gpu, [M, J]);
  gpu.run(im2colKernel('fwd'), [x.buffer, col.buffer], uniformsOf(g, g.N, { total: M * J, e0: g.C }), grid1d(M * J, WG), 'conv2d.fwd');
  const y2 = matmul(col, w.reshape([g.K, J]), { transB: true, bias: b, relu });
  col.dispose();
  return toNchw(y2, g.N, g.P * g.Q, g.K, [g.N, g.K, g.P, g.Q]);
}

function im2colBackwardInput(dY: Tensor, w: Tensor, g: ConvGeometry): Tensor {
  im2colCheck(g, 'dx', dY);
  const gpu = dY.gpu;
  const M = g.N * g.H * g.W, J = g.K * g.R * g.S;
  const col = Tensor.empty(gpu, [M, J]);
  gpu.run(im2colKernel('dx'), [dY.buffer, col.buffer], uniformsOf(g, g.N, { total: M * J, e0: g.K }), grid1d(M * J, WG), 'conv2d.dx');
  // w [K, C, R, S] → [K, R, S, C] = [(k, r, s), c]
  const wt = transpose(w, [0, 2, 3, 1]);
  const dx2 = matmul(col, wt.reshape([J, g.C]));
  col.dispose(); wt.dispose();
  return toNchw(dx2, g.N, g.H * g.W, g.C, [g.N, g.C, g.H, g.W]);
}

// =================================================================================================
// launchers
// =================================================================================================

const roundUp = (v: number, m: number) => Math.ceil(v / m) * m;

/**
 * The version to run when none is asked for. A v2 tile spends its multiply-adds on whole blocks of
 * channels: 8 reduction channels per step and 8·TK output channels per lane group (dW: TA × TB). The
 * fraction of useful work is (rows / rows rounded up)·(cols / cols rounded up); v2 is ~20× v1 per
 * useful multiply-add on lavapipe, so below 1/16 (depthwise: 1/256) the naive kernel wins.
 */
export function pickVersion(g: ConvGeometry, pass: 'fwd' | 'dx' | 'dw', opts: Pick<Conv2dOptions, 'version'> = {}, adapter = ''): 1 | 2 {
  if (opts.version) return opts.version === 3 ? 2 : opts.version;
  // NOTE: SwiftShader (Chromium's software WebGPU) takes minutes to compile the tiled v2 shaders and
  // then loses the device; its v1 kernels compile at once. Measured in test/web (issue 8).
  if (/swiftshader/i.test(adapter)) return 1;
  const [rows, rowBlock, cols, colBlock] =
    pass === 'fwd' ? [g.Cg, 8, g.Kg, 8 * TILE_FWD.tk] : pass === 'dx' ? [g.Kg, 8, g.Cg, 8 * TILE_DX.tk] : [g.Kg, TILE_DW.ta, g.Cg, TILE_DW.tb];
  const useful = (rows / roundUp(rows, rowBlock)) * (cols / roundUp(cols, colBlock));
  return useful >= 1 / 16 ? 2 : 1;
}

/**
 * y = conv2d(x, w) + b.   x [N,C,H,W], w [K,C/G,R,S], b [K] or none  ->  y [N,K,P,Q].
 * With opts.activation = 'relu': y = max(0, conv2d(x, w) + b), in the same dispatch.
 */
export function conv2d(x: Tensor, w: Tensor, b: Tensor | undefined, opts: Conv2dOptions = {}, pinnedTile?: TileConfig): Tensor {
  const g = convGeometry(x.shape, w.shape, opts);
  if (b) expectShape('conv2d bias', b, [g.K]);
  // NOTE: options may come from an ONNX file or a user at run time: an unknown activation must not be ignored.
  if (opts.activation !== undefined && opts.activation !== 'relu') throw new Error(`conv2d: unknown fused activation '${String(opts.activation)}' (only 'relu')`);
  const relu = opts.activation === 'relu';
  const dt = storageOf('conv2d', [['x', x], ['w', w], ['b', b]]);
  checkSmall('weight', w);
  const gpu = x.gpu;
  const tuned = tunedVariant(g, 'fwd', opts, gpu, pinnedTile !== undefined, dt);
  if ((tuned?.version ?? opts.version) === 3) return im2colForward(x, w, b, g, relu);
  const y = Tensor.empty(gpu, [g.N, g.K, g.P, g.Q], undefined, dt);
  const xImg = g.C * g.H * g.W, yImg = g.K * g.P * g.Q;
  const v2 = (tuned?.version ?? pickVersion(g, 'fwd', opts, gpu.adapterName)) === 2;
  const tile = tuned?.tile ?? pinnedTile ?? defaultTile('fwd', convPixels(g, 'fwd'));
  const packed = v2 ? packWeights(w, g, false) : null;
  const share = tuned?.share ?? shareMode(gpu, opts);
  for (const { n0, n } of batchChunks(gpu, opts, g.N, [xImg, yImg], dt)) {
    const xw = windowOf(x, n0 * xImg, n * xImg), yw = windowOf(y, n0 * yImg, n * yImg);
    if (!packed) {
      const total = n * yImg;
      gpu.run(fwdV1Kernel(!!b, relu, dt), [xw.bind, w.buffer, ...(b ? [b.buffer] : []), yw.bind],
        uniformsOf(g, n, { xo: xw.off, yo: yw.off, total }), grid1d(total, WG), 'conv2d.fwd');
    } else {
      const M = n * g.P * g.Q;
      const kb = Math.ceil(packed.cols4 / tile.tk / 8);
      gpu.run(tiledKernel('fwd', tile, share, !!b, relu, dt), [xw.bind, packed.bp.buffer, ...(b ? [b.buffer] : []), yw.bind],
        uniformsOf(g, n, { xo: xw.off, yo: yw.off, total: M, e0: kb, e1: packed.rows8, e2: packed.cols4 / 4 }),
        gridXZ(Math.ceil(M / tile.tm / (tile.lg ?? 8)), g.G * kb), 'conv2d.fwd');
    }
  }
  packed?.bp.dispose();
  return y;
}

/** dX [N,C,H,W] from dY [N,K,P,Q] and w [K,C/G,R,S]: the transposed convolution. */
export function conv2dBackwardInput(dY: Tensor, w: Tensor, xShape: Shape, opts: Conv2dOptions = {}, pinnedTile?: TileConfig): Tensor {
  const g = convGeometry(xShape, w.shape, opts);
  expectShape('conv2dBackwardInput dY', dY, [g.N, g.K, g.P, g.Q]);
  const dt = storageOf('conv2dBackwardInput', [['dY', dY], ['w', w]]);
  checkSmall('weight', w);
  const gpu = dY.gpu;
  const tuned = tunedVariant(g, 'dx', opts, gpu, pinnedTile !== undefined, dt);
  if ((tuned?.version ?? opts.version) === 3) return im2colBackwardInput(dY, w, g);
  const dX = Tensor.empty(gpu, [g.N, g.C, g.H, g.W], undefined, dt);
  const xImg = g.C * g.H * g.W, yImg = g.K * g.P * g.Q;
  const v2 = (tuned?.version ?? pickVersion(g, 'dx', opts, gpu.adapterName)) === 2;
  const tile = tuned?.tile ?? pinnedTile ?? defaultTile('dx', convPixels(g, 'dx'));
  const packed = v2 ? packWeights(w, g, true) : null;
  const share = tuned?.share ?? shareMode(gpu, opts);
  for (const { n0, n } of batchChunks(gpu, opts, g.N, [xImg, yImg], dt)) {
    const xw = windowOf(dX, n0 * xImg, n * xImg), yw = windowOf(dY, n0 * yImg, n * yImg);
    if (!packed) {
      const total = n * xImg;
      gpu.run(dxV1Kernel(dt), [yw.bind, w.buffer, xw.bind], uniformsOf(g, n, { xo: xw.off, yo: yw.off, total }), grid1d(total, WG), 'conv2d.dx');
      continue;
    }
    const kb = Math.ceil(packed.cols4 / tile.tk / 8);
    // One dispatch per stride phase (a, b): the pixels h ≡ a (mod sh), v ≡ b (mod sw).
    for (let a = 0; a < Math.min(g.sh, g.H); a++) {
      for (let b = 0; b < Math.min(g.sw, g.W); b++) {
        const Hf = Math.ceil((g.H - a) / g.sh), Wf = Math.ceil((g.W - b) / g.sw);
        const M = n * Hf * Wf;
        gpu.run(tiledKernel('dx', tile, share, false, false, dt), [yw.bind, packed.bp.buffer, xw.bind],
          uniformsOf(g, n, { xo: xw.off, yo: yw.off, total: M, e0: kb, e1: packed.rows8, e2: packed.cols4 / 4, e3: a, e4: b, e5: Hf, e6: Wf }),
          gridXZ(Math.ceil(M / tile.tm / (tile.lg ?? 8)), g.G * kb), 'conv2d.dx');
      }
    }
  }
  packed?.bp.dispose();
  return dX;
}

/** dW [K,C/G,R,S] from x [N,C,H,W] and dY [N,K,P,Q]. */
export function conv2dBackwardWeight(x: Tensor, dY: Tensor, wShape: Shape, opts: Conv2dOptions = {}, pinnedTile?: DwTileConfig): Tensor {
  const g = convGeometry(x.shape, wShape, opts);
  expectShape('conv2dBackwardWeight dY', dY, [g.N, g.K, g.P, g.Q]);
  const dt = storageOf('conv2dBackwardWeight', [['x', x], ['dY', dY]]);
  const gpu = x.gpu;
  const dW = Tensor.empty(gpu, [g.K, g.Cg, g.R, g.S], undefined, dt);
  checkSmall('weight gradient', dW);
  const xImg = g.C * g.H * g.W, yImg = g.K * g.P * g.Q;
  const chunks = batchChunks(gpu, opts, g.N, [xImg, yImg], dt);
  const tuned = tunedVariant(g, 'dw', opts, gpu, pinnedTile !== undefined, dt);
  const tile = tuned?.dwTile ?? pinnedTile ?? TILE_DW;
  if ((tuned?.version ?? pickVersion(g, 'dw', opts, gpu.adapterName)) === 1) {
    // NOTE: batch chunks add into dW; with f16 storage they add into an f32 temporary instead, so
    // the sum is rounded to f16 once (the cast), not once per chunk.
    const acc = chunks.length > 1 && dt === 'f16' ? Tensor.empty(gpu, dW.shape) : dW;
    chunks.forEach(({ n0, n }, i) => {
      const xw = windowOf(x, n0 * xImg, n * xImg), yw = windowOf(dY, n0 * yImg, n * yImg);
      gpu.run(dwV1Kernel(dt, acc.dtype), [xw.bind, yw.bind, acc.buffer], uniformsOf(g, n, { xo: xw.off, yo: yw.off, total: dW.size, e0: i > 0 ? 1 : 0 }),
        grid1d(dW.size, WG), 'conv2d.dw');
    });
    return acc === dW ? dW : castInto(acc, dW);
  }
  // Split-K: enough splits of the N·P rows that the dispatch has ~SPLIT_TARGET workgroups.
  const kBlocks = Math.ceil(g.Kg / tile.ta), jBlocks = Math.ceil(g.Cg / tile.tb) * g.R * g.S, jGroups = Math.ceil(jBlocks / 8);
  const laneGroups = g.G * kBlocks * jGroups, groupsX = Math.ceil(laneGroups / 8);
  if (groupsX > MAX_GROUPS) throw new Error('conv2d: weight gradient too large for one dispatch');
  const plan = chunks.map(({ n }) => {
    const rows = n * g.P;
    const splits = Math.max(1, Math.min(Math.ceil(SPLIT_TARGET / groupsX), Math.ceil(rows / MIN_ROWS_PER_SPLIT), MAX_GROUPS));
    const perSplit = Math.ceil(rows / splits);
    return { rows, perSplit, splits: Math.ceil(rows / perSplit) };
  });
  const slices = plan.reduce((s, p) => s + p.splits, 0);
  // The partial sums are f32 whatever the storage (a temporary that is summed again).
  const part = slices === 1 ? dW : Tensor.empty(gpu, [slices, dW.size]);
  checkSmall('split-K partials', part);
  const share = tuned?.share ?? shareMode(gpu, opts);
  let slice = 0;
  chunks.forEach(({ n0, n }, i) => {
    const xw = windowOf(x, n0 * xImg, n * xImg), yw = windowOf(dY, n0 * yImg, n * yImg);
    const { perSplit, splits } = plan[i]!;
    gpu.run(dwV2Kernel(tile.ta, tile.tb, share, dt, part.dtype), [xw.bind, yw.bind, part.buffer],
      uniformsOf(g, n, { xo: xw.off, yo: yw.off, total: laneGroups, e0: kBlocks, e1: jBlocks, e2: jGroups, e3: perSplit, e4: slice }),
      [groupsX, splits, 1], 'conv2d.dw');
    slice += splits;
  });
  if (part !== dW) {
    gpu.run(sumPartsKernel(dt), [part.buffer, dW.buffer], uniformsOf(g, 0, { total: dW.size, e0: slices }), grid1d(dW.size, WG), 'conv2d.dw.sum');
    part.dispose();
  }
  return dW;
}
const SPLIT_TARGET = 64;
const MIN_ROWS_PER_SPLIT = 4;

/**
 * The f32 sum `acc` rounded to the storage of `dst` (kernels/cast.ts), as a new tensor of the same
 * shape that replaces the unwritten `dst`; disposes both.
 */
function castInto(acc: Tensor, dst: Tensor): Tensor {
  const out = cast(acc, dst.dtype);
  acc.dispose(); dst.dispose();
  return out;
}

/** db [K] = Σ_{n,p,q} dY[n,k,p,q]. */
export function conv2dBackwardBias(dY: Tensor, opts: Pick<Conv2dOptions, 'bindingLimit'> = {}): Tensor {
  if (dY.shape.length !== 4) throw new Error(`conv2dBackwardBias: dY must be [N,K,P,Q], got [${dY.shape.join(', ')}]`);
  const [N, K, P, Q] = dY.shape as [number, number, number, number];
  const dt = storageOf('conv2dBackwardBias', [['dY', dY]]);
  const gpu = dY.gpu;
  const db = Tensor.empty(gpu, [K], undefined, dt);
  const g: ConvGeometry = { N, C: 1, H: 1, W: 1, K, R: 1, S: 1, P, Q, G: 1, Cg: 1, Kg: K, sh: 1, sw: 1, dh: 1, dw: 1, pt: 0, pl: 0, pb: 0, pr: 0 };
  if (K > MAX_GROUPS) throw new Error(`conv2dBackwardBias: ${K} channels exceed one dispatch`);
  const chunks = batchChunks(gpu, opts, N, [K * P * Q], dt);
  // NOTE: as in dW v1, f16 batch chunks add into an f32 temporary, rounded to f16 once at the end.
  const acc = chunks.length > 1 && dt === 'f16' ? Tensor.empty(gpu, [K]) : db;
  chunks.forEach(({ n0, n }, i) => {
    const yw = windowOf(dY, n0 * K * P * Q, n * K * P * Q);
    gpu.run(dbKernel(dt, acc.dtype), [yw.bind, acc.buffer], uniformsOf(g, n, { yo: yw.off, e0: i > 0 ? 1 : 0 }), [K, 1, 1], 'conv2d.db');
  });
  return acc === db ? db : castInto(acc, db);
}

export interface ConvNeeds { needDX?: boolean; needDW?: boolean; needDB?: boolean }
export interface ConvGrads { dX?: Tensor; dW?: Tensor; db?: Tensor }

/**
 * The backward of y = conv2d(x, w, b): launches only the kernels whose gradient is needed, so a
 * frozen layer (needDW = needDB = false) launches no weight-gradient kernel and the first layer
 * (needDX = false) no input-gradient kernel. Saved from the forward: x (for dW) and w (for dX).
 */
export function conv2dBackward(x: Tensor, w: Tensor, dY: Tensor, opts: Conv2dOptions, need: ConvNeeds): ConvGrads {
  const out: ConvGrads = {};
  if (need.needDX) out.dX = conv2dBackwardInput(dY, w, x.shape, opts);
  if (need.needDW) out.dW = conv2dBackwardWeight(x, dY, w.shape, opts);
  if (need.needDB) out.db = conv2dBackwardBias(dY, opts);
  return out;
}

// =================================================================================================
// autotuning (gpu/tune.ts): the variants worth measuring per pass, and a trial to measure them on
// =================================================================================================
//
// Candidate ids: 'v1', or 'v2.<tm>x<tk>[w<lg>]' (forward, dX: pixels per lane group × output channels
// per lane [× lane groups per workgroup, when not 8]) / 'v2.<ta>x<tb>' (dW), with '.nosg' for the
// variant that loads without subgroup sharing. [0] is the heuristic choice (pickVersion, defaultTile,
// shareMode), which runs until the class is measured.
// Measured on lavapipe (bench/conv-gflops.ts) 8×4 beat 4×4, 16×4 and 8×8; real GPUs, with more
// registers and real SIMD loads, may prefer other shapes — which is why they are candidates.
// NOTE: SwiftShader never finishes compiling v2 (pickVersion): nothing to tune there.

type Pass = 'fwd' | 'dx' | 'dw';
interface ConvVariant { version: 1 | 2 | 3; tile?: TileConfig; dwTile?: DwTileConfig; share?: Share }

const TUNE_TILES: readonly TileConfig[] = [{ tm: 8, tk: 4 }, { tm: 8, tk: 4, lg: 2 }, { tm: 4, tk: 4 }, { tm: 16, tk: 4 }, { tm: 8, tk: 8 }];
const TUNE_DW_TILES: readonly DwTileConfig[] = [{ ta: 16, tb: 2 }, { ta: 8, tb: 2 }, { ta: 16, tb: 4 }, { ta: 32, tb: 2 }];

function variantId(pass: Pass, v: ConvVariant): string {
  if (v.version === 1) return 'v1';
  if (v.version === 3) return 'v3';
  const [a, b] = pass === 'dw' ? [v.dwTile!.ta, v.dwTile!.tb] : [v.tile!.tm, v.tile!.tk];
  const lg = pass !== 'dw' && (v.tile!.lg ?? 8) !== 8 ? `w${v.tile!.lg}` : '';
  return `v2.${a}x${b}${lg}${v.share === 'none' ? '.nosg' : ''}`;
}

function parseVariant(pass: Pass, id: string, gpu: Gpu): ConvVariant {
  if (id === 'v1') return { version: 1 };
  if (id === 'v3') return { version: 3 };
  const m = /^v2\.(\d+)x(\d+)(?:w(\d+))?(\.nosg)?$/.exec(id);
  if (!m) throw new Error(`conv2d: unknown variant '${id}'`);
  const [a, b] = [Number(m[1]), Number(m[2])];
  const share: Share = m[4] ? 'none' : shareMode(gpu);
  return pass === 'dw' ? { version: 2, dwTile: { ta: a, tb: b }, share } : { version: 2, tile: { tm: a, tk: b, ...(m[3] ? { lg: Number(m[3]) } : {}) }, share };
}

/** The candidates of one pass: the heuristic default first, then every other variant that applies. */
export function convCandidates(g: ConvGeometry, pass: Pass, gpu: Gpu, dtype: DType = 'f32'): string[] {
  const share = shareMode(gpu);
  const dflt = pickVersion(g, pass, {}, gpu.adapterName) === 1 ? 'v1'
    : variantId(pass, pass === 'dw' ? { version: 2, dwTile: TILE_DW, share } : { version: 2, tile: defaultTile(pass, convPixels(g, pass)), share });
  // Tiny convolutions are launch-bound (every variant costs the same); SwiftShader only runs v1.
  if (convFlops(g) < 2 ** 21 || /swiftshader/i.test(gpu.adapterName)) return [dflt];
  // The naive kernel only wins where there are few pixels to tile (e.g. 2×2 images: one v2 lane group
  // per channel block, too little parallelism); elsewhere it is 10–40× slower and measuring it is waste.
  const pixels = pass === 'dx' ? g.N * g.H * g.W : g.N * g.P * g.Q;
  const v1 = pixels <= V1_PIXELS ? ['v1'] : [];
  const v2 = pass === 'dw'
    ? TUNE_DW_TILES.map((dwTile) => variantId(pass, { version: 2, dwTile, share }))
    : TUNE_TILES.map((tile) => variantId(pass, { version: 2, tile, share }));
  // Without sharing: only the default tile, on adapters where sharing is available at all — and not on
  // software adapters, where it measured 2–4× slower on every class of `bench --quick` (a lane's own
  // loads are per-lane loops there).
  if (share !== 'none' && !isSoftwareAdapter(gpu.adapterName)) v2.push(variantId(pass, pass === 'dw' ? { version: 2, dwTile: TILE_DW, share: 'none' } : { version: 2, tile: defaultTile(pass, convPixels(g, pass)), share: 'none' }));
  // im2col + GEMM only where v2's tiles are part empty (measured: it wins at 3×3 and 7×7 pixels, loses
  // 2–4× from 14×14 up on lavapipe).
  const v3 = pass !== 'dw' && pixels <= V3_PIXELS && im2colFits(g, pass, gpu, dtype) ? ['v3'] : [];
  return [...new Set([dflt, ...v1, ...v2, ...v3])];
}
const V1_PIXELS = 32;
const V3_PIXELS = 1024;

/** The shape class: everything but the batch, which counts by powers of two; and the storage type (f32 unmarked). */
function convClass(g: ConvGeometry, dtype: DType): string {
  return `${g.C}>${g.K}${g.G > 1 ? `/g${g.G}` : ''} ${g.R}x${g.S} s${g.sh}${g.sw === g.sh ? '' : `x${g.sw}`}` +
    `${g.dh > 1 || g.dw > 1 ? ` d${g.dh}x${g.dw}` : ''} p${[g.pt, g.pl, g.pb, g.pr].join(',')} ${g.H}x${g.W} n${2 ** Math.floor(Math.log2(g.N))}` +
    `${dtype === 'f16' ? ' f16' : ''}`;
}

/** Options that reproduce g's geometry. */
function geometryOptions(g: ConvGeometry): Conv2dOptions {
  return { stride: [g.sh, g.sw], padding: [g.pt, g.pl, g.pb, g.pr], dilation: [g.dh, g.dw], groups: g.G };
}

/**
 * Multiply-adds·2 one trial launch may cost: enough to time the variants reliably, small enough
 * that a software adapter measures a class (5–6 candidates, the naive one ~20× slower) in seconds.
 */
const trialBudget = (gpu: Gpu) => (isSoftwareAdapter(gpu.adapterName) ? 2e8 : 2e10);
const TRIAL_PIXELS = 4096;

/**
 * A trial of the class: the class's smallest batch, halved (then the image cropped) until one launch
 * costs at most the budget — but never below TRIAL_PIXELS output pixels, where the variants' tiling
 * along pixels would start to look different from the real layer's (measured: cropping a 56×56 layer
 * to ~300 pixels picked tiles that were 20–40% slower on the real one). The channels, window,
 * stride and padding — what the variants differ on — stay as they are.
 */
function convTrial(g: ConvGeometry, pass: Pass, gpu: Gpu, dtype: DType): TuneSpec {
  const base = geometryOptions(g);
  const flops = (t: ConvGeometry) => convFlops(t);
  let N = 2 ** Math.floor(Math.log2(g.N)), H = g.H, W = g.W;
  let t = convGeometry([N, g.C, H, W], [g.K, g.Cg, g.R, g.S], base);
  while (flops(t) > trialBudget(gpu) && t.N * t.P * t.Q > TRIAL_PIXELS && (N > 1 || H > 2 * g.R * g.dh || W > 2 * g.S * g.dw)) {
    if (N > 1) N >>= 1;
    else { H = Math.max(g.R * g.dh, Math.ceil(H / 2)); W = Math.max(g.S * g.dw, Math.ceil(W / 2)); }
    t = convGeometry([N, g.C, H, W], [g.K, g.Cg, g.R, g.S], base);
  }
  const tg = t;
  return {
    candidates: convCandidates(g, pass, gpu, dtype),
    tolerance: dtype === 'f16' ? 4e-3 : undefined,
    flops: flops(tg),
    trial(gpu) {
      const rng = new Rng(0x7e57);
      const rand = (shape: Shape) => Tensor.from(gpu, Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal()), shape, dtype);
      const x = rand([tg.N, tg.C, tg.H, tg.W]), w = rand([tg.K, tg.Cg, tg.R, tg.S]), dY = rand([tg.N, tg.K, tg.P, tg.Q]);
      return {
        run(id) {
          const v = parseVariant(pass, id, gpu);
          const o: Conv2dOptions = { ...base, version: v.version, share: v.share };
          if (pass === 'fwd') return conv2d(x, w, undefined, o, v.tile);
          if (pass === 'dx') return conv2dBackwardInput(dY, w, x.shape, o, v.tile);
          return conv2dBackwardWeight(x, dY, w.shape, o, v.dwTile);
        },
        dispose() { x.dispose(); w.dispose(); dY.dispose(); },
      };
    },
  };
}

/**
 * The variant the autotuner measured fastest for this class, or undefined for the heuristic default
 * (also when the caller pinned a version, sharing mode or tile: explicit choices are never overridden).
 */
function tunedVariant(g: ConvGeometry, pass: Pass, opts: Conv2dOptions, gpu: Gpu, pinnedTile: boolean, dtype: DType): ConvVariant | undefined {
  if (opts.version || opts.share || pinnedTile) return undefined;
  const id = gpu.tuner.choose(`conv2d.${pass}`, convClass(g, dtype), () => convTrial(g, pass, gpu, dtype));
  return id === undefined ? undefined : parseVariant(pass, id, gpu);
}
