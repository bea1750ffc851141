// Elementwise kernels: ReLU (+ backward), broadcasting binary ops (+ backward), scale/fill.
//
//   relu:          y = max(x, 0)                    x, y: any shape (n elements)
//   reluBackward:  dX = dY · [x > 0]                NOTE: the gradient at exactly 0 is 0 (as PyTorch)
//   binary:        y = a ∘ b, ∘ ∈ {+, −, ×, ÷}; b (or a) broadcast NumPy-style, e.g. bias [1,C,1,1]
//                  onto [N,C,H,W], or a residual [N,C,H,W] + [N,C,H,W].
//   binary backward: dA = sumTo(dY · ∂y/∂a, shape(a)), dB likewise (reduce.ts sums broadcast axes).
//
// Versions: v1 only. One invocation per element; loads dominate, so there is nothing to tile. Large
// tensors (> maxStorageBufferBindingSize) are processed in windows of the same buffers.

import { grid1d, LINEAR_INDEX, memo, type KernelSpec } from '../gpu/kernel.js';
import { Tensor, numel, type Shape } from '../gpu/tensor.js';
import type { Gpu } from '../gpu/device.js';
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

// ---- unary maps ------------------------------------------------------------------------------

/** y[i] = EXPR(x[i]) with EXPR a WGSL expression in `v` and uniform `u.alpha`. */
// NOTE: WebGPU forbids binding one buffer as both read and read_write in a dispatch, so the in-place
// variant binds only y and reads v from it.
const unaryKernel = memo((name: string, inPlace: boolean) => `${name}.${inPlace}`, (name: string, inPlace: boolean): KernelSpec<{ n: 'u32'; alpha: 'f32' }> => {
  const expr = UNARY[name as UnaryOp];
  return {
    name: `${name}.v1`, key: `unary.${name}.${inPlace ? 'inplace' : 'out'}`,
    uniforms: { n: 'u32', alpha: 'f32' },
    bindings: inPlace ? [{ name: 'y', access: 'read_write' }] : [{ name: 'x', access: 'read' }, { name: 'y', access: 'read_write' }],
    workgroupSize: [WG, 1, 1],
    body: /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = ${LINEAR_INDEX};
  if (i >= u.n) { return; }
  let v = ${inPlace ? 'y' : 'x'}[i];
  y[i] = ${expr};
}`,
  };
});

const UNARY = {
  relu: 'max(v, 0.0)',
  scale: 'v * u.alpha',
  fill: 'u.alpha',
  leakyRelu: 'select(v * u.alpha, v, v > 0.0)',
} as const;
type UnaryOp = keyof typeof UNARY;

function unary(op: UnaryOp, x: Tensor, alpha = 0, out?: Tensor): Tensor {
  const y = out ?? Tensor.empty(x.gpu, x.shape);
  const inPlace = y.buffer === x.buffer;
  for (const w of windows(x.gpu, x.size)) {
    const b = inPlace ? [win(y, w.start, w.count)] : [win(x, w.start, w.count), win(y, w.start, w.count)];
    x.gpu.run(unaryKernel(op, inPlace), b, { n: w.count, alpha }, grid1d(w.count, WG), op);
  }
  return y;
}

/** y = max(x, 0). */
export function relu(x: Tensor): Tensor { return unary('relu', x); }
/** y = x if x > 0 else αx. */
export function leakyRelu(x: Tensor, alpha: number): Tensor { return unary('leakyRelu', x, alpha); }
/** y = αx. */
export function scale(x: Tensor, alpha: number, out?: Tensor): Tensor { return unary('scale', x, alpha, out); }
/** Fills t with a constant (in place). */
export function fill(t: Tensor, value: number): Tensor { return unary('fill', t, value, t); }

// ---- ReLU / LeakyReLU backward ---------------------------------------------------------------

const reluBwdKernel: KernelSpec<{ n: 'u32'; alpha: 'f32' }> = {
  name: 'relu.bwd.v1', key: 'relu.bwd',
  uniforms: { n: 'u32', alpha: 'f32' },
  // x: the forward's input (or output: same sign), dY: upstream gradient, dX: result.
  bindings: [{ name: 'x', access: 'read' }, { name: 'dy', access: 'read' }, { name: 'dx', access: 'read_write' }],
  workgroupSize: [WG, 1, 1],
  body: /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = ${LINEAR_INDEX};
  if (i >= u.n) { return; }
  // NOTE: strict > so that d relu/dx at x = 0 is 0; alpha = 0 for ReLU, the slope for LeakyReLU.
  dx[i] = select(dy[i] * u.alpha, dy[i], x[i] > 0.0);
}`,
};

/** dX = dY · [x > 0] (+ α·dY · [x ≤ 0] for LeakyReLU). `x` may be the forward input or output. */
export function reluBackward(x: Tensor, dY: Tensor, alpha = 0): Tensor {
  const dX = Tensor.empty(x.gpu, x.shape);
  for (const w of windows(x.gpu, x.size)) {
    x.gpu.run(reluBwdKernel, [win(x, w.start, w.count), win(dY, w.start, w.count), win(dX, w.start, w.count)], { n: w.count, alpha }, grid1d(w.count, WG), 'relu');
  }
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

type BinU = Record<'n' | `d${0 | 1 | 2 | 3 | 4 | 5}` | `sa${0 | 1 | 2 | 3 | 4 | 5}` | `sb${0 | 1 | 2 | 3 | 4 | 5}`, 'u32'>;
const binUniforms = Object.fromEntries([
  ['n', 'u32'],
  ...[0, 1, 2, 3, 4, 5].map((i) => [`d${i}`, 'u32']),
  ...[0, 1, 2, 3, 4, 5].map((i) => [`sa${i}`, 'u32']),
  ...[0, 1, 2, 3, 4, 5].map((i) => [`sb${i}`, 'u32']),
]) as BinU;

const binaryKernel = memo((op: BinaryOp, same: boolean) => `${op}.${same}`, (op: BinaryOp, same: boolean): KernelSpec<BinU> => ({
  name: `${op}.v1`, key: `binary.${op}.${same ? 'same' : 'bcast'}`,
  uniforms: binUniforms,
  bindings: [{ name: 'a', access: 'read' }, { name: 'b', access: 'read' }, { name: 'y', access: 'read_write' }],
  workgroupSize: [WG, 1, 1],
  // Same-shape fast path skips the index arithmetic; the broadcast path decodes the output index
  // into 6 coordinates and dots them with each operand's (0-on-broadcast-axes) strides.
  body: same ? /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = ${LINEAR_INDEX};
  if (i >= u.n) { return; }
  let p = a[i]; let q = b[i];
  y[i] = ${BIN_EXPR[op]};
}` : /* wgsl */ `
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

/** y = a ∘ b with NumPy broadcasting. */
export function binary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  const shape = broadcastShape(a.shape, b.shape);
  const gpu = a.gpu;
  const y = Tensor.empty(gpu, shape);
  const same = a.size === y.size && b.size === y.size;
  if (same) {
    for (const w of windows(gpu, y.size)) {
      gpu.run(binaryKernel(op, true), [win(a, w.start, w.count), win(b, w.start, w.count), win(y, w.start, w.count)],
        { ...zeroBin, n: w.count }, grid1d(w.count, WG), op);
    }
    return y;
  }
  if (y.byteLength > gpu.maxBinding) throw new Error(`${op}: broadcasting into a tensor above the binding limit is not supported`);
  const outP = [...Array(RANK - shape.length).fill(1), ...shape];
  const sa = broadcastStrides(a.shape, shape), sb = broadcastStrides(b.shape, shape);
  const u: Record<string, number> = { n: y.size };
  for (let i = 0; i < RANK; i++) { u[`d${i}`] = outP[i]; u[`sa${i}`] = sa[i]!; u[`sb${i}`] = sb[i]!; }
  gpu.run(binaryKernel(op, false), [a.buffer, b.buffer, y.buffer], u as Record<keyof BinU, number>, grid1d(y.size, WG), op);
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
