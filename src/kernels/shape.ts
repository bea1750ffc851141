// Data movement: concat, transpose, constant pad, slice, and their backwards. Any rank (1–6 after
// merging axes, see below), f32, row-major.
//
// Every op here is an affine index map between two tensors, so they share ONE kernel: a strided copy
// over an iteration box of extents d_0 … d_{r−1}. For each box coordinate c = (c_0, …, c_{r−1}):
//
//   dst[dstBase + Σ_k c_k·ds_k] = valid(c) ? src[srcBase + Σ_k c_k·ss_k] : value
//   valid(c) = (lo_k ≤ c_k < hi_k for every axis k)
//
// with element strides ss (source) and ds (destination), which may be negative (negative slice
// steps). For a row-major shape s, stride_k = Π_{j>k} s_j. The ops, as maps:
//
//   op                   box             ss_k                  ds_k                bases, valid box
//   transpose(x, perm)   y = x[perm]     xStride[perm[k]]      yStride_k           y[c] = x[c∘perm⁻¹]
//   slice(x, start,step) y's shape       step_k·xStride_k      yStride_k           srcBase = Σ start_k·xStride_k
//   pad(x, begin b)      y's shape       xStride_k             yStride_k           srcBase = −Σ b_k·xStride_k,
//                                                                                  lo_k = b_k, hi_k = b_k + xDim_k
//   concat: input j      x_j's shape     x_j's strides         yStride_k           dstBase = off_j·yStride_axis
//   sliceBackward        dY's shape      dY's strides          step_k·xStride_k    into zeros; dstBase = Σ start_k·xStride_k
//
// and the other backwards are the same ops again: transposeBackward = transpose by perm⁻¹,
// padBackward = pad by −pads (a crop; negative pads in the forward become zero-filled borders),
// concatBackward = one slice of dY per input.
//
// NOTE: the slice launcher takes RESOLVED bounds: ONNX/NumPy negative indices and out-of-range
// clamping are the caller's job (`resolveSlice` does ONNX's rules for one axis). With step > 0 the
// slice takes start, start + step, … < end; with step < 0 it takes start, start + step, … > end, so
// a reversed slice down to index 0 inclusive has end = −1 (the only negative value accepted).
// NOTE: pad is 'constant' mode only (ONNX Pad's default, and what torch exports for F.pad/ZeroPad2d);
// pads may be negative (a crop, as ONNX allows).
//
// Launcher, before dispatch:
//   1. Simplify the map: drop axes of extent 1, and merge neighbours k, k+1 that are contiguous in
//      both tensors (ss_k = ss_{k+1}·d_{k+1} and ds_k = ds_{k+1}·d_{k+1}) and fully valid. Concat of
//      NCHW tensors on the channel axis becomes [N, C_j·H·W]; transpose [0,2,3,1] of NCHW stays
//      [N, C, H·W] → [N, H·W, C]. Fewer axes = fewer integer divisions per element (scalarised on
//      lavapipe), and a rank-7 tensor works if its map merges to ≤ 6 axes.
//   2. A map that is one contiguous run in both tensors (concat on axis 0, a slice of leading rows)
//      is a plain buffer copy (copyBufferToBuffer): no shader, no binding limit. So is a map of a
//      few long runs (≤ 256 runs of ≥ 1024 elements: concat on the channel axis is N runs of
//      C_j·H·W per input), one copy per run.
//   3. Otherwise split the box until, for each dispatch, the source elements it reads and the
//      destination elements it writes each fit one storage binding (maxStorageBufferBindingSize;
//      binding offsets rounded down to 256 bytes). The box is halved along the axis that contributes
//      most to the span that does not fit, so a big NCHW tensor splits along N or C, and a 2-D
//      transpose splits into tiles. Tensors below the limit (almost always) take one dispatch.
//   Each dispatch runs one invocation per box element on `grid1d`, so boxes past 65535 workgroups
//   spread over y.
//
// Versions: v1 only: one invocation per output element, with the index decoding unrolled for the
// box's rank (a compile-time constant: one pipeline per rank, with and without the bounds test).
// These ops are memory-bound; on a real GPU a tiled transpose (through workgroup memory, so that
// both the read and the write are coalesced) would be the v2, but lavapipe gains nothing from
// shared-memory tiles (software-adapter.md) and no kernel here is on a hot path of VGG/ResNet.
// Measured on lavapipe (2 shared vCPUs, loaded: ranges over runs), x = [8,64,56,56] (6.4 MB):
//   transpose NCHW→NHWC 9–26 ms (0.6–1.5 GB/s counting read + write), pad H and W by 1 14–34 ms,
//   slice step 2 on H and W 2.2–4.2 ms; concat of two such tensors on C, as buffer copies (step 2)
//   0.7–1.0 ms, against 16 ms through the shader.
//   Again with gpu-timestamp medians of a scratch script, x = [2,64,56,56] (1.6 MB, load average
//   2–3): transpose NCHW→NHWC 3.3–3.7 ms (0.9–1.0 GB/s), pad H and W by 1 3.9–5.4 ms (0.6–0.8).

import { grid1d, LINEAR_INDEX, memo, type KernelSpec } from '../gpu/kernel.js';
import { Tensor, expectShape, numel, type Shape, assertF32 } from '../gpu/tensor.js';
import type { Binding } from '../gpu/device.js';
import type { UniformValues } from '../gpu/uniforms.js';

const WG = 256;
const RANK = 6;
// Buffer copies instead of a shader for at most this many contiguous runs of at least this length.
const MAX_COPY_RUNS = 256;
const MIN_COPY_RUN = 1024;

/** Test hook: caps the binding size used to split a copy into dispatches (0: the adapter's limit). */
export const shapeTesting = { maxBindingBytes: 0 };

/** Row-major element strides: stride_k = Π_{j>k} shape_j. */
export function stridesOf(shape: Shape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let k = shape.length - 1; k >= 0; k--) { s[k] = acc; acc *= shape[k]!; }
  return s;
}

const fmt = (s: readonly number[]) => `[${s.join(', ')}]`;

// ---- the map and its kernel ------------------------------------------------------------------

/** One axis of an iteration box (see the header's formula). */
interface Axis {
  /** extent d_k */
  d: number;
  /** source / destination element strides (signed) */
  ss: number;
  ds: number;
  /** valid coordinates lo ≤ c < hi; the rest of the box writes `value` */
  lo: number;
  hi: number;
}

interface MoveMap { axes: Axis[]; srcBase: number; dstBase: number; value: number }

type AxisField = 'd' | 'lo' | 'hi' | 'ss' | 'ds';
type K6 = 0 | 1 | 2 | 3 | 4 | 5;
type MoveU = Record<'n' | `${'d' | 'lo' | 'hi'}${K6}`, 'u32'> & Record<`${'ss' | 'ds'}${K6}` | 'srcBase' | 'dstBase', 'i32'> & { value: 'f32' };

const AXIS_TYPES: Record<AxisField, 'u32' | 'i32'> = { d: 'u32', lo: 'u32', hi: 'u32', ss: 'i32', ds: 'i32' };
const MOVE_U = Object.fromEntries([
  ['n', 'u32'],
  ...(Object.keys(AXIS_TYPES) as AxisField[]).flatMap((f) => [0, 1, 2, 3, 4, 5].map((k) => [`${f}${k}`, AXIS_TYPES[f]])),
  ['srcBase', 'i32'], ['dstBase', 'i32'], ['value', 'f32'],
]) as MoveU;

/**
 * The strided copy for a box of rank r (axes in uniform slots 0..r−1, outermost first). The flat
 * invocation index o is decoded innermost axis first: c_k = (o / Π_{j>k} d_j) mod d_k, accumulating
 * both element indices as it goes. `checked` adds the bounds test (pad); plain copies skip it.
 */
const moveKernel = memo((r: number, checked: boolean) => `${r}.${checked}`, (r: number, checked: boolean): KernelSpec<MoveU> => {
  const axis = (k: number) => [
    // NOTE: the outermost coordinate needs no modulo: o < n = Π d, so what is left of o is < d_0.
    k === 0 ? '  c = rest;                                  // axis 0' : `  c = rest % u.d${k}; rest = rest / u.d${k};   // axis ${k}`,
    `  si += i32(c) * u.ss${k}; di += i32(c) * u.ds${k};`,
    checked ? `  inside = inside && c >= u.lo${k} && c < u.hi${k};` : '',
  ].filter(Boolean).join('\n');
  const decode = Array.from({ length: r }, (_, i) => axis(r - 1 - i)).join('\n');
  return {
    name: 'move.v1', key: `shape.move.r${r}.${checked ? 'checked' : 'dense'}`,
    uniforms: MOVE_U,
    bindings: [{ name: 'src', access: 'read' }, { name: 'dst', access: 'read_write' }],
    workgroupSize: [WG, 1, 1],
    body: /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let o = ${LINEAR_INDEX};
  if (o >= u.n) { return; }
  var rest = o;
  var c = 0u;
  var si = u.srcBase;   // source element index, relative to the bound window
  var di = u.dstBase;   // destination element index, likewise
${checked ? '  var inside = true;\n' : ''}${decode}
${checked ? `  // Outside the valid box (a pad's border): the fill value; src is not read.
  if (!inside) { dst[u32(di)] = u.value; return; }
` : ''}  dst[u32(di)] = src[u32(si)];
}`,
  };
});

// ---- map simplification ----------------------------------------------------------------------

const clampInt = (v: number, a: number, b: number) => Math.min(Math.max(v, a), b);
const fullyValid = (a: Axis) => a.lo === 0 && a.hi === a.d;

/**
 * Drops extent-1 axes and merges contiguous fully-valid neighbours (header, step 1). A map with an
 * empty valid range on some axis reads nothing: it becomes a fill (valid range emptied on axis 0).
 */
function simplify(m: MoveMap): MoveMap {
  const clamped = m.axes.map((a) => ({ ...a, lo: clampInt(a.lo, 0, a.d), hi: clampInt(a.hi, 0, a.d) }));
  const fill = clamped.some((a) => a.lo >= a.hi);
  const axes: Axis[] = [];
  for (const a0 of clamped) {
    const a = fill ? { ...a0, lo: 0, hi: a0.d } : a0; // a fill's map is dense (emptied again below)
    if (a.d === 1) continue; // coordinate always 0 (and valid, or we are a fill)
    const p = axes[axes.length - 1];
    if (p && fullyValid(p) && fullyValid(a) && p.ss === a.ss * a.d && p.ds === a.ds * a.d) {
      p.d *= a.d; p.hi = p.d; p.ss = a.ss; p.ds = a.ds;
    } else axes.push({ ...a });
  }
  if (axes.length === 0) axes.push({ d: 1, ss: 1, ds: 1, lo: 0, hi: 1 }); // a single element
  if (fill) { axes[0]!.lo = 0; axes[0]!.hi = 0; }
  return { axes, srcBase: fill ? 0 : m.srcBase, dstBase: m.dstBase, value: m.value };
}

// ---- box splitting and dispatch --------------------------------------------------------------

/** A sub-box: coordinate ranges [a_k, b_k) of the map's box. */
type Box = [number, number][];

/** [min, max] element index a box touches through the ss or ds strides (only its valid part if `restrict`); null if none. */
function span(box: Box, m: MoveMap, which: 'ss' | 'ds', restrict: boolean): [number, number] | null {
  let mn = which === 'ss' ? m.srcBase : m.dstBase, mx = mn;
  for (let k = 0; k < box.length; k++) {
    const ax = m.axes[k]!;
    const a = restrict ? Math.max(box[k]![0], ax.lo) : box[k]![0];
    const b = restrict ? Math.min(box[k]![1], ax.hi) : box[k]![1];
    if (a >= b) return null;
    const s = ax[which];
    mn += Math.min(a * s, (b - 1) * s);
    mx += Math.max(a * s, (b - 1) * s);
  }
  return [mn, mx];
}

/**
 * Runs the map as one or more dispatches, each binding only the window of src and dst its box
 * touches (header, step 3).
 */
function move(label: string, src: Tensor, dst: Tensor, map: MoveMap) {
  assertF32('move', src, dst);
  if (map.axes.some((a) => a.d === 0)) return; // empty box: nothing to write
  const m = simplify(map);
  const r = m.axes.length;
  if (r > RANK) throw new Error(`${label}: the index map has ${r} axes after merging; at most ${RANK} are supported`);
  const gpu = dst.gpu;
  // Step 2: contiguous runs in both tensors are buffer copies: one for a single run, one per run
  // when the runs are long and few (concat on channels: N runs of C_j·H·W per input).
  const inner = m.axes[r - 1]!;
  if (inner.ss === 1 && inner.ds === 1 && m.axes.every(fullyValid)) {
    const outer = m.axes.slice(0, -1);
    const runs = numel(outer.map((a) => a.d));
    if (runs === 1 || (runs <= MAX_COPY_RUNS && inner.d >= MIN_COPY_RUN)) {
      for (let i = 0; i < runs; i++) {
        // Decode run i into outer coordinates (innermost fastest) and offset both bases.
        let rest = i, so = m.srcBase, dOff = m.dstBase;
        for (let k = outer.length - 1; k >= 0; k--) {
          const c = rest % outer[k]!.d;
          rest = Math.floor(rest / outer[k]!.d);
          so += c * outer[k]!.ss; dOff += c * outer[k]!.ds;
        }
        gpu.copy(src.buffer, so * 4, dst.buffer, dOff * 4, inner.d * 4);
      }
      return;
    }
  }
  const align = Number(gpu.limits.minStorageBufferOffsetAlignment) / 4;
  const limit = Math.floor((shapeTesting.maxBindingBytes || gpu.maxBinding) / 4);
  if (limit < 2 * align) throw new Error(`${label}: binding limit below ${2 * align} elements`);
  const fits = (s: [number, number] | null) => s === null || s[1] - Math.floor(s[0] / align) * align + 1 <= limit;

  const emit = (box: Box) => {
    const ss = span(box, m, 'ss', true), ds = span(box, m, 'ds', false);
    if (fits(ss) && fits(ds)) { dispatch(box, ss, ds!); return; }
    // Halve the box along the axis contributing most to the span that does not fit.
    const which = fits(ss) ? 'ds' : 'ss';
    let best = -1, bestSpan = 0;
    box.forEach(([a, b], k) => {
      const s = (b - a - 1) * Math.abs(m.axes[k]![which]);
      if (b - a > 1 && s > bestSpan) { best = k; bestSpan = s; }
    });
    if (best < 0) throw new Error(`${label}: cannot split the copy below the binding limit`); // unreachable for limit ≥ 2·align
    const [a, b] = box[best]!, mid = a + Math.floor((b - a) / 2);
    emit(box.map((rg, k) => (k === best ? [a, mid] : rg)));
    emit(box.map((rg, k) => (k === best ? [mid, b] : rg)));
  };

  const dispatch = (box: Box, ss: [number, number] | null, ds: [number, number]) => {
    // Bind the touched windows; the bases become relative to the windows' (aligned) starts.
    const window = (t: Tensor, s: [number, number]): [Binding, number] => {
      const off = Math.floor(s[0] / align) * align;
      return [{ buffer: t.buffer, offset: off * 4, size: (s[1] + 1 - off) * 4 }, off];
    };
    // A box with nothing valid reads no source: bind its first element only.
    const [sb, soff] = ss ? window(src, ss) : [{ buffer: src.buffer, offset: 0, size: 4 }, 0];
    const [db, doff] = window(dst, ds);
    const u: Record<string, number> = { value: m.value };
    let srcBase = m.srcBase - soff, dstBase = m.dstBase - doff, n = 1, checked = false;
    for (let k = 0; k < RANK; k++) {
      const ax = m.axes[k];
      if (!ax) { Object.assign(u, { [`d${k}`]: 1, [`lo${k}`]: 0, [`hi${k}`]: 1, [`ss${k}`]: 0, [`ds${k}`]: 0 }); continue; }
      const [a, b] = box[k]!, ext = b - a;
      const lo = clampInt(ax.lo - a, 0, ext), hi = clampInt(ax.hi - a, 0, ext);
      if (lo > 0 || hi < ext) checked = true;
      srcBase += a * ax.ss; dstBase += a * ax.ds; n *= ext;
      Object.assign(u, { [`d${k}`]: ext, [`lo${k}`]: lo, [`hi${k}`]: hi, [`ss${k}`]: ax.ss, [`ds${k}`]: ax.ds });
    }
    if (!ss) srcBase = 0;
    Object.assign(u, { n, srcBase, dstBase });
    gpu.run(moveKernel(r, checked), [sb, db], u as UniformValues<MoveU>, grid1d(n, WG), label);
  };

  emit(m.axes.map((a) => [0, a.d]));
}

/** A dense map: box = `dims`, source/destination strides given, every element valid. */
function denseMap(dims: Shape, ss: readonly number[], ds: readonly number[], srcBase = 0, dstBase = 0): MoveMap {
  return { axes: dims.map((d, k) => ({ d, ss: ss[k]!, ds: ds[k]!, lo: 0, hi: d })), srcBase, dstBase, value: 0 };
}

// ---- transpose -------------------------------------------------------------------------------

function checkPerm(what: string, perm: readonly number[], rank: number) {
  const seen = new Set(perm);
  if (perm.length !== rank || seen.size !== rank || perm.some((p) => !Number.isInteger(p) || p < 0 || p >= rank)) {
    throw new Error(`${what}: perm ${fmt(perm)} is not a permutation of 0..${rank - 1}`);
  }
}

/** perm⁻¹: inv[perm[k]] = k. */
export function inversePerm(perm: readonly number[]): number[] {
  const inv = new Array<number>(perm.length);
  perm.forEach((p, k) => { inv[p] = k; });
  return inv;
}

/**
 * y = x permuted: y.shape[k] = x.shape[perm[k]], y[c] = x[c'] with c'[perm[k]] = c[k]
 * (numpy.transpose, ONNX Transpose). `perm` defaults to the reversed axes (ONNX's default).
 */
export function transpose(x: Tensor, perm?: readonly number[]): Tensor {
  const r = x.shape.length;
  const p = perm ?? Array.from({ length: r }, (_, k) => r - 1 - k);
  checkPerm('transpose', p, r);
  const yShape = p.map((a) => x.shape[a]!);
  const y = Tensor.empty(x.gpu, yShape);
  const xs = stridesOf(x.shape);
  move('transpose', x, y, denseMap(yShape, p.map((a) => xs[a]!), stridesOf(yShape)));
  return y;
}

/** dX = transpose(dY, perm⁻¹): a permutation's adjoint is its inverse. `perm` is the forward's. */
export function transposeBackward(dY: Tensor, perm?: readonly number[]): Tensor {
  const r = dY.shape.length;
  const p = perm ?? Array.from({ length: r }, (_, k) => r - 1 - k);
  checkPerm('transposeBackward', p, r);
  return transpose(dY, inversePerm(p));
}

// ---- concat ----------------------------------------------------------------------------------

function normAxis(what: string, axis: number, rank: number): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank) throw new Error(`${what}: axis ${axis} is out of range for rank ${rank}`);
  return axis < 0 ? axis + rank : axis;
}

/** Output shape of a concat; throws unless the shapes agree off the axis. */
export function concatShape(shapes: readonly Shape[], axis: number): number[] {
  if (shapes.length === 0) throw new Error('concat: no inputs');
  const r = shapes[0]!.length;
  const ax = normAxis('concat', axis, r);
  const out = [...shapes[0]!];
  out[ax] = 0;
  for (const s of shapes) {
    if (s.length !== r || s.some((d, k) => k !== ax && d !== out[k])) {
      throw new Error(`concat: shapes ${shapes.map((t) => fmt(t)).join(', ')} differ off axis ${ax}`);
    }
    out[ax] += s[ax]!;
  }
  return out;
}

/**
 * y = the inputs joined along `axis` (negative counts from the end, as ONNX Concat): input j lands
 * at offset off_j = Σ_{i<j} x_i.shape[axis] along the axis.
 */
export function concat(xs: readonly Tensor[], axis: number): Tensor {
  const yShape = concatShape(xs.map((t) => t.shape), axis);
  const ax = normAxis('concat', axis, yShape.length);
  const y = Tensor.empty(xs[0]!.gpu, yShape);
  const ys = stridesOf(yShape);
  let off = 0;
  for (const x of xs) {
    move('concat', x, y, denseMap(x.shape, stridesOf(x.shape), ys, 0, off * ys[ax]!));
    off += x.shape[ax]!;
  }
  return y;
}

/** dX_j = dY restricted to input j's range along `axis` (one slice per input). */
export function concatBackward(dY: Tensor, shapes: readonly Shape[], axis: number): Tensor[] {
  expectShape('concatBackward dY', dY, concatShape(shapes, axis));
  const ax = normAxis('concat', axis, dY.shape.length);
  let off = 0;
  return shapes.map((s) => {
    const start = off;
    off += s[ax]!;
    return slice(dY, { starts: [start], ends: [off], axes: [ax] });
  });
}

// ---- pad -------------------------------------------------------------------------------------

/** Padded shape: y_k = x_k + begin_k + end_k with pads = [begin_0 … begin_{r−1}, end_0 … end_{r−1}]. */
export function padShape(xShape: Shape, pads: readonly number[]): number[] {
  const r = xShape.length;
  if (pads.length !== 2 * r || pads.some((p) => !Number.isInteger(p))) {
    throw new Error(`pad: expected ${2 * r} integer pads [begin_0 … begin_${r - 1}, end_0 … end_${r - 1}] for rank ${r}, got ${fmt(pads)}`);
  }
  const y = xShape.map((d, k) => d + pads[k]! + pads[r + k]!);
  if (y.some((d) => d < 0)) throw new Error(`pad: pads ${fmt(pads)} crop ${fmt(xShape)} below zero size`);
  return y;
}

/**
 * Constant padding in ONNX Pad's layout: pads = [begin_0, …, begin_{r−1}, end_0, …, end_{r−1}]
 * (for NCHW: [0, 0, top, left, 0, 0, bottom, right]). y[c] = x[c − begin] where that is inside x,
 * else `value`. Negative pads crop.
 */
export function pad(x: Tensor, pads: readonly number[], value = 0): Tensor {
  const yShape = padShape(x.shape, pads);
  const y = Tensor.empty(x.gpu, yShape);
  const xs = stridesOf(x.shape), ys = stridesOf(yShape);
  const begin = pads.slice(0, x.shape.length);
  move('pad', x, y, {
    // Box = y; y coordinate c reads x at c − begin, valid where 0 ≤ c − begin < xDim.
    axes: yShape.map((d, k) => ({ d, ss: xs[k]!, ds: ys[k]!, lo: begin[k]!, hi: begin[k]! + x.shape[k]! })),
    srcBase: -begin.reduce((acc, b, k) => acc + b * xs[k]!, 0),
    dstBase: 0,
    value,
  });
  return y;
}

/**
 * dX = dY cropped back to x: pad(dY, −pads). Elements the forward cropped away (negative pads) get a
 * zero gradient; the forward's border (positive pads) receives none.
 */
export function padBackward(dY: Tensor, xShape: Shape, pads: readonly number[]): Tensor {
  expectShape('padBackward dY', dY, padShape(xShape, pads));
  return pad(dY, pads.map((p) => -p), 0);
}

// ---- slice -----------------------------------------------------------------------------------

/**
 * Slice bounds along the given axes; other axes are kept whole. Bounds must be RESOLVED (see
 * `resolveSlice`): with step > 0, 0 ≤ start, end ≤ dim; with step < 0, start ≤ dim − 1 and
 * end ≥ −1. Negative `axes` count from the end.
 */
export interface SliceSpec {
  starts: readonly number[];
  ends: readonly number[];
  /** default: 0, 1, …, starts.length − 1 */
  axes?: readonly number[];
  /** default: all 1; never 0 */
  steps?: readonly number[];
}

/**
 * ONNX Slice's resolution of one axis: negative start/end count from the end (+dim), then clamp to
 * [0, dim] for step > 0 or start to [0, dim − 1] and end to [−1, dim − 1] for step < 0. Huge values
 * (INT64_MAX as "to the end") clamp too.
 */
export function resolveSlice(dim: number, start: number, end: number, step = 1): { start: number; end: number; step: number } {
  if (!Number.isInteger(step) || step === 0) throw new Error(`slice: step must be a non-zero integer, got ${step}`);
  let s = start < 0 ? start + dim : start;
  let e = end < 0 ? end + dim : end;
  if (step > 0) { s = clampInt(s, 0, dim); e = clampInt(e, 0, dim); } else { s = clampInt(s, 0, dim - 1); e = clampInt(e, -1, dim - 1); }
  return { start: s, end: e, step };
}

interface SliceAxis { start: number; step: number; len: number }

/** Per axis of x: first index, step and length of the slice; throws on unresolved bounds. */
function sliceGeometry(xShape: Shape, spec: SliceSpec): SliceAxis[] {
  const r = xShape.length;
  const n = spec.starts.length;
  const axes = (spec.axes ?? Array.from({ length: n }, (_, k) => k)).map((a) => normAxis('slice', a, r));
  const steps = spec.steps ?? Array(n).fill(1);
  if (spec.ends.length !== n || axes.length !== n || steps.length !== n) throw new Error('slice: starts, ends, axes and steps must have the same length');
  if (new Set(axes).size !== n) throw new Error(`slice: repeated axis in ${fmt(axes)}`);
  const out: SliceAxis[] = xShape.map((d) => ({ start: 0, step: 1, len: d }));
  axes.forEach((ax, i) => {
    const dim = xShape[ax]!, start = spec.starts[i]!, end = spec.ends[i]!, step = steps[i]!;
    if (![start, end, step].every(Number.isInteger) || step === 0) throw new Error(`slice: axis ${ax}: start ${start}, end ${end}, step ${step} must be integers, step ≠ 0`);
    // Elements start, start + step, … strictly before end (in the step's direction).
    const len = Math.max(0, Math.ceil((end - start) / step));
    // Resolved bounds lie in [0, dim] (step > 0) or [−1, dim − 1] (step < 0), and the elements
    // actually taken lie inside the axis. NOTE: this rejects unresolved negative indices (start −1
    // meaning "the last") rather than guessing, except where they select nothing anyway.
    const last = start + (len - 1) * step;
    const [lo, hi] = step > 0 ? [0, dim] : [-1, dim - 1];
    const inRange = (i: number) => i >= lo && i <= hi;
    const inside = (i: number) => i >= 0 && i < dim;
    if (!inRange(start) || !inRange(end) || (len > 0 && !(inside(start) && inside(last)))) {
      throw new Error(`slice: axis ${ax} (size ${dim}): start ${start}, end ${end}, step ${step} is not resolved (see resolveSlice)`);
    }
    out[ax] = { start, step, len };
  });
  return out;
}

/** Output shape of `slice(x, spec)`. */
export function sliceShape(xShape: Shape, spec: SliceSpec): number[] {
  return sliceGeometry(xShape, spec).map((g) => g.len);
}

/** y[c] = x[start + c·step] per axis (ONNX Slice with resolved bounds; see SliceSpec). */
export function slice(x: Tensor, spec: SliceSpec): Tensor {
  const g = sliceGeometry(x.shape, spec);
  const yShape = g.map((a) => a.len);
  const y = Tensor.empty(x.gpu, yShape);
  const xs = stridesOf(x.shape);
  const srcBase = g.reduce((acc, a, k) => acc + a.start * xs[k]!, 0);
  move('slice', x, y, denseMap(yShape, g.map((a, k) => a.step * xs[k]!), stridesOf(yShape), srcBase, 0));
  return y;
}

/**
 * dX = zeros of x's shape with dY scattered back to the sliced positions: dX[start + c·step] = dY[c].
 * (A scatter is race-free here: distinct c land on distinct positions.)
 */
export function sliceBackward(dY: Tensor, xShape: Shape, spec: SliceSpec): Tensor {
  const g = sliceGeometry(xShape, spec);
  expectShape('sliceBackward dY', dY, g.map((a) => a.len));
  const dX = Tensor.zeros(dY.gpu, xShape);
  if (numel(xShape) === 0) return dX;
  const xs = stridesOf(xShape);
  const dstBase = g.reduce((acc, a, k) => acc + a.start * xs[k]!, 0);
  move('slice.bwd', dY, dX, denseMap(dY.shape, stridesOf(dY.shape), g.map((a, k) => a.step * xs[k]!), 0, dstBase));
  return dX;
}
