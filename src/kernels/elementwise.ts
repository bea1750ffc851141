// Elementwise kernels: ReLU (+ backward), broadcasting binary ops (+ backward), scale/fill.
//
//   relu:          y = max(x, 0)                    x, y: any shape (n elements)
//   reluBackward:  dX = dY · [x > 0]                NOTE: the gradient at exactly 0 is 0 (as PyTorch)
//   binary:        y = a ∘ b, ∘ ∈ {+, −, ×, ÷}; b (or a) broadcast NumPy-style, e.g. bias [1,C,1,1]
//                  onto [N,C,H,W], or a residual [N,C,H,W] + [N,C,H,W].
//   binary backward: dA = sumTo(dY · ∂y/∂a, shape(a)), dB likewise (reduce.ts sums broadcast axes).
//
// Versions (maps: unary ops, relu backward, same-shape binary ops; `version` option, default 2):
//   v1  one invocation per element, scalar loads and store.
//   v2  one invocation per 4 elements: one vec4 load per input and one vec4 store, the math per
//       component (`mapBody`); the ≤ 3 elements past the last whole vec4 of a window run v1. On
//       lavapipe every load is a per-lane loop, so 4× fewer (wider) loads is what counts.
//   The broadcasting binary path (bias-like operands) is v1 only: one invocation per output element
//   decoding 6 coordinates.
//   Measured on lavapipe (2 vCPUs shared with other jobs, load average 2–4: ±2× between runs),
//   GB/s of loads + stores, gpu-timestamp medians, v1 and v2 interleaved in one scratch script:
//                          [2,64,56,56]      [8,64,56,56]      [2,512,7,7]
//     relu          v1     1.49 ms 2.2       12.4 ms 1.0       0.55 ms 0.7
//                   v2     0.66 ms 4.9        5.6 ms 2.3       0.45 ms 0.9
//     reluBackward  v1     1.87 ms 2.6       20.0 ms 1.0       0.89 ms 0.7
//                   v2     0.80 ms 6.0        7.3 ms 2.6       0.42 ms 1.4
//     add (same shape) v2  0.95 ms 5.1       12.9 ms 1.5       0.47 ms 1.3
//   `wgtrain bench --quick --no-e2e --filter relu` (VGG16 shapes, batch 2), v1 build → v2 build:
//     relu.fwd 1.8–3.4× faster (e.g. features.1 [2,64,56,56] 1.57 → 0.66 ms), relu.bwd 1.5–3.9×
//     (features.1 3.08 → 0.79 ms); [2,512,3,3] (9k elements) is launch overhead either way.
// Large tensors (> maxStorageBufferBindingSize) are processed in windows of the same buffers.

import { grid1d, LINEAR_INDEX, memo, type KernelSpec } from '../gpu/kernel.js';
import { Tensor, numel, type Shape, assertF32 } from '../gpu/tensor.js';
import type { Gpu } from '../gpu/device.js';
import type { UniformValues } from '../gpu/uniforms.js';
import { sumTo } from './reduce.js';

const WG = 256;

/** Element windows no larger than the binding limit, each starting at a 256-byte aligned offset. */
export function windows(gpu: Gpu, n: number): { start: number; count: number }[] {
  const maxElems = Math.floor(gpu.maxBinding / 4 / 64) * 64;
  const out: { start: number; count: number }[] = [];
  for (let s = 0; s < n; s += maxElems) out.push({ start: s, count: Math.min(maxElems, n - s) });
  return out;
}

/** Binding for elements [start, start+count) of a tensor. */
export function win(t: Tensor, start: number, count: number) {
  return { buffer: t.buffer, offset: start * 4, size: Math.max(4, count * 4) };
}

// ---- v1 / v2 launch (shared with activation.ts) ------------------------------------------------

/** 1: one element per invocation; 2: four, with vec4 loads and stores (see the header). */
export type ElementwiseVersion = 1 | 2;
export interface ElementwiseOptions {
  /** Default 2. */
  version?: ElementwiseVersion;
}

/** Uniforms every elementwise kernel starts with: n items in this dispatch, first element `off`. */
export type EwU = { n: 'u32'; off: 'u32' };

/**
 * WGSL body of a map over elements. `loads` are [local, array] pairs: each local is the array's
 * element (f32) where `expr`, an f32 expression in those locals and the uniforms, is evaluated and
 * stored to `out[i]`.
 *   v1 (vec4 = false): invocation i handles element u.off + i.
 *   v2 (vec4 = true):  the arrays are array<vec4<f32>>; invocation i loads one vec4 per input and
 *       evaluates `expr` on each of the 4 components (written out, no loop), then stores one vec4.
 *       NOTE: the math stays scalar per component on purpose: on lavapipe each invocation is one
 *       SIMD lane, so it costs the same as v1's; what v2 saves is 3 of every 4 loads and stores, each
 *       a per-lane loop there (software-adapter.md). Any scalar expr works unchanged.
 */
export function mapBody(loads: readonly (readonly [string, string])[], out: string, expr: string, vec4: boolean, prelude = ''): string {
  const head = /* wgsl */ `${prelude}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {`;
  if (!vec4) {
    return `${head}
  let i = ${LINEAR_INDEX} + u.off;
  if (i >= u.n) { return; }
${loads.map(([v, a]) => `  let ${v} = ${a}[i];`).join('\n')}
  ${out}[i] = ${expr};
}`;
  }
  const lanes = ['x', 'y', 'z', 'w'].map((c) =>
    `  { ${loads.map(([v]) => `let ${v} = ${v}4.${c};`).join(' ')} r.${c} = ${expr}; }`);
  return `${head}
  let i = ${LINEAR_INDEX};
  if (i >= u.n) { return; }
${loads.map(([v, a]) => `  let ${v}4 = ${a}[i];`).join('\n')}
  var r: vec4<f32>;
${lanes.join('\n')}
  ${out}[i] = r;
}`;
}

/** Element type of a map kernel's arrays. */
export const mapElem = (vec4: boolean) => (vec4 ? 'vec4<f32>' : 'f32');

/**
 * Launches map kernel `k(vec4)` over the first `n` elements of `tensors` (bound in the kernel's
 * binding order; all have ≥ n elements), window by window (binding limit). v2: the 4·⌊count/4⌋
 * leading elements of a window as vec4s (every window starts 256-byte aligned), then the ≤ 3 left
 * over through v1 with `off`. v1: all through v1.
 */
export function launchMap<U extends EwU>(
  gpu: Gpu, k: (vec4: boolean) => KernelSpec<U>, tensors: readonly Tensor[], n: number,
  u: Omit<UniformValues<U>, 'n' | 'off'>, version: ElementwiseVersion, label: string,
) {
  assertF32('launchMap', ...tensors);
  for (const w of windows(gpu, n)) {
    const n4 = version === 2 ? Math.floor(w.count / 4) : 0;
    if (n4 > 0) {
      const b = tensors.map((t) => ({ buffer: t.buffer, offset: w.start * 4, size: n4 * 16 }));
      gpu.run(k(true), b, { ...u, n: n4, off: 0 } as UniformValues<U>, grid1d(n4, WG), label);
    }
    const rest = w.count - 4 * n4;
    if (rest > 0) {
      const b = tensors.map((t) => win(t, w.start, w.count));
      gpu.run(k(false), b, { ...u, n: w.count, off: 4 * n4 } as UniformValues<U>, grid1d(rest, WG), label);
    }
  }
}

// ---- unary maps ------------------------------------------------------------------------------

type UnaryU = EwU & { alpha: 'f32' };
const UNARY_U: UnaryU = { n: 'u32', off: 'u32', alpha: 'f32' };

/** y[i] = EXPR(x[i]) with EXPR a WGSL expression in `v` and uniform `u.alpha`. */
// NOTE: WebGPU forbids binding one buffer as both read and read_write in a dispatch, so the in-place
// variant binds only y and reads v from it.
const unaryKernel = memo((name: UnaryOp, inPlace: boolean, vec4: boolean) => `${name}.${inPlace}.${vec4}`, (name: UnaryOp, inPlace: boolean, vec4: boolean): KernelSpec<UnaryU> => {
  const type = mapElem(vec4);
  return {
    name: `${name}.v${vec4 ? 2 : 1}`, key: `unary.${name}.${inPlace ? 'inplace' : 'out'}.v${vec4 ? 2 : 1}`,
    uniforms: UNARY_U,
    bindings: inPlace ? [{ name: 'y', access: 'read_write', type }] : [{ name: 'x', access: 'read', type }, { name: 'y', access: 'read_write', type }],
    workgroupSize: [WG, 1, 1],
    body: mapBody([['v', inPlace ? 'y' : 'x']], 'y', UNARY[name], vec4),
  };
});

const UNARY = {
  relu: 'max(v, 0.0)',
  scale: 'v * u.alpha',
  fill: 'u.alpha',
  leakyRelu: 'select(v * u.alpha, v, v > 0.0)',
} as const;
type UnaryOp = keyof typeof UNARY;

function unary(op: UnaryOp, x: Tensor, alpha = 0, out?: Tensor, version: ElementwiseVersion = 2): Tensor {
  const y = out ?? Tensor.empty(x.gpu, x.shape);
  const inPlace = y.buffer === x.buffer;
  launchMap(x.gpu, (v4) => unaryKernel(op, inPlace, v4), inPlace ? [y] : [x, y], x.size, { alpha }, version, op);
  return y;
}

/** y = max(x, 0). */
export function relu(x: Tensor, opts: ElementwiseOptions = {}): Tensor { return unary('relu', x, 0, undefined, opts.version); }
/** y = x if x > 0 else αx. */
export function leakyRelu(x: Tensor, alpha: number, opts: ElementwiseOptions = {}): Tensor { return unary('leakyRelu', x, alpha, undefined, opts.version); }
/** y = αx. */
export function scale(x: Tensor, alpha: number, out?: Tensor, opts: ElementwiseOptions = {}): Tensor { return unary('scale', x, alpha, out, opts.version); }
/** Fills t with a constant (in place). */
export function fill(t: Tensor, value: number, opts: ElementwiseOptions = {}): Tensor { return unary('fill', t, value, t, opts.version); }

// ---- ReLU / LeakyReLU backward ---------------------------------------------------------------

const reluBwdKernel = memo((vec4: boolean) => `${vec4}`, (vec4: boolean): KernelSpec<UnaryU> => {
  const type = mapElem(vec4);
  return {
    name: `relu.bwd.v${vec4 ? 2 : 1}`, key: `relu.bwd.v${vec4 ? 2 : 1}`,
    uniforms: UNARY_U,
    // x: the forward's input (or output: same sign), dY: upstream gradient, dX: result.
    bindings: [{ name: 'x', access: 'read', type }, { name: 'dy', access: 'read', type }, { name: 'dx', access: 'read_write', type }],
    workgroupSize: [WG, 1, 1],
    // NOTE: strict > so that d relu/dx at x = 0 is 0; alpha = 0 for ReLU, the slope for LeakyReLU.
    body: mapBody([['v', 'x'], ['g', 'dy']], 'dx', 'select(g * u.alpha, g, v > 0.0)', vec4),
  };
});

/** dX = dY · [x > 0] (+ α·dY · [x ≤ 0] for LeakyReLU). `x` may be the forward input or output. */
export function reluBackward(x: Tensor, dY: Tensor, alpha = 0, opts: ElementwiseOptions = {}): Tensor {
  const dX = Tensor.empty(x.gpu, x.shape);
  launchMap(x.gpu, reluBwdKernel, [x, dY, dX], x.size, { alpha }, opts.version ?? 2, 'relu');
  return dX;
}

// ---- broadcasting binary ops -----------------------------------------------------------------

export type BinaryOp = 'add' | 'sub' | 'mul' | 'div';
const BIN_EXPR: Record<BinaryOp, string> = { add: 'p + q', sub: 'p - q', mul: 'p * q', div: 'p / q' };
const RANK = 6;

/** NumPy broadcast of two shapes; throws on a mismatch. */
export function broadcastShape(a: Shape, b: Shape): number[] {
  const r = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < r; i++) {
    const da = a[a.length - r + i] ?? 1, db = b[b.length - r + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) throw new Error(`cannot broadcast [${a.join(', ')}] with [${b.join(', ')}]`);
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** Strides of `s` viewed in the rank-6 padded output space, with 0 on broadcast axes. */
export function broadcastStrides(s: Shape, out: Shape): number[] {
  if (out.length > RANK) throw new Error(`broadcast supports rank ≤ ${RANK}, got ${out.length}`);
  const padded = [...Array(RANK - s.length).fill(1), ...s];
  const outP = [...Array(RANK - out.length).fill(1), ...out];
  const strides = new Array<number>(RANK).fill(0);
  let acc = 1;
  for (let i = RANK - 1; i >= 0; i--) {
    strides[i] = padded[i] === 1 && outP[i] !== 1 ? 0 : acc;
    acc *= padded[i]!;
  }
  return strides;
}

type BinU = Record<'n' | 'off' | `d${0 | 1 | 2 | 3 | 4 | 5}` | `sa${0 | 1 | 2 | 3 | 4 | 5}` | `sb${0 | 1 | 2 | 3 | 4 | 5}`, 'u32'>;
const binUniforms = Object.fromEntries([
  ['n', 'u32'], ['off', 'u32'],
  ...[0, 1, 2, 3, 4, 5].map((i) => [`d${i}`, 'u32']),
  ...[0, 1, 2, 3, 4, 5].map((i) => [`sa${i}`, 'u32']),
  ...[0, 1, 2, 3, 4, 5].map((i) => [`sb${i}`, 'u32']),
]) as BinU;

// Same-shape operands: a plain map (v1 or v2). The broadcast path (v1 only) decodes the output index
// into 6 coordinates and dots them with each operand's (0-on-broadcast-axes) strides.
const sameShapeKernel = memo((op: BinaryOp, vec4: boolean) => `${op}.${vec4}`, (op: BinaryOp, vec4: boolean): KernelSpec<BinU> => {
  const type = mapElem(vec4);
  return {
    name: `${op}.v${vec4 ? 2 : 1}`, key: `binary.${op}.same.v${vec4 ? 2 : 1}`,
    uniforms: binUniforms,
    bindings: [{ name: 'a', access: 'read', type }, { name: 'b', access: 'read', type }, { name: 'y', access: 'read_write', type }],
    workgroupSize: [WG, 1, 1],
    body: mapBody([['p', 'a'], ['q', 'b']], 'y', BIN_EXPR[op], vec4),
  };
});

const broadcastKernel = memo((op: BinaryOp) => op, (op: BinaryOp): KernelSpec<BinU> => ({
  name: `${op}.v1`, key: `binary.${op}.bcast`,
  uniforms: binUniforms,
  bindings: [{ name: 'a', access: 'read' }, { name: 'b', access: 'read' }, { name: 'y', access: 'read_write' }],
  workgroupSize: [WG, 1, 1],
  body: /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = ${LINEAR_INDEX};
  if (i >= u.n) { return; }
  let d = array<u32, 6>(u.d0, u.d1, u.d2, u.d3, u.d4, u.d5);
  let sa = array<u32, 6>(u.sa0, u.sa1, u.sa2, u.sa3, u.sa4, u.sa5);
  let sb = array<u32, 6>(u.sb0, u.sb1, u.sb2, u.sb3, u.sb4, u.sb5);
  var r = i; var ia = 0u; var ib = 0u;
  for (var k = 5; k >= 0; k--) {
    let c = r % d[k]; r = r / d[k];
    ia += c * sa[k]; ib += c * sb[k];
  }
  let p = a[ia]; let q = b[ib];
  y[i] = ${BIN_EXPR[op]};
}`,
}));

/** y = a ∘ b with NumPy broadcasting. `opts.version` applies to same-shape operands. */
export function binary(op: BinaryOp, a: Tensor, b: Tensor, opts: ElementwiseOptions = {}): Tensor {
  assertF32('binary', a, b);
  const shape = broadcastShape(a.shape, b.shape);
  const gpu = a.gpu;
  const y = Tensor.empty(gpu, shape);
  const same = a.size === y.size && b.size === y.size;
  if (same) {
    launchMap(gpu, (v4) => sameShapeKernel(op, v4), [a, b, y], y.size, zeroBin, opts.version ?? 2, op);
    return y;
  }
  if (y.byteLength > gpu.maxBinding) throw new Error(`${op}: broadcasting into a tensor above the binding limit is not supported`);
  const outP = [...Array(RANK - shape.length).fill(1), ...shape];
  const sa = broadcastStrides(a.shape, shape), sb = broadcastStrides(b.shape, shape);
  const u: Record<string, number> = { ...zeroBin, n: y.size };
  for (let i = 0; i < RANK; i++) { u[`d${i}`] = outP[i]; u[`sa${i}`] = sa[i]!; u[`sb${i}`] = sb[i]!; }
  gpu.run(broadcastKernel(op), [a.buffer, b.buffer, y.buffer], u as Record<keyof BinU, number>, grid1d(y.size, WG), op);
  return y;
}
const zeroBin = Object.fromEntries(Object.keys(binUniforms).map((k) => [k, 0])) as Record<keyof BinU, number>;

export const add = (a: Tensor, b: Tensor) => binary('add', a, b);
export const sub = (a: Tensor, b: Tensor) => binary('sub', a, b);
export const mul = (a: Tensor, b: Tensor) => binary('mul', a, b);
export const div = (a: Tensor, b: Tensor) => binary('div', a, b);

/**
 * Gradients of y = a ∘ b given dY (shape of y). Returns [dA, dB] with the shapes of a and b:
 *   add: dA = dY,     dB = dY          sub: dA = dY,   dB = −dY
 *   mul: dA = dY·b,   dB = dY·a        div: dA = dY/b, dB = −dY·a/b²  (= −dY·y/b)
 * each then summed over the axes that were broadcast (reduce.ts `sumTo`).
 */
export function binaryBackward(op: BinaryOp, a: Tensor, b: Tensor, dY: Tensor): [Tensor, Tensor] {
  assertF32('binaryBackward', a, b, dY);
  const reduceTo = (t: Tensor, shape: Shape) => {
    // Same element count: hand t's buffer over under the new shape (t itself is dropped).
    if (numel(shape) === t.size) return new Tensor(t.gpu, t.buffer, shape);
    const r = sumTo(t, shape);
    t.dispose();
    return r;
  };
  const copy = (t: Tensor) => scale(t, 1);
  switch (op) {
    case 'add': return [reduceTo(copy(dY), a.shape), reduceTo(copy(dY), b.shape)];
    case 'sub': return [reduceTo(copy(dY), a.shape), reduceTo(scale(dY, -1), b.shape)];
    case 'mul': return [reduceTo(binary('mul', dY, b), a.shape), reduceTo(binary('mul', dY, a), b.shape)];
    case 'div': {
      const dA = binary('div', dY, b);
      const t = binary('mul', dA, a); // dY·a/b
      const dB = binary('div', t, b); t.dispose();
      const nB = scale(dB, -1, dB);
      return [reduceTo(dA, a.shape), reduceTo(nB, b.shape)];
    }
    default: return op satisfies never;
  }
}
