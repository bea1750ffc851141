// Softmax family over the last axis: softmax, logSoftmax, the fused softmax cross-entropy (the
// training loss), and row argmax (predictions, accuracy). Rows are independent.
//
//   x: [N, K] logits (any rank; the last axis is K, the rest are rows)
//   softmax:            y = exp(x − m) / Σ_k exp(x − m),  m = max_k x    (subtracting m: no overflow)
//   softmaxBackward:    dX = y ⊙ (dY − Σ_k dY·y)                          saved: y
//   logSoftmax:         y = (x − m) − log Σ_k exp(x − m)
//   logSoftmaxBackward: dX = dY − exp(y)·Σ_k dY                            saved: y (exp(y) = softmax)
//   softmaxCrossEntropy(logits [N,K], labels u32 [N], ε):
//       p = softmax(x),  q = (1−ε)·onehot(label) + ε/K                    (PyTorch label_smoothing)
//       rowLoss[n] = −Σ_k q_k log p_k = (1−ε)·(lse − x_y) + ε·(lse − mean_k x_k),  lse = log Σ exp x
//       loss [1] = mean_n rowLoss (or sum)
//   softmaxCrossEntropyBackward:  dLogits = (p − q)·dLoss/N              saved: p (probs), labels
//   argmaxRows: pred[n] = argmax_k x[n, k] (u32; the first index on ties, as torch.argmax)
//
// Versions (row kernels: softmax, logSoftmax and their backwards, cross-entropy forward, argmax):
//   v1: one invocation per row, three plain loops over K. Parallelism is N rows only: a batch of
//       32 rows keeps one workgroup busy, whatever K.
//   v2: one 64-lane workgroup per row; lanes stride over K and combine with a shared-memory tree
//       (max, Σ, argmax; the cross-entropy's two sums share one tree). N·64 lanes: the version for
//       a real GPU, where v1's one-lane-per-row starves the machine and strides K apart.
//   Measured on lavapipe (2 shared cores, approximate; ms per call in a batch of 20, K = 1000):
//                    N = 16   64     256
//     softmax v1      0.10   0.36   1.5
//     softmax v2      0.19   0.95   3.9
//     xent fwd v1     0.16   0.49   1.4
//     xent fwd v2     0.39   1.40   6.9
//   On lavapipe each tree step is a barrier (a coroutine split) and the lanes of a workgroup run as
//   a loop anyway, so v1 wins there; `defaultSoftmaxVersion` picks v1 on CPU adapters and v2
//   elsewhere (not measured on a GPU here: none was available).
//   `wgtrain bench --quick --no-e2e --filter softmax` (default v1 on lavapipe, load average ~3):
//   softmax-xent forward [16,1000] 0.48 ms (0.27 GB/s of logits + probs), backward 0.20 ms (0.65 GB/s):
//   launch overhead dominates at this size.
// The cross-entropy backward is elementwise over N·K (v1 only); the batch mean is a single
// invocation looping over the N row losses: N is a batch (≤ a few hundred), so one serial loop is
// cheaper than a second tree pass, and its summation order is fixed (deterministic).
//
// NOTE: float32 limits, shared with PyTorch: log Σ exp(x − m) = log(1 + r) is 0 when every other
// logit is ≥ 17 below the max (r < 2^-24), so logSoftmax at the max is 0 rather than −r; and the
// backwards cancel (y ≈ 1 in dY − Σ dY·y), so their errors are absolute, ~1e-7 of |dY|.
// NOTE: these kernels bind whole tensors: logits above maxStorageBufferBindingSize (never seen in a
// classifier head) are rejected with an error rather than windowed.

import { grid1d, LINEAR_INDEX, memo, type BindingSpec, type KernelSpec } from '../gpu/kernel.js';
import { Tensor, expectShape, assertF32 } from '../gpu/tensor.js';
import type { Gpu } from '../gpu/device.js';
import type { UniformSpec } from '../gpu/uniforms.js';

export type SoftmaxVersion = 'v1' | 'v2';

/**
 * The default version for an adapter: v1 on CPU adapters (lavapipe/llvmpipe, SwiftShader), where
 * it measured faster (header), v2 elsewhere, where one row per invocation starves a GPU.
 */
export function defaultSoftmaxVersion(gpu: Gpu): SoftmaxVersion {
  return /llvmpipe|lavapipe|swiftshader/i.test(gpu.adapterName) ? 'v1' : 'v2';
}

const WG_ROW = 64; // lanes per row (v2); also the workgroup size of v1 (rows per workgroup)
const WG_EW = 256;

// ---- row-kernel scaffolding ------------------------------------------------------------------
//
// A row kernel body is written once, for both versions, in terms of:
//   row, base = row·K       this invocation's (v1) or workgroup's (v2) row
//   for (var k = lid; k < u.k; k += STEP)   this lane's share of the row (all of it in v1)
//   rmax / rsum / rsum2 / rargmax(v, lid)            combine the lanes' partial results (identity in v1)
// Results of the r* helpers are the same on every lane of the row.

const LOWEST = '-3.4028234663852886e38'; // lowest finite f32: the identity of max (WGSL has no -inf literal)
const NONE = '0xffffffffu';

function rowPrelude(v: SoftmaxVersion): string {
  if (v === 'v1') {
    return /* wgsl */ `
struct VI { v: f32, i: u32 }
const STEP: u32 = 1u;
fn rmax(a: f32, lid: u32) -> f32 { return a; }
fn rsum(a: f32, lid: u32) -> f32 { return a; }
fn rsum2(a: vec2f, lid: u32) -> vec2f { return a; }
fn rargmax(a: f32, i: u32, lid: u32) -> VI { return VI(a, i); }`;
  }
  // NOTE: every helper ends with a barrier after reading rv[0], so the next call may overwrite rv.
  return /* wgsl */ `
struct VI { v: f32, i: u32 }
const STEP: u32 = WG_X;
var<workgroup> rv: array<f32, WG_X>;
var<workgroup> ri: array<u32, WG_X>;
var<workgroup> rv2: array<vec2f, WG_X>;
fn rmax(a: f32, lid: u32) -> f32 {
  rv[lid] = a;
  workgroupBarrier();
  for (var s = WG_X / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { rv[lid] = max(rv[lid], rv[lid + s]); }
    workgroupBarrier();
  }
  let r = rv[0];
  workgroupBarrier();
  return r;
}
fn rsum(a: f32, lid: u32) -> f32 {
  rv[lid] = a;
  workgroupBarrier();
  for (var s = WG_X / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { rv[lid] += rv[lid + s]; }
    workgroupBarrier();
  }
  let r = rv[0];
  workgroupBarrier();
  return r;
}
// Two sums in one tree (half the barriers of two rsum calls).
fn rsum2(a: vec2f, lid: u32) -> vec2f {
  rv2[lid] = a;
  workgroupBarrier();
  for (var s = WG_X / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { rv2[lid] += rv2[lid + s]; }
    workgroupBarrier();
  }
  let r = rv2[0];
  workgroupBarrier();
  return r;
}
// Largest value, lowest index among equals (lanes that saw nothing carry index NONE).
fn rargmax(a: f32, i: u32, lid: u32) -> VI {
  rv[lid] = a; ri[lid] = i;
  workgroupBarrier();
  for (var s = WG_X / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      let o = rv[lid + s]; let oi = ri[lid + s];
      if (oi != ${NONE} && (ri[lid] == ${NONE} || o > rv[lid] || (o == rv[lid] && oi < ri[lid]))) { rv[lid] = o; ri[lid] = oi; }
    }
    workgroupBarrier();
  }
  let r = VI(rv[0], ri[0]);
  workgroupBarrier();
  return r;
}`;
}

function rowMain(v: SoftmaxVersion, body: string): string {
  const entry = v === 'v1'
    ? /* wgsl */ `
@compute @workgroup_size(${WG_ROW})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let row = ${LINEAR_INDEX};
  if (row >= u.n) { return; }
  let lid = 0u;`
    : /* wgsl */ `
@compute @workgroup_size(${WG_ROW})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x; // NOTE: uniform across the workgroup, so this return is too
  if (row >= u.n) { return; }`;
  return `${rowPrelude(v)}\n${entry}\n  let base = row * u.k;\n${body}\n}`;
}

const FOR = 'for (var k = lid; k < u.k; k += STEP)';

/** Pass 1 of every forward: m = max_k x (and, for argmax, its first index). */
const MAX_PASS = /* wgsl */ `
  var m = ${LOWEST};
  ${FOR} { m = max(m, x[base + k]); }
  m = rmax(m, lid);`;
const ARGMAX_PASS = /* wgsl */ `
  var m = ${LOWEST}; var mi = ${NONE};
  ${FOR} {
    let v = x[base + k];
    if (mi == ${NONE} || v > m) { m = v; mi = k; }
  }
  let best = rargmax(m, mi, lid);`;

type RowU = { n: 'u32'; k: 'u32' };
const ROW_U: RowU = { n: 'u32', k: 'u32' };
type CeU = { n: 'u32'; k: 'u32'; eps: 'f32' };

const ROW_BODIES = {
  // bindings: x, y
  softmax: /* wgsl */ `${MAX_PASS}
  var s = 0.0;
  ${FOR} { s += exp(x[base + k] - m); }
  s = rsum(s, lid);
  let inv = 1.0 / s;
  ${FOR} { y[base + k] = exp(x[base + k] - m) * inv; }`,
  // bindings: x, y. NOTE: (x − m) − log s, not x − (m + log s): exact where x ≈ m, large logits.
  logSoftmax: /* wgsl */ `${MAX_PASS}
  var s = 0.0;
  ${FOR} { s += exp(x[base + k] - m); }
  let ls = log(rsum(s, lid));
  ${FOR} { y[base + k] = (x[base + k] - m) - ls; }`,
  // bindings: y (forward output), dy, dx
  softmaxBwd: /* wgsl */ `
  var d = 0.0;
  ${FOR} { d += dy[base + k] * y[base + k]; }
  d = rsum(d, lid);
  ${FOR} { dx[base + k] = y[base + k] * (dy[base + k] - d); }`,
  // bindings: y (forward output), dy, dx
  logSoftmaxBwd: /* wgsl */ `
  var s = 0.0;
  ${FOR} { s += dy[base + k]; }
  s = rsum(s, lid);
  ${FOR} { dx[base + k] = dy[base + k] - exp(y[base + k]) * s; }`,
  // bindings: x, pred
  argmax: /* wgsl */ `${ARGMAX_PASS}
  if (lid == 0u) { pred[row] = best.i; }`,
  // bindings: x, labels, probs, rowLoss, pred.
  // With t = x − m (≤ 0) and ls = log Σ exp t:  −log p_k = ls − t_k, so
  //   rowLoss = (1−ε)(ls − t_y) + ε(ls − Σ_k t_k / K).
  // NOTE: Σ t_k rather than Σ x_k: same-signed terms, no cancellation against K·m for large logits.
  // NOTE: the label is clamped to K−1: an out-of-range label must not read past the row. The
  // launcher rejects such labels when it can see them (Uint32Array input).
  crossEntropy: /* wgsl */ `${ARGMAX_PASS}
  let mx = best.v;
  var s = 0.0; var st = 0.0;
  ${FOR} { let t = x[base + k] - mx; s += exp(t); st += t; }
  let sums = rsum2(vec2f(s, st), lid);
  s = sums.x; st = sums.y;
  let inv = 1.0 / s;
  ${FOR} { probs[base + k] = exp(x[base + k] - mx) * inv; }
  if (lid == 0u) {
    let ls = log(s);
    let lab = min(labels[row], u.k - 1u);
    rowLoss[row] = (1.0 - u.eps) * (ls - (x[base + lab] - mx)) + u.eps * (ls - st / f32(u.k));
    pred[row] = best.i;
  }`,
} as const;
type RowOp = keyof typeof ROW_BODIES;

const f = (name: string, access: BindingSpec['access'] = 'read'): BindingSpec => ({ name, access });
const u32 = (name: string, access: BindingSpec['access'] = 'read'): BindingSpec => ({ name, access, type: 'u32' });

const ROW_BINDINGS: Record<RowOp, readonly BindingSpec[]> = {
  softmax: [f('x'), f('y', 'read_write')],
  logSoftmax: [f('x'), f('y', 'read_write')],
  softmaxBwd: [f('y'), f('dy'), f('dx', 'read_write')],
  logSoftmaxBwd: [f('y'), f('dy'), f('dx', 'read_write')],
  argmax: [f('x'), u32('pred', 'read_write')],
  crossEntropy: [f('x'), u32('labels'), f('probs', 'read_write'), f('rowLoss', 'read_write'), u32('pred', 'read_write')],
};

const rowKernel = memo((op: RowOp, v: SoftmaxVersion) => `${op}.${v}`, (op: RowOp, v: SoftmaxVersion): KernelSpec<UniformSpec> => ({
  name: `${op}.${v}`, key: `softmax.${op}.${v}`,
  uniforms: op === 'crossEntropy' ? ({ n: 'u32', k: 'u32', eps: 'f32' } satisfies CeU) : ROW_U,
  bindings: ROW_BINDINGS[op],
  workgroupSize: [WG_ROW, 1, 1],
  body: rowMain(v, ROW_BODIES[op]),
}));

/** [rows, K] of a tensor whose softmax axis is the last one. */
function rowsK(what: string, x: Tensor, axis = -1): [number, number] {
  const r = x.shape.length;
  if (r === 0) throw new Error(`${what}: needs at least one axis`);
  if (axis !== -1 && axis !== r - 1) {
    throw new Error(`${what}: only the last axis is supported (got axis ${axis} of rank ${r}); reshape or transpose so the axis is last`);
  }
  const K = x.shape[r - 1]!;
  if (K < 1) throw new Error(`${what}: the softmax axis is empty`);
  if (x.byteLength > x.gpu.maxBinding) throw new Error(`${what}: ${x.byteLength} bytes exceed the binding limit ${x.gpu.maxBinding}`);
  return [x.size / K, K];
}

function rowGrid(rows: number, v: SoftmaxVersion): [number, number, number] {
  return v === 'v1' ? grid1d(rows, WG_ROW) : grid1d(rows, 1);
}

function runRow(op: Exclude<RowOp, 'crossEntropy'>, inputs: Tensor[], out: Tensor, rows: number, K: number, version?: SoftmaxVersion) {
  const gpu = out.gpu;
  const v = version ?? defaultSoftmaxVersion(gpu);
  gpu.run(rowKernel(op, v), [...inputs.map((t) => t.buffer), out.buffer], { n: rows, k: K }, rowGrid(rows, v), op);
}

export interface SoftmaxOptions {
  /** Must be the last axis (−1 or rank−1); other axes: reshape/transpose first. */
  axis?: number;
  version?: SoftmaxVersion;
}

/** y = softmax(x) over the last axis. */
export function softmax(x: Tensor, { axis, version }: SoftmaxOptions = {}): Tensor {
  assertF32('softmax', x);
  const [rows, K] = rowsK('softmax', x, axis);
  const y = Tensor.empty(x.gpu, x.shape);
  runRow('softmax', [x], y, rows, K, version);
  return y;
}

/** dX = y ⊙ (dY − Σ_k dY·y), given the forward's output y. */
export function softmaxBackward(y: Tensor, dY: Tensor, { axis, version }: SoftmaxOptions = {}): Tensor {
  assertF32('softmaxBackward', y, dY);
  const [rows, K] = rowsK('softmaxBackward', y, axis);
  expectShape('softmaxBackward dY', dY, y.shape);
  const dX = Tensor.empty(y.gpu, y.shape);
  runRow('softmaxBwd', [y, dY], dX, rows, K, version);
  return dX;
}

/** y = log softmax(x) over the last axis. */
export function logSoftmax(x: Tensor, { axis, version }: SoftmaxOptions = {}): Tensor {
  assertF32('logSoftmax', x);
  const [rows, K] = rowsK('logSoftmax', x, axis);
  const y = Tensor.empty(x.gpu, x.shape);
  runRow('logSoftmax', [x], y, rows, K, version);
  return y;
}

/** dX = dY − exp(y)·Σ_k dY, given the forward's output y = logSoftmax(x). */
export function logSoftmaxBackward(y: Tensor, dY: Tensor, { axis, version }: SoftmaxOptions = {}): Tensor {
  assertF32('logSoftmaxBackward', y, dY);
  const [rows, K] = rowsK('logSoftmaxBackward', y, axis);
  expectShape('logSoftmaxBackward dY', dY, y.shape);
  const dX = Tensor.empty(y.gpu, y.shape);
  runRow('logSoftmaxBwd', [y, dY], dX, rows, K, version);
  return dX;
}

/** pred[n] = argmax_k x[n, k] as a u32 tensor of the row shape (read it with `readU32`). */
export function argmaxRows(x: Tensor, { version }: { version?: SoftmaxVersion } = {}): Tensor {
  assertF32('argmaxRows', x);
  const [rows, K] = rowsK('argmaxRows', x);
  const pred = new Tensor(x.gpu, x.gpu.alloc(Math.max(4, rows * 4), 'argmax'), x.shape.slice(0, -1));
  runRow('argmax', [x], pred, rows, K, version);
  return pred;
}

// ---- u32 label tensors -----------------------------------------------------------------------

/**
 * A [N] tensor holding u32 class indices (a Tensor's buffer is untyped; only kernels that declare a
 * 'u32' binding may read it). With `numClasses`, every label is checked to be in [0, K).
 */
export function labelsTensor(gpu: Gpu, labels: Uint32Array, numClasses?: number): Tensor {
  if (numClasses !== undefined) checkLabels(labels, numClasses);
  const t = new Tensor(gpu, gpu.alloc(Math.max(4, labels.length * 4), 'labels'), [labels.length]);
  if (labels.length) gpu.upload(t.buffer, labels);
  return t;
}

/** Reads a u32 tensor (labels, argmaxRows) back to the CPU. */
export async function readU32(t: Tensor): Promise<Uint32Array> {
  t.assertLive();
  if (t.size === 0) return new Uint32Array(0);
  return new Uint32Array(await t.gpu.read(t.buffer, 0, t.byteLength));
}

function checkLabels(labels: Uint32Array, K: number) {
  for (let n = 0; n < labels.length; n++) {
    if (labels[n]! >= K) throw new Error(`label ${labels[n]} at row ${n} is out of range: the model has ${K} classes (0..${K - 1})`);
  }
}

/** A label tensor for N rows: the caller's, or a validated upload of a Uint32Array (owned: dispose). */
function labelsFor(what: string, gpu: Gpu, labels: Tensor | Uint32Array, N: number, K: number): { t: Tensor; owned: boolean } {
  if (labels instanceof Tensor) {
    if (labels.size !== N) throw new Error(`${what}: ${labels.size} labels for ${N} rows`);
    return { t: labels, owned: false };
  }
  if (labels.length !== N) throw new Error(`${what}: ${labels.length} labels for ${N} rows`);
  return { t: labelsTensor(gpu, labels, K), owned: true };
}

// ---- fused softmax cross-entropy -------------------------------------------------------------

export type Reduction = 'mean' | 'sum';

export interface CrossEntropyOptions {
  /** ε in q = (1−ε)·onehot + ε/K (PyTorch `label_smoothing`). Default 0. */
  labelSmoothing?: number;
  /** Over the batch: 'mean' (default, as PyTorch) or 'sum'. */
  reduction?: Reduction;
  /** Also return the per-row losses [N] (e.g. for "top losses"). */
  rowLosses?: boolean;
  /** Also return pred (argmax, u32 [N]) and correct [1] (count of pred == label, as f32). */
  accuracy?: boolean;
  version?: SoftmaxVersion;
}

export interface CrossEntropyResult {
  /** [1]: mean (or sum) over the batch of −Σ_k q_k log p_k. */
  loss: Tensor;
  /** [N, K] softmax probabilities, saved for the backward. */
  probs: Tensor;
  rowLoss?: Tensor;
  pred?: Tensor;
  correct?: Tensor;
}

// Batch reduction: one invocation, serial over N (see header).
const ceReduceKernel: KernelSpec<{ n: 'u32'; div: 'f32' }> = {
  name: 'crossEntropy.reduce.v1', key: 'softmax.crossEntropy.reduce',
  uniforms: { n: 'u32', div: 'f32' },
  bindings: [f('rowLoss'), u32('pred'), u32('labels'), f('loss', 'read_write'), f('correct', 'read_write')],
  workgroupSize: [1, 1, 1],
  body: /* wgsl */ `
@compute @workgroup_size(1)
fn main() {
  var s = 0.0; var c = 0u;
  for (var r = 0u; r < u.n; r++) {
    s += rowLoss[r];
    // An out-of-range label is never correct (pred < K).
    c += select(0u, 1u, pred[r] == labels[r]);
  }
  loss[0] = s / u.div;
  correct[0] = f32(c);
}`,
};

/**
 * Fused softmax + cross-entropy against class indices. logits [N, K]; labels u32 [N] as a Tensor
 * (see `labelsTensor`) or a Uint32Array (validated against K, then uploaded).
 */
export function softmaxCrossEntropy(logits: Tensor, labels: Tensor | Uint32Array, opts: CrossEntropyOptions = {}): CrossEntropyResult {
  assertF32('softmaxCrossEntropy', logits);
  const { labelSmoothing = 0, reduction = 'mean', rowLosses = false, accuracy = false, version } = opts;
  if (logits.shape.length !== 2) throw new Error(`softmaxCrossEntropy: logits must be [N, K], got [${logits.shape.join(', ')}]`);
  const [N, K] = rowsK('softmaxCrossEntropy', logits);
  if (N < 1) throw new Error('softmaxCrossEntropy: empty batch');
  if (!(labelSmoothing >= 0 && labelSmoothing <= 1)) throw new Error(`softmaxCrossEntropy: labelSmoothing ${labelSmoothing} is not in [0, 1]`);
  const gpu = logits.gpu;
  const lab = labelsFor('softmaxCrossEntropy', gpu, labels, N, K);
  const probs = Tensor.empty(gpu, [N, K]);
  const rowLoss = Tensor.empty(gpu, [N]);
  const pred = new Tensor(gpu, gpu.alloc(N * 4, 'pred'), [N]);
  const loss = Tensor.empty(gpu, [1]);
  const correct = Tensor.empty(gpu, [1]);
  const v = version ?? defaultSoftmaxVersion(gpu);
  gpu.run(rowKernel('crossEntropy', v), [logits.buffer, lab.t.buffer, probs.buffer, rowLoss.buffer, pred.buffer],
    { n: N, k: K, eps: labelSmoothing }, rowGrid(N, v), 'crossEntropy');
  gpu.run(ceReduceKernel, [rowLoss.buffer, pred.buffer, lab.t.buffer, loss.buffer, correct.buffer],
    { n: N, div: reduction === 'mean' ? N : 1 }, [1, 1, 1], 'crossEntropy');
  if (lab.owned) lab.t.dispose();
  const out: CrossEntropyResult = { loss, probs };
  if (rowLosses) out.rowLoss = rowLoss; else rowLoss.dispose();
  if (accuracy) { out.pred = pred; out.correct = correct; } else { pred.dispose(); correct.dispose(); }
  return out;
}

type CeBwdU = { n: 'u32'; k: 'u32'; eps: 'f32'; scale: 'f32' };
const ceBackwardKernel = memo((withDLoss: boolean) => String(withDLoss), (withDLoss: boolean): KernelSpec<CeBwdU> => ({
  name: 'crossEntropy.bwd.v1', key: `softmax.crossEntropy.bwd.${withDLoss ? 'dloss' : 'scalar'}`,
  uniforms: { n: 'u32', k: 'u32', eps: 'f32', scale: 'f32' },
  bindings: [f('probs'), u32('labels'), ...(withDLoss ? [f('dLoss')] : []), f('dx', 'read_write')],
  workgroupSize: [WG_EW, 1, 1],
  body: /* wgsl */ `
@compute @workgroup_size(${WG_EW})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = ${LINEAR_INDEX};
  if (i >= u.n) { return; }
  let row = i / u.k;
  let c = i - row * u.k;
  let lab = min(labels[row], u.k - 1u); // clamped as in the forward
  let q = select(0.0, 1.0 - u.eps, c == lab) + u.eps / f32(u.k);
  dx[i] = (probs[i] - q) * ${withDLoss ? 'u.scale * dLoss[0]' : 'u.scale'};
}`,
}));

export interface CrossEntropyBackwardOptions {
  labelSmoothing?: number;
  reduction?: Reduction;
  /** Upstream gradient of the loss as a number (default 1) ... */
  scale?: number;
  /** ... and/or as a [1] tensor on the GPU (multiplied together). */
  dLoss?: Tensor;
}

/** dLogits [N, K] = (p − q) · dLoss / N ('mean') or (p − q) · dLoss ('sum'). probs from the forward. */
export function softmaxCrossEntropyBackward(probs: Tensor, labels: Tensor | Uint32Array, opts: CrossEntropyBackwardOptions = {}): Tensor {
  assertF32('softmaxCrossEntropyBackward', probs);
  const { labelSmoothing = 0, reduction = 'mean', scale = 1, dLoss } = opts;
  if (probs.shape.length !== 2) throw new Error(`softmaxCrossEntropyBackward: probs must be [N, K], got [${probs.shape.join(', ')}]`);
  const [N, K] = rowsK('softmaxCrossEntropyBackward', probs);
  if (dLoss && dLoss.size !== 1) throw new Error(`softmaxCrossEntropyBackward: dLoss must have one element, got [${dLoss.shape.join(', ')}]`);
  const gpu = probs.gpu;
  const lab = labelsFor('softmaxCrossEntropyBackward', gpu, labels, N, K);
  const dX = Tensor.empty(gpu, [N, K]);
  const s = reduction === 'mean' ? scale / N : scale; // float64 on the CPU, one rounding to f32
  const b = [probs.buffer, lab.t.buffer, ...(dLoss ? [dLoss.buffer] : []), dX.buffer];
  gpu.run(ceBackwardKernel(dLoss !== undefined), b, { n: N * K, k: K, eps: labelSmoothing, scale: s }, grid1d(N * K, WG_EW), 'crossEntropy');
  if (lab.owned) lab.t.dispose();
  return dX;
}
