// Pooling kernels, NCHW f32: max, average, global average and adaptive average, forward and
// backward side by side. Every (n,c) plane is pooled on its own, so a tensor is N·C planes.
//
//   x: [N,C,H,W]   y, dY: [N,C,P,Q]   kernel R×S, stride sh×sw, padding top/left/bottom/right,
//   dilation dh×dw (max only). Window of output (p,q): rows h = p·sh − padT + r·dh (r < R),
//   columns w = q·sw − padL + s·dw (s < S).
//
//   maxPool2d:     y[p,q] = max over the window's real pixels (padding is −∞)
//                  argmax[p,q] = h·W + w of the winner, a u32 index within the (n,c) plane: what the
//                  backward needs. NOTE: ties go to the FIRST max in scan order (r, then s), as PyTorch.
//   maxPool2dBackward (saves argmax): dX[h,w] = Σ_{(p,q) : argmax[p,q] = h·W+w} dY[p,q]
//   avgPool2d:     y[p,q] = Σ window x / divisor        (no dilation, as PyTorch)
//   avgPool2dBackward (saves nothing): dX[h,w] = Σ_{(p,q) ∋ (h,w)} dY[p,q] / divisor(p,q)
//   globalAvgPool: y[n,c,0,0] = mean over H·W;  backward dX[h,w] = dY / (H·W)
//   adaptiveAvgPool2d(x, [P,Q]): bin p covers rows [⌊p·H/P⌋, ⌈(p+1)·H/P⌉) (PyTorch bins; they may
//                  overlap by one row when P ∤ H); backward spreads dY / |bin| over each bin.
//
// Output size (PyTorch / ONNX), per axis, with k_eff = dil·(R−1) + 1:
//   P = ⌊(H + padT + padB − k_eff) / sh⌋ + 1                     (floor mode)
//   P = ⌈(H + padT + padB − k_eff) / sh⌉ + 1, then P −= 1 if (P−1)·sh ≥ H + padT   (ceil mode)
//   NOTE: the correction keeps the last window starting inside the input or its left padding; a
//   window that starts in the right padding would pool nothing (PyTorch's rule, also onnxruntime's).
// Average divisor (PyTorch): the window clipped to the PADDED border [−padT, H + padB), i.e.
//   (min(h0 + R, H + padB) − h0) · (min(w0 + S, W + padR) − w0), when countIncludePad; the count of
//   real pixels in the window otherwise. NOTE: ceil mode can push a window past the padded border;
//   those positions never count, even with countIncludePad.
//   NOTE: countIncludePad defaults to true (PyTorch); ONNX AveragePool's default is 0, so an ONNX
//   importer must pass it explicitly.
//
// Backward kernels are GATHERS: each dX element is written once, by the invocation that owns it,
// summing the dY of the windows that contain it. With stride < kernel, windows overlap and several
// dY land on one input; a scatter would need f32 atomics, which WGSL does not have (only a
// compare-and-swap loop on atomic<u32>). A gather also sums in a fixed order, so results are
// deterministic.
//
// Padding may be asymmetric (ONNX). Unlike PyTorch we do not demand pad ≤ k_eff/2; a window that
// holds no real pixel (possible with large pads or dilation) gives max −∞ with argmax NO_ARGMAX (and
// no gradient), and average 0.
//
// Versions. Pooling is memory-bound (≤ R·S loads and compares per output, no reuse worth a tile);
// on lavapipe the cost is the non-uniform loads (a per-lane loop each) and the per-invocation index
// arithmetic (integer division is scalarised there).
//   Forwards (max, avg, adaptive): v1 only, one invocation per output element.
//   Backwards (max, avg; `version` option, `poolBackwardVersions` lists what applies):
//     v1  one invocation per input element, looping over the windows that can contain it
//         (⌈k_eff/stride⌉ per axis): per pixel ~8 integer divisions to find them, and each window's
//         dY (and argmax) is loaded again by every pixel it covers.
//     v2  one invocation per stride cell (sh×sw pixels, which share their candidate windows): each
//         window's dY/argmax is loaded once per cell, the divisions are paid once per cell, and a
//         row of the cell is one vec4 compare+select per window (see "backward v2" below). Default
//         where it applies: stride ≤ 4 and ≤ 16 candidate windows per cell (all VGG/ResNet pools;
//         not e.g. 5×5/1). Same terms in the same order as v1: bit-identical results.
//   globalAvgPool forward has two: v1 one invocation per (n,c) plane looping over H·W; v2 one
//   64-lane workgroup per plane, lanes striding the plane (coalesced on a real GPU), then a
//   shared-memory tree sum: the version for few planes with large H·W (1×64×112×112), where v1
//   leaves a GPU idle. On lavapipe barriers are expensive and v1 wins everywhere, so v2 is the
//   default only for < 128 planes of ≥ 4096 pixels (where it costs lavapipe ≤ 1 ms).
//   Adaptive and global backwards: v1 only.
//   Measured on lavapipe (llvmpipe, 2 vCPUs shared with other jobs, load average 2–4 during the runs:
//   numbers vary ±2× between runs; read the ratios). GB/s of compulsory traffic (max: dY + argmax
//   read, dX written; avg: dY read, dX written), gpu-timestamp medians, v1 and v2 interleaved in one
//   process (a scratch script calling maxPool2dBackward / avgPool2dBackward with `version`):
//                                          max bwd v1        max bwd v2        avg bwd v1    avg bwd v2
//     [2,64,56,56] 2×2/2 (VGG features.4)  10.2 ms 0.24      1.50 ms 1.61      8.1 ms 0.25   1.52 ms 1.32
//     [2,512,7,7] 2×2/2 (features.23)      1.25 ms 0.22      0.26 ms 1.04      1.11 ms 0.21  0.27 ms 0.87
//     [2,64,28,28] 3×3/2 p1 (ResNet stem)  3.15 ms 0.19      0.59 ms 1.02      2.43 ms 0.21  0.62 ms 0.81
//     [8,64,112,112] 3×3/2 p1              165 ms 0.23       30.6 ms 1.26      145 ms 0.22   32.8 ms 0.98
//   `wgtrain bench --quick --no-e2e --filter pool` (max pool, default versions), before → after v2:
//     pool.bwd 0.17–0.23 GB/s → 0.8–1.6 GB/s (2.6–10× per case; ResNet34 maxpool 3.3 → 0.68 ms);
//     pool.fwd (v1) 0.6–1.3 GB/s.
//   Older runs of the forwards on [8,64,112,112] 3×3/2 pad 1: maxPool2d 40–84 ms (0.5–1.0 GB/s),
//   avgPool2d 33–68 ms; globalAvgPool [8,64,112,112] v1 6–18 ms vs v2 10–24 ms; [32,512,7,7] v1
//   0.9–2.4 ms vs v2 33–66 ms; [1,64,112,112] v1 0.8–1.2 ms vs v2 0.9–2.3 ms.
//   Not tried yet: vec4 stores of whole cell rows (needs W % 4 = 0 and aligned rows), and a v2
//   forward.
//
// Tensors above maxStorageBufferBindingSize are processed in windows of whole planes; each window
// binds from a 256-byte-aligned offset below its first plane and passes the remainder (xo, yo) as
// a uniform, so any plane size works.

import { grid1d, LINEAR_INDEX, memo, type KernelSpec } from '../gpu/kernel.js';
import { Tensor, expectShape, numel, type Shape, assertF32 } from '../gpu/tensor.js';
import type { Binding, Gpu } from '../gpu/device.js';
import type { UniformValues } from '../gpu/uniforms.js';

const WG = 64;

/** argmax of a window that holds no real pixel (only padding): the backward routes nothing there. */
export const NO_ARGMAX = 0xffffffff;

// ---- options and geometry --------------------------------------------------------------------

/** A size per spatial axis: one number for both, or [h, w]. */
export type PoolPair = number | readonly [number, number];
/** Padding: one number for all sides, [h, w] (symmetric), or [top, left, bottom, right] (ONNX order). */
export type PoolPadding = number | readonly [number, number] | readonly [number, number, number, number];

export interface Pool2dOptions {
  /** Window size [R, S]. */
  kernel: PoolPair;
  /** Defaults to the kernel size (PyTorch). */
  stride?: PoolPair;
  padding?: PoolPadding;
  ceilMode?: boolean;
}
export interface MaxPool2dOptions extends Pool2dOptions {
  dilation?: PoolPair;
}
export interface AvgPool2dOptions extends Pool2dOptions {
  /** Divide by the padded window size (true, PyTorch's default) or by the real pixels in it. */
  countIncludePad?: boolean;
}

/** Everything a pooling kernel needs, resolved from a shape and options. */
export interface Pool2dGeometry {
  N: number; C: number; H: number; W: number; P: number; Q: number;
  R: number; S: number; sh: number; sw: number; dh: number; dw: number;
  padT: number; padL: number; padB: number; padR: number;
}

const pair = (v: PoolPair): [number, number] => (typeof v === 'number' ? [v, v] : [v[0], v[1]]);

function pads(v: PoolPadding): [number, number, number, number] {
  if (typeof v === 'number') return [v, v, v, v];
  if (v.length === 2) return [v[0], v[1], v[0], v[1]];
  return [v[0], v[1], v[2], v[3]];
}

/**
 * Pooled length of one axis (PyTorch `pooling_output_shape`, generalised to asymmetric pads).
 * `padBefore` is the top/left pad, `padAfter` the bottom/right one.
 */
export function poolOutputSize(size: number, k: number, stride: number, padBefore: number, padAfter: number, dil: number, ceilMode: boolean): number {
  const span = size + padBefore + padAfter - dil * (k - 1) - 1;
  let out = (ceilMode ? Math.ceil(span / stride) : Math.floor(span / stride)) + 1;
  // NOTE: the last window must start inside the input or the left padding (see header).
  if (ceilMode && (out - 1) * stride >= size + padBefore) out--;
  return out;
}

/** Resolves shapes and options into kernel geometry; throws on impossible settings. */
export function pool2dGeometry(xShape: Shape, opts: MaxPool2dOptions): Pool2dGeometry {
  if (xShape.length !== 4) throw new Error(`pool2d: expected an NCHW input, got shape [${xShape.join(', ')}]`);
  const [N, C, H, W] = xShape as [number, number, number, number];
  const [R, S] = pair(opts.kernel);
  const [sh, sw] = pair(opts.stride ?? opts.kernel);
  const [dh, dw] = pair(opts.dilation ?? 1);
  const [padT, padL, padB, padR] = pads(opts.padding ?? 0);
  const ints = { R, S, sh, sw, dh, dw };
  for (const [k, v] of Object.entries(ints)) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`pool2d: ${k} must be a positive integer, got ${v}`);
  }
  for (const v of [padT, padL, padB, padR]) {
    if (!Number.isInteger(v) || v < 0) throw new Error(`pool2d: padding must be non-negative integers, got [${[padT, padL, padB, padR].join(', ')}]`);
  }
  const ceil = opts.ceilMode ?? false;
  const P = poolOutputSize(H, R, sh, padT, padB, dh, ceil);
  const Q = poolOutputSize(W, S, sw, padL, padR, dw, ceil);
  if (P < 1 || Q < 1) {
    throw new Error(`pool2d: a ${R}×${S} window (dilation ${dh}×${dw}) does not fit a ${H}×${W} input with padding [${[padT, padL, padB, padR].join(', ')}]`);
  }
  return { N, C, H, W, P, Q, R, S, sh, sw, dh, dw, padT, padL, padB, padR };
}

// ---- uniforms, windows, launch ---------------------------------------------------------------

// One uniform layout for every pooling kernel (each reads the fields it needs).
//   n: items in this dispatch; xo / yo: element offset of the window's first plane inside the bound
//   x-side / y-side buffers; flag: countIncludePad; empty: the max of a window with no real pixel.
const POOL_U = {
  n: 'u32', H: 'u32', W: 'u32', P: 'u32', Q: 'u32', R: 'u32', S: 'u32', sh: 'u32', sw: 'u32',
  dh: 'u32', dw: 'u32', padT: 'u32', padL: 'u32', padB: 'u32', padR: 'u32', flag: 'u32',
  xo: 'u32', yo: 'u32', empty: 'f32',
  // Backward v2 only: the grid of sh×sw input cells is A×B per plane, starting at cell (a0, b0).
  A: 'u32', B: 'u32', a0: 'u32', b0: 'u32',
} as const;
type PoolU = typeof POOL_U;
type PoolValues = UniformValues<PoolU>;

function values(g: Pool2dGeometry, flag = 0): Omit<PoolValues, 'n' | 'xo' | 'yo'> {
  return {
    H: g.H, W: g.W, P: g.P, Q: g.Q, R: g.R, S: g.S, sh: g.sh, sw: g.sw, dh: g.dh, dw: g.dw,
    padT: g.padT, padL: g.padL, padB: g.padB, padR: g.padR, flag, empty: -Infinity, A: 0, B: 0, a0: 0, b0: 0,
  };
}

/** Test hook: caps the binding size used to split tensors into windows (0: the adapter's limit). */
export const poolTesting = { maxBindingBytes: 0 };

interface PlaneWindow { start: number; count: number }

/**
 * Splits `planes` planes into windows such that, for every tensor (given by its plane size in
 * elements), the planes of a window plus up to one alignment's worth of lead-in fit one binding.
 */
function planeWindows(gpu: Gpu, planes: number, planeSizes: readonly number[]): PlaneWindow[] {
  const align = Number(gpu.limits.minStorageBufferOffsetAlignment) / 4;
  const limit = Math.floor((poolTesting.maxBindingBytes || gpu.maxBinding) / 4);
  const biggest = Math.max(...planeSizes);
  if (planes * biggest <= limit) return [{ start: 0, count: planes }];
  const per = Math.floor((limit - align) / biggest);
  if (per < 1) throw new Error(`pool2d: one ${biggest}-element plane exceeds the storage binding limit`);
  const out: PlaneWindow[] = [];
  for (let s = 0; s < planes; s += per) out.push({ start: s, count: Math.min(per, planes - s) });
  return out;
}

/** Binding covering planes [w.start, w.start + w.count) of `t`, and the first plane's offset in it. */
function bindPlanes(t: Tensor, planeSize: number, w: PlaneWindow, align: number): [Binding, number] {
  const first = w.start * planeSize;
  const base = Math.floor(first / align) * align;
  const end = (w.start + w.count) * planeSize;
  return [{ buffer: t.buffer, offset: base * 4, size: Math.max(4, (end - base) * 4) }, first - base];
}

/**
 * Runs `k` over all planes, window by window. `xSide` tensors have plane size `xPlane`, `ySide`
 * ones `yPlane`; the bindings are passed in the order x-side then y-side (kernels declare them so).
 * `items(count)` is the number of invocations for `count` planes; `groups` maps it to a grid.
 */
function launch(
  k: KernelSpec<PoolU>, label: string, planes: number,
  xSide: readonly Tensor[], xPlane: number, ySide: readonly Tensor[], yPlane: number,
  u: Omit<PoolValues, 'n' | 'xo' | 'yo'>, items: (count: number) => number,
  groups: (n: number) => [number, number, number] = (n) => grid1d(n, WG),
) {
  const gpu = (xSide[0] ?? ySide[0])!.gpu;
  const align = Number(gpu.limits.minStorageBufferOffsetAlignment) / 4;
  for (const w of planeWindows(gpu, planes, [xPlane, yPlane])) {
    const bx = xSide.map((t) => bindPlanes(t, xPlane, w, align));
    const by = ySide.map((t) => bindPlanes(t, yPlane, w, align));
    const n = items(w.count);
    const vals: PoolValues = { ...u, n, xo: bx[0]?.[1] ?? 0, yo: by[0]?.[1] ?? 0 };
    gpu.run(k, [...bx.map((b) => b[0]), ...by.map((b) => b[0])], vals, groups(n), label);
  }
}

/** WGSL: decode output index o into (plane, p, q). */
const DECODE_OUT = /* wgsl */ `
  let q = o % u.Q;
  let p = (o / u.Q) % u.P;
  let plane = o / (u.Q * u.P);`;

/** WGSL: decode input index i into (plane, h, w). */
const DECODE_IN = /* wgsl */ `
  let w = i % u.W;
  let h = (i / u.W) % u.H;
  let plane = i / (u.W * u.H);`;

const MAIN = (body: string) => /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
${body}
}`;

const outShape = (g: Pool2dGeometry): Shape => [g.N, g.C, g.P, g.Q];

// ---- max pooling -----------------------------------------------------------------------------

const maxFwdKernel: KernelSpec<PoolU> = {
  name: 'maxPool2d.fwd.v1', key: 'maxPool2d.fwd.v1',
  uniforms: POOL_U,
  bindings: [{ name: 'x', access: 'read' }, { name: 'y', access: 'read_write' }, { name: 'argmax', access: 'read_write', type: 'u32' }],
  workgroupSize: [WG, 1, 1],
  body: MAIN(/* wgsl */ `
  let o = ${LINEAR_INDEX};
  if (o >= u.n) { return; }
  ${DECODE_OUT}
  let h0 = i32(p * u.sh) - i32(u.padT);
  let w0 = i32(q * u.sw) - i32(u.padL);
  let xb = u.xo + plane * u.H * u.W;
  var best = u.empty;
  var arg = ${NO_ARGMAX}u;
  for (var r = 0u; r < u.R; r++) {
    let h = h0 + i32(r * u.dh);
    if (h < 0 || h >= i32(u.H)) { continue; }
    for (var s = 0u; s < u.S; s++) {
      let w = w0 + i32(s * u.dw);
      if (w < 0 || w >= i32(u.W)) { continue; }
      let idx = u32(h) * u.W + u32(w);
      let v = x[xb + idx];
      // NOTE: strict > keeps the first max in scan order (PyTorch's tie rule); the first real pixel
      // is always taken, so a window of −∞ values still gets a valid argmax.
      if (arg == ${NO_ARGMAX}u || v > best) { best = v; arg = idx; }
    }
  }
  y[u.yo + o] = best;
  argmax[u.yo + o] = arg;`),
};

export interface MaxPool2dResult {
  /** [N,C,P,Q] */
  y: Tensor;
  /** [N,C,P,Q], u32 (not f32!) flat index h·W + w within the (n,c) plane; NO_ARGMAX if none. */
  argmax: Tensor;
}

/** Max pooling; also returns the argmax the backward needs. */
export function maxPool2d(x: Tensor, opts: MaxPool2dOptions): MaxPool2dResult {
  assertF32('maxPool2d', x);
  const g = pool2dGeometry(x.shape, opts);
  const y = Tensor.empty(x.gpu, outShape(g)), argmax = Tensor.empty(x.gpu, outShape(g), 'argmax');
  const PQ = g.P * g.Q;
  launch(maxFwdKernel, 'maxPool2d', g.N * g.C, [x], g.H * g.W, [y, argmax], PQ, values(g), (c) => c * PQ);
  return { y, argmax };
}

const maxBwdKernel: KernelSpec<PoolU> = {
  name: 'maxPool2d.bwd.v1', key: 'maxPool2d.bwd.v1',
  uniforms: POOL_U,
  bindings: [{ name: 'dx', access: 'read_write' }, { name: 'dy', access: 'read' }, { name: 'argmax', access: 'read', type: 'u32' }],
  workgroupSize: [WG, 1, 1],
  body: MAIN(/* wgsl */ `
  let i = ${LINEAR_INDEX};
  if (i >= u.n) { return; }
  ${DECODE_IN}
  let me = h * u.W + w;
  // Window p spans rows [p·sh − padT, p·sh − padT + kh) with kh = dh·(R−1) + 1, so the windows that
  // can hold h are ⌈(h + padT − kh + 1)/sh⌉ ≤ p ≤ ⌊(h + padT)/sh⌋. NOTE: we do not work out which tap
  // (r,s) lands on h (with dilation, h may fall between taps): argmax == me already implies that
  // (h,w) was a tap of that window, so a per-tap divisibility test would be wasted work.
  let kh = u.dh * (u.R - 1u) + 1u;
  let kw = u.dw * (u.S - 1u) + 1u;
  let hp = h + u.padT;
  let wp = w + u.padL;
  let p0 = select(0u, (hp + 1u - kh + u.sh - 1u) / u.sh, hp + 1u > kh);
  let q0 = select(0u, (wp + 1u - kw + u.sw - 1u) / u.sw, wp + 1u > kw);
  let p1 = min(hp / u.sh + 1u, u.P);
  let q1 = min(wp / u.sw + 1u, u.Q);
  let yb = u.yo + plane * u.P * u.Q;
  var acc = 0.0;
  for (var p = p0; p < p1; p++) {
    for (var q = q0; q < q1; q++) {
      let o = yb + p * u.Q + q;
      if (argmax[o] == me) { acc += dy[o]; }
    }
  }
  dx[u.xo + i] = acc;`),
};

// ---- backward v2: one invocation per stride cell ---------------------------------------------
//
// The input plane (with its top/left padding) is cut into cells of sh×sw pixels: cell (a,b) holds
// padded rows hp ∈ [a·sh, a·sh + sh) and columns wp ∈ [b·sw, b·sw + sw), i.e. h = hp − padT. Every
// pixel of a cell is covered by the same candidate windows:
//   window p holds hp iff p·sh ≤ hp ≤ p·sh + kh − 1, so over the cell  a − ⌊(kh−1)/sh⌋ ≤ p ≤ a,
// CH = ⌊(kh−1)/sh⌋ + 1 windows per axis (2×2/2: 1; 3×3/2: 2; 3×3/1: 3), CW likewise. One invocation
// loads each candidate window's dY (and argmax) ONCE and adds it to the cell's sh×sw pixels, where v1
// loads them once per pixel and spends ~8 integer divisions per pixel finding its windows (lavapipe
// scalarises integer division). Each row of the cell is a vec4 accumulator (sw ≤ 4): a window's
// contribution to a row is one vector compare + select. The loop bounds SH, SW, CH, CW are WGSL
// constants (one pipeline per stride/window shape), so the loops unroll and acc stays in registers.
// The sum over windows runs in v1's order (p, then q ascending): v1 and v2 agree bit for bit.

/** Compile-time shape of a v2 backward: cell size (the stride) and candidate windows per axis. */
interface CellDims { SH: number; SW: number; CH: number; CW: number }

function cellDims(g: Pool2dGeometry): CellDims {
  const kh = g.dh * (g.R - 1) + 1, kw = g.dw * (g.S - 1) + 1;
  return { SH: g.sh, SW: g.sw, CH: Math.floor((kh - 1) / g.sh) + 1, CW: Math.floor((kw - 1) / g.sw) + 1 };
}

/** v2 needs a cell row to fit a vec4 and a bounded unroll; other settings run v1. */
const cellFits = (d: CellDims) => d.SW <= 4 && d.SH <= 4 && d.CH * d.CW <= 16;

/** Backward kernel versions (1: per-input gather, 2: per-cell gather; see the header). */
export type PoolBackwardVersion = 1 | 2;
export interface PoolBackwardOptions {
  /** Default: 2 where it applies (stride ≤ 4 and ≤ 16 windows per cell, all common layers), else 1. */
  version?: PoolBackwardVersion;
}

/** The backward versions that can run these settings (for an autotuner); the default is the last. */
export function poolBackwardVersions(xShape: Shape, opts: MaxPool2dOptions): PoolBackwardVersion[] {
  return cellFits(cellDims(pool2dGeometry(xShape, opts))) ? [1, 2] : [1];
}

function pickBackwardVersion(g: Pool2dGeometry, v: PoolBackwardVersion | undefined, op: string): PoolBackwardVersion {
  const fits = cellFits(cellDims(g));
  if (v === 2 && !fits) throw new Error(`${op}: version 2 needs stride ≤ 4 and ≤ 16 candidate windows per cell (stride ${g.sh}×${g.sw}, window ${g.R}×${g.S})`);
  return v ?? (fits ? 2 : 1);
}

/** Uniforms of a v2 launch: the cell grid of each plane, skipping cells that lie wholly in the top/left padding. */
function cellValues(g: Pool2dGeometry, flag = 0): Omit<PoolValues, 'n' | 'xo' | 'yo'> {
  const a0 = Math.floor(g.padT / g.sh), b0 = Math.floor(g.padL / g.sw);
  const A = Math.ceil((g.H + g.padT) / g.sh) - a0, B = Math.ceil((g.W + g.padL) / g.sw) - b0;
  return { ...values(g, flag), A, B, a0, b0 };
}

/**
 * WGSL of a v2 backward. `perWindow` adds window (p,q)'s contribution to `acc` (it sees o, the
 * window's index in dy; p, q as i32; hc, wc, the cell's first pixel; cols = wc + (0,1,2,3)).
 */
function cellKernelBody(d: CellDims, perWindow: string, prelude = ''): string {
  return prelude + /* wgsl */ `
const SH = ${d.SH}; const SW = ${d.SW}; const CH = ${d.CH}; const CW = ${d.CW};
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let c = ${LINEAR_INDEX};
  if (c >= u.n) { return; }
  let b = i32(c % u.B + u.b0);
  let a = i32((c / u.B) % u.A + u.a0);
  let plane = c / (u.A * u.B);
  let hc = a * SH - i32(u.padT);
  let wc = b * SW - i32(u.padL);
  let cols = vec4i(0, 1, 2, 3) + wc;
  let yb = u.yo + plane * u.P * u.Q;
  var acc: array<vec4f, SH>;
  for (var i = 0; i < CH; i++) {
    let p = a - (CH - 1) + i;
    if (p < 0 || p >= i32(u.P)) { continue; }
    for (var j = 0; j < CW; j++) {
      let q = b - (CW - 1) + j;
      if (q < 0 || q >= i32(u.Q)) { continue; }
      let o = yb + u32(p) * u.Q + u32(q);
${perWindow}
    }
  }
  let xb = u.xo + plane * u.H * u.W;
  for (var r = 0; r < SH; r++) {
    let h = hc + r;
    if (h < 0 || h >= i32(u.H)) { continue; }
    for (var s = 0; s < SW; s++) {
      let w = wc + s;
      if (w >= 0 && w < i32(u.W)) { dx[xb + u32(h) * u.W + u32(w)] = acc[r][s]; }
    }
  }
}`;
}

const maxBwdV2 = memo((d: CellDims) => `${d.SH}.${d.SW}.${d.CH}.${d.CW}`, (d: CellDims): KernelSpec<PoolU> => ({
  name: 'maxPool2d.bwd.v2', key: `maxPool2d.bwd.v2.${d.SH}x${d.SW}.${d.CH}x${d.CW}`,
  uniforms: POOL_U,
  bindings: [{ name: 'dx', access: 'read_write' }, { name: 'dy', access: 'read' }, { name: 'argmax', access: 'read', type: 'u32' }],
  workgroupSize: [WG, 1, 1],
  // NOTE: a cell column past the right edge (w ≥ W) computes the flat index of a pixel on the next
  // row and may match its argmax; such columns (and rows outside the input) are never stored.
  // NO_ARGMAX is −1 as an i32 and matches only such discarded positions.
  body: cellKernelBody(d, /* wgsl */ `
      let am = vec4i(bitcast<i32>(argmax[o]));
      let g = vec4f(dy[o]);
      for (var r = 0; r < SH; r++) {
        acc[r] += select(vec4f(0.0), g, (hc + r) * i32(u.W) + cols == am);
      }`),
}));

/**
 * dX [N,C,H,W] from dY [N,C,P,Q] and the forward's argmax: each dY goes to the input that won its
 * window. `opts` must be the forward's options (they say which windows can contain an input).
 */
export function maxPool2dBackward(dY: Tensor, argmax: Tensor, xShape: Shape, opts: MaxPool2dOptions & PoolBackwardOptions): Tensor {
  assertF32('maxPool2dBackward', dY);
  const g = pool2dGeometry(xShape, opts);
  expectShape('maxPool2dBackward dY', dY, outShape(g));
  expectShape('maxPool2dBackward argmax', argmax, outShape(g));
  const dX = Tensor.empty(dY.gpu, xShape);
  const HW = g.H * g.W;
  if (pickBackwardVersion(g, opts.version, 'maxPool2dBackward') === 2) {
    const u = cellValues(g);
    launch(maxBwdV2(cellDims(g)), 'maxPool2d.bwd', g.N * g.C, [dX], HW, [dY, argmax], g.P * g.Q, u, (c) => c * u.A * u.B);
  } else {
    launch(maxBwdKernel, 'maxPool2d.bwd', g.N * g.C, [dX], HW, [dY, argmax], g.P * g.Q, values(g), (c) => c * HW);
  }
  return dX;
}

// ---- average pooling -------------------------------------------------------------------------

/** WGSL: the average divisor of window (p,q) (see header); 0 when the window has no real pixel. */
const AVG_DIVISOR = /* wgsl */ `
fn window(p: u32, q: u32) -> vec4i {
  // Real-pixel bounds [hs, he) × [ws, we) of the window, clipped to the input.
  let h0 = i32(p * u.sh) - i32(u.padT);
  let w0 = i32(q * u.sw) - i32(u.padL);
  return vec4i(max(h0, 0), min(h0 + i32(u.R), i32(u.H)), max(w0, 0), min(w0 + i32(u.S), i32(u.W)));
}
fn divisor(p: u32, q: u32) -> f32 {
  let h0 = i32(p * u.sh) - i32(u.padT);
  let w0 = i32(q * u.sw) - i32(u.padL);
  if (u.flag == 1u) {
    // NOTE: clipped to the padded border, not beyond it (ceil mode can overhang it).
    let h1 = min(h0 + i32(u.R), i32(u.H + u.padB));
    let w1 = min(w0 + i32(u.S), i32(u.W + u.padR));
    return f32((h1 - h0) * (w1 - w0));
  }
  let b = window(p, q);
  return f32(max(b.y - b.x, 0) * max(b.w - b.z, 0));
}`;

const avgFwdKernel: KernelSpec<PoolU> = {
  name: 'avgPool2d.fwd.v1', key: 'avgPool2d.fwd.v1',
  uniforms: POOL_U,
  bindings: [{ name: 'x', access: 'read' }, { name: 'y', access: 'read_write' }],
  workgroupSize: [WG, 1, 1],
  body: AVG_DIVISOR + MAIN(/* wgsl */ `
  let o = ${LINEAR_INDEX};
  if (o >= u.n) { return; }
  ${DECODE_OUT}
  let b = window(p, q);
  let xb = i32(u.xo + plane * u.H * u.W);
  var acc = 0.0;
  for (var h = b.x; h < b.y; h++) {
    for (var w = b.z; w < b.w; w++) { acc += x[xb + h * i32(u.W) + w]; }
  }
  let d = divisor(p, q);
  y[u.yo + o] = select(0.0, acc / d, d > 0.0);`),
};

/** Average pooling (no dilation, as PyTorch). */
export function avgPool2d(x: Tensor, opts: AvgPool2dOptions): Tensor {
  assertF32('avgPool2d', x);
  const g = avgGeometry(x.shape, opts);
  const y = Tensor.empty(x.gpu, outShape(g));
  const PQ = g.P * g.Q;
  launch(avgFwdKernel, 'avgPool2d', g.N * g.C, [x], g.H * g.W, [y], PQ, values(g, avgFlag(opts)), (c) => c * PQ);
  return y;
}

const avgBwdKernel: KernelSpec<PoolU> = {
  name: 'avgPool2d.bwd.v1', key: 'avgPool2d.bwd.v1',
  uniforms: POOL_U,
  bindings: [{ name: 'dx', access: 'read_write' }, { name: 'dy', access: 'read' }],
  workgroupSize: [WG, 1, 1],
  body: AVG_DIVISOR + MAIN(/* wgsl */ `
  let i = ${LINEAR_INDEX};
  if (i >= u.n) { return; }
  ${DECODE_IN}
  // Window p covers rows [p·sh − padT, p·sh − padT + R), so it holds h iff
  // ⌈(h + padT − R + 1)/sh⌉ ≤ p ≤ ⌊(h + padT)/sh⌋. (The padded-border clip never excludes a real row.)
  let hp = h + u.padT;
  let wp = w + u.padL;
  let p0 = select(0u, (hp + 1u - u.R + u.sh - 1u) / u.sh, hp + 1u > u.R);
  let q0 = select(0u, (wp + 1u - u.S + u.sw - 1u) / u.sw, wp + 1u > u.S);
  let p1 = min(hp / u.sh + 1u, u.P);
  let q1 = min(wp / u.sw + 1u, u.Q);
  let yb = u.yo + plane * u.P * u.Q;
  var acc = 0.0;
  for (var p = p0; p < p1; p++) {
    for (var q = q0; q < q1; q++) { acc += dy[yb + p * u.Q + q] / divisor(p, q); }
  }
  dx[u.xo + i] = acc;`),
};

// v2: one invocation per stride cell (see the max-pool v2 above).
const avgBwdV2 = memo((d: CellDims) => `${d.SH}.${d.SW}.${d.CH}.${d.CW}`, (d: CellDims): KernelSpec<PoolU> => ({
  name: 'avgPool2d.bwd.v2', key: `avgPool2d.bwd.v2.${d.SH}x${d.SW}.${d.CH}x${d.CW}`,
  uniforms: POOL_U,
  bindings: [{ name: 'dx', access: 'read_write' }, { name: 'dy', access: 'read' }],
  workgroupSize: [WG, 1, 1],
  // Window (p,q) covers rows [h0, h0 + R) and columns [w0, w0 + S). NOTE: a window with divisor 0
  // (no real pixel, countIncludePad off) gives g = ±∞ or NaN, but it covers no real pixel, so the
  // select never takes it for a pixel that is stored.
  body: cellKernelBody(d, /* wgsl */ `
      let g = vec4f(dy[o] / divisor(u32(p), u32(q)));
      let h0 = p * i32(u.sh) - i32(u.padT);
      let w0 = q * i32(u.sw) - i32(u.padL);
      let inCols = (cols >= vec4i(w0)) & (cols < vec4i(w0 + i32(u.S)));
      for (var r = 0; r < SH; r++) {
        let inRow = hc + r >= h0 && hc + r < h0 + i32(u.R);
        acc[r] += select(vec4f(0.0), g, inCols & vec4<bool>(inRow));
      }`, AVG_DIVISOR),
}));

/** dX [N,C,H,W] = each dY [N,C,P,Q] spread evenly (÷ divisor) over its window. `opts` as forward. */
export function avgPool2dBackward(dY: Tensor, xShape: Shape, opts: AvgPool2dOptions & PoolBackwardOptions): Tensor {
  assertF32('avgPool2dBackward', dY);
  const g = avgGeometry(xShape, opts);
  expectShape('avgPool2dBackward dY', dY, outShape(g));
  const dX = Tensor.empty(dY.gpu, xShape);
  const HW = g.H * g.W;
  if (pickBackwardVersion(g, opts.version, 'avgPool2dBackward') === 2) {
    const u = cellValues(g, avgFlag(opts));
    launch(avgBwdV2(cellDims(g)), 'avgPool2d.bwd', g.N * g.C, [dX], HW, [dY], g.P * g.Q, u, (c) => c * u.A * u.B);
  } else {
    launch(avgBwdKernel, 'avgPool2d.bwd', g.N * g.C, [dX], HW, [dY], g.P * g.Q, values(g, avgFlag(opts)), (c) => c * HW);
  }
  return dX;
}

function avgGeometry(xShape: Shape, opts: AvgPool2dOptions): Pool2dGeometry {
  const dil = (opts as MaxPool2dOptions).dilation;
  if (dil !== undefined && pair(dil).some((d) => d !== 1)) throw new Error('avgPool2d: dilation is not supported (nor by PyTorch)');
  return pool2dGeometry(xShape, opts);
}
const avgFlag = (opts: AvgPool2dOptions) => (opts.countIncludePad ?? true ? 1 : 0);

// ---- adaptive average pooling ----------------------------------------------------------------

/** WGSL: PyTorch's adaptive bin [start, end) of output index i of n over an input of size len. */
const ADAPTIVE_BIN = /* wgsl */ `
fn binStart(i: u32, n: u32, len: u32) -> u32 { return (i * len) / n; }
fn binEnd(i: u32, n: u32, len: u32) -> u32 { return ((i + 1u) * len + n - 1u) / n; }`;

const adaptiveFwdKernel: KernelSpec<PoolU> = {
  name: 'adaptiveAvgPool2d.fwd.v1', key: 'adaptiveAvgPool2d.fwd.v1',
  uniforms: POOL_U,
  bindings: [{ name: 'x', access: 'read' }, { name: 'y', access: 'read_write' }],
  workgroupSize: [WG, 1, 1],
  body: ADAPTIVE_BIN + MAIN(/* wgsl */ `
  let o = ${LINEAR_INDEX};
  if (o >= u.n) { return; }
  ${DECODE_OUT}
  let hs = binStart(p, u.P, u.H); let he = binEnd(p, u.P, u.H);
  let ws = binStart(q, u.Q, u.W); let we = binEnd(q, u.Q, u.W);
  let xb = u.xo + plane * u.H * u.W;
  var acc = 0.0;
  for (var h = hs; h < he; h++) {
    for (var w = ws; w < we; w++) { acc += x[xb + h * u.W + w]; }
  }
  y[u.yo + o] = acc / f32((he - hs) * (we - ws));`),
};

const adaptiveBwdKernel: KernelSpec<PoolU> = {
  name: 'adaptiveAvgPool2d.bwd.v1', key: 'adaptiveAvgPool2d.bwd.v1',
  uniforms: POOL_U,
  bindings: [{ name: 'dx', access: 'read_write' }, { name: 'dy', access: 'read' }],
  workgroupSize: [WG, 1, 1],
  body: ADAPTIVE_BIN + MAIN(/* wgsl */ `
  let i = ${LINEAR_INDEX};
  if (i >= u.n) { return; }
  ${DECODE_IN}
  // Bins holding row h: ⌊h·P/H⌋ ≤ p < ⌈(h+1)·P/H⌉ (checked again below, to be safe at the edges).
  let p0 = (h * u.P) / u.H; let p1 = min(((h + 1u) * u.P + u.H - 1u) / u.H, u.P);
  let q0 = (w * u.Q) / u.W; let q1 = min(((w + 1u) * u.Q + u.W - 1u) / u.W, u.Q);
  let yb = u.yo + plane * u.P * u.Q;
  var acc = 0.0;
  for (var p = p0; p < p1; p++) {
    let hs = binStart(p, u.P, u.H); let he = binEnd(p, u.P, u.H);
    if (h < hs || h >= he) { continue; }
    for (var q = q0; q < q1; q++) {
      let ws = binStart(q, u.Q, u.W); let we = binEnd(q, u.Q, u.W);
      if (w < ws || w >= we) { continue; }
      acc += dy[yb + p * u.Q + q] / f32((he - hs) * (we - ws));
    }
  }
  dx[u.xo + i] = acc;`),
};

function adaptiveValues(N: number, C: number, H: number, W: number, P: number, Q: number) {
  return values({ N, C, H, W, P, Q, R: 1, S: 1, sh: 1, sw: 1, dh: 1, dw: 1, padT: 0, padL: 0, padB: 0, padR: 0 });
}

/** Adaptive average pooling to [outH, outW] with PyTorch's bins (output may be larger than input). */
export function adaptiveAvgPool2d(x: Tensor, out: PoolPair): Tensor {
  assertF32('adaptiveAvgPool2d', x);
  if (x.shape.length !== 4) throw new Error(`adaptiveAvgPool2d: expected an NCHW input, got [${x.shape.join(', ')}]`);
  const [N, C, H, W] = x.shape as [number, number, number, number];
  const [P, Q] = pair(out);
  if (![P, Q].every((v) => Number.isInteger(v) && v >= 1)) throw new Error(`adaptiveAvgPool2d: bad output size [${P}, ${Q}]`);
  if (H < 1 || W < 1) throw new Error('adaptiveAvgPool2d: empty input plane');
  const y = Tensor.empty(x.gpu, [N, C, P, Q]);
  launch(adaptiveFwdKernel, 'adaptiveAvgPool2d', N * C, [x], H * W, [y], P * Q, adaptiveValues(N, C, H, W, P, Q), (c) => c * P * Q);
  return y;
}

/** dX [N,C,H,W] from dY [N,C,P,Q] (the output size is read from dY). */
export function adaptiveAvgPool2dBackward(dY: Tensor, xShape: Shape): Tensor {
  assertF32('adaptiveAvgPool2dBackward', dY);
  if (xShape.length !== 4 || dY.shape.length !== 4) throw new Error('adaptiveAvgPool2dBackward: expected NCHW shapes');
  const [N, C, H, W] = xShape as [number, number, number, number];
  const [P, Q] = [dY.shape[2]!, dY.shape[3]!];
  expectShape('adaptiveAvgPool2dBackward dY', dY, [N, C, P, Q]);
  const dX = Tensor.empty(dY.gpu, xShape);
  launch(adaptiveBwdKernel, 'adaptiveAvgPool2d.bwd', N * C, [dX], H * W, [dY], P * Q, adaptiveValues(N, C, H, W, P, Q), (c) => c * H * W);
  return dX;
}

// ---- global average pooling ------------------------------------------------------------------

// v1: one invocation per plane; u.n = planes, plane size in u.H (= H·W), u.W = 1.
const globalFwdV1: KernelSpec<PoolU> = {
  name: 'globalAvgPool.fwd.v1', key: 'globalAvgPool.fwd.v1',
  uniforms: POOL_U,
  bindings: [{ name: 'x', access: 'read' }, { name: 'y', access: 'read_write' }],
  workgroupSize: [WG, 1, 1],
  body: MAIN(/* wgsl */ `
  let plane = ${LINEAR_INDEX};
  if (plane >= u.n) { return; }
  let xb = u.xo + plane * u.H;
  var acc = 0.0;
  for (var j = 0u; j < u.H; j++) { acc += x[xb + j]; }
  y[u.yo + plane] = acc / f32(u.H);`),
};

// v2: one workgroup per plane. Lane l sums elements l, l+64, l+128, … (adjacent lanes read adjacent
// addresses: coalesced on a GPU), then a shared-memory tree halves 64 partial sums in 6 steps.
const globalFwdV2: KernelSpec<PoolU> = {
  name: 'globalAvgPool.fwd.v2', key: 'globalAvgPool.fwd.v2',
  uniforms: POOL_U,
  bindings: [{ name: 'x', access: 'read' }, { name: 'y', access: 'read_write' }],
  workgroupSize: [WG, 1, 1],
  body: /* wgsl */ `
var<workgroup> part: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) l: u32, @builtin(num_workgroups) nwg: vec3u) {
  // NOTE: no early return before the barriers (uniform control flow); idle workgroups sum nothing.
  let plane = wid.x + wid.y * nwg.x;
  let live = plane < u.n;
  let xb = u.xo + plane * u.H;
  var acc = 0.0;
  if (live) {
    for (var j = l; j < u.H; j += ${WG}u) { acc += x[xb + j]; }
  }
  part[l] = acc;
  for (var half = ${WG / 2}u; half > 0u; half >>= 1u) {
    workgroupBarrier();
    if (l < half) { part[l] += part[l + half]; }
  }
  if (live && l == 0u) { y[u.yo + plane] = part[0] / f32(u.H); }
}`,
};

export interface GlobalAvgPoolOptions {
  /** 1: invocation per plane; 2: workgroup per plane. Default: 2 for < 128 planes of ≥ 4096 pixels, else 1. */
  version?: 1 | 2;
}

/** y [N,C,1,1] = mean of each H×W plane of x [N,C,H,W]. */
export function globalAvgPool(x: Tensor, opts: GlobalAvgPoolOptions = {}): Tensor {
  assertF32('globalAvgPool', x);
  if (x.shape.length !== 4) throw new Error(`globalAvgPool: expected an NCHW input, got [${x.shape.join(', ')}]`);
  const [N, C, H, W] = x.shape as [number, number, number, number];
  if (H * W < 1) throw new Error('globalAvgPool: empty input plane');
  const y = Tensor.empty(x.gpu, [N, C, 1, 1]);
  const v2 = (opts.version ?? (N * C < 128 && H * W >= 4096 ? 2 : 1)) === 2;
  const u = adaptiveValues(N, C, H * W, 1, 1, 1);
  launch(v2 ? globalFwdV2 : globalFwdV1, 'globalAvgPool', N * C, [x], H * W, [y], 1, u, (c) => c,
    v2 ? (n) => grid1d(n * WG, WG) : undefined);
  return y;
}

const globalBwdKernel: KernelSpec<PoolU> = {
  name: 'globalAvgPool.bwd.v1', key: 'globalAvgPool.bwd.v1',
  uniforms: POOL_U,
  bindings: [{ name: 'dx', access: 'read_write' }, { name: 'dy', access: 'read' }],
  workgroupSize: [WG, 1, 1],
  body: MAIN(/* wgsl */ `
  let i = ${LINEAR_INDEX};
  if (i >= u.n) { return; }
  dx[u.xo + i] = dy[u.yo + i / u.H] / f32(u.H);`),
};

/** dX [N,C,H,W] = dY [N,C,1,1] / (H·W), broadcast over each plane. */
export function globalAvgPoolBackward(dY: Tensor, xShape: Shape): Tensor {
  assertF32('globalAvgPoolBackward', dY);
  if (xShape.length !== 4) throw new Error('globalAvgPoolBackward: expected an NCHW shape');
  const [N, C, H, W] = xShape as [number, number, number, number];
  expectShape('globalAvgPoolBackward dY', dY, [N, C, 1, 1]);
  const dX = Tensor.empty(dY.gpu, xShape);
  const HW = H * W;
  launch(globalBwdKernel, 'globalAvgPool.bwd', N * C, [dX], HW, [dY], 1, adaptiveValues(N, C, HW, 1, 1, 1), (c) => c * HW);
  return dX;
}

/** Reads an argmax tensor (u32 payload) back to the CPU. */
export async function readArgmax(argmax: Tensor): Promise<Uint32Array> {
  argmax.assertLive();
  if (argmax.size === 0) return new Uint32Array(0);
  return new Uint32Array(await argmax.gpu.read(argmax.buffer, 0, numel(argmax.shape) * 4));
}
