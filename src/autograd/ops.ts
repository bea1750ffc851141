// Differentiable ops: each launches its forward kernel(s) and records a closure that launches the
// backward kernel(s), naming what it saved. Kernels live in src/kernels/; this file is only glue.

import { Tensor } from '../gpu/tensor.js';
import * as ew from '../kernels/elementwise.js';
import * as pool from '../kernels/pool.js';
import * as bn from '../kernels/batchnorm.js';
import * as drop from '../kernels/dropout.js';
import * as sm from '../kernels/softmax.js';
import * as mm from '../kernels/matmul.js';
import * as conv from '../kernels/conv2d.js';
import * as act from '../kernels/activation.js';
import * as shp from '../kernels/shape.js';
import * as lrnK from '../kernels/lrn.js';
import { record, Variable } from './variable.js';

/** A constant input (no gradient): an image batch, labels, a mask. */
export function constant(t: Tensor, name = ''): Variable { return new Variable(t, false, name); }

/** y = max(x, 0). Saves y (its sign is x's) for dX = dY·[y > 0]. */
export function relu(x: Variable): Variable {
  const y = ew.relu(x.data);
  return record('relu', y, [x], (dY) => [ew.reluBackward(y, dY)]);
}

export function leakyRelu(x: Variable, alpha: number): Variable {
  const y = ew.leakyRelu(x.data, alpha);
  return record('leakyRelu', y, [x], (dY) => [ew.reluBackward(y, dY, alpha)], [], { alpha });
}

/** y = a ∘ b with broadcasting; the backward sums over broadcast axes. Saves a and b (for mul/div). */
export function binary(op: ew.BinaryOp, a: Variable, b: Variable): Variable {
  const y = ew.binary(op, a.data, b.data);
  return record(op, y, [a, b], (dY, needs) => {
    const [dA, dB] = ew.binaryBackward(op, a.data, b.data, dY);
    if (!needs[0]) { dA.dispose(); }
    if (!needs[1]) { dB.dispose(); }
    return [needs[0] ? dA : null, needs[1] ? dB : null];
  });
}

export const add = (a: Variable, b: Variable) => binary('add', a, b);
export const sub = (a: Variable, b: Variable) => binary('sub', a, b);
export const mul = (a: Variable, b: Variable) => binary('mul', a, b);
export const div = (a: Variable, b: Variable) => binary('div', a, b);

/** y = αx. */
export function scale(x: Variable, alpha: number): Variable {
  return record('scale', ew.scale(x.data, alpha), [x], (dY) => [ew.scale(dY, alpha)], [], { alpha });
}

/**
 * Same data, new shape, no copy: the output is a view of x's buffer (disposing it frees nothing),
 * and the gradient is dY's buffer under x's shape (backward() sees the alias and keeps it alive).
 */
export function reshape(x: Variable, shape: readonly number[]): Variable {
  return record('reshape', x.data.reshape(shape), [x], (dY) => [new Tensor(dY.gpu, dY.buffer, x.shape)], [], { shape });
}

/** [N, ...] -> [N, rest] (PyTorch flatten(1)). */
export function flatten(x: Variable): Variable {
  const n = x.shape[0] ?? 1;
  return reshape(x, [n, x.size / n]);
}

// ---- pooling ------------------------------------------------------------------------------------

/** Max pooling. Saves the argmax (u32 per output) so the backward routes dY to the winners. */
export function maxPool2d(x: Variable, opts: pool.MaxPool2dOptions): Variable {
  const { y, argmax } = pool.maxPool2d(x.data, opts);
  return record('maxPool2d', y, [x], (dY) => [pool.maxPool2dBackward(dY, argmax, x.shape, opts)], [argmax], { ...opts });
}

/** Average pooling (count_include_pad per opts). Saves nothing: the backward needs only shapes. */
export function avgPool2d(x: Variable, opts: pool.AvgPool2dOptions): Variable {
  return record('avgPool2d', pool.avgPool2d(x.data, opts), [x], (dY) => [pool.avgPool2dBackward(dY, x.shape, opts)], [], { ...opts });
}

/** [N,C,H,W] -> [N,C,1,1] mean over H·W. */
export function globalAvgPool(x: Variable): Variable {
  return record('globalAvgPool', pool.globalAvgPool(x.data), [x], (dY) => [pool.globalAvgPoolBackward(dY, x.shape)]);
}

/** PyTorch AdaptiveAvgPool2d bins. */
export function adaptiveAvgPool2d(x: Variable, out: pool.PoolPair): Variable {
  return record('adaptiveAvgPool2d', pool.adaptiveAvgPool2d(x.data, out), [x], (dY) => [pool.adaptiveAvgPool2dBackward(dY, x.shape)], [], { out });
}

// ---- normalisation and regularisation ----------------------------------------------------------

export interface BatchNormArgs {
  gamma: Variable; beta: Variable; runningMean: Tensor; runningVar: Tensor;
  eps: number; momentum: number;
  /**
   * 'batch': normalise with batch statistics and update the running ones (training);
   * 'running': normalise with the running statistics, which stay untouched (inference, or a frozen
   * BatchNorm during fine-tuning — Keras' behaviour, and the right default for a frozen base).
   */
  stats: 'batch' | 'running';
  /**
   * y = relu(BN(x)). With running statistics this is one fused kernel (recorded as one op whose attrs
   * say `activation: 'relu'`; ONNX export writes it back as BatchNormalization + Relu). With batch
   * statistics it is the two ops, unfused.
   */
  relu?: boolean;
}

export function batchNorm(x: Variable, a: BatchNormArgs): Variable {
  const { gamma, beta, runningMean, runningVar, eps } = a;
  if (a.relu && a.stats !== 'running') return relu(batchNorm(x, { ...a, relu: false }));
  if (a.stats === 'running') {
    const fused = a.relu === true;
    const y = bn.batchNorm2dInference(x.data, gamma.data, beta.data, runningMean, runningVar, eps, { relu: fused });
    // Backward of an affine map: dX = dY·γ/√(var+ε); dγ = Σ dY·x̂; dβ = Σ dY (x̂ from running stats).
    // Fused ReLU: first dZ = dY·[y > 0] (y, the saved output, is positive exactly where BN(x) is).
    return record('batchNorm', y, [x, gamma, beta], (dY, needs) => {
      const dZ = fused ? ew.reluBackward(y, dY) : dY;
      const g = bn.batchNorm2dInferenceBackward(x.data, dZ, gamma.data, runningMean, runningVar, eps,
        { needDX: needs[0], needDGamma: needs[1], needDBeta: needs[2] });
      if (dZ !== dY) dZ.dispose();
      return [g.dX, g.dGamma, g.dBeta];
    }, [], { eps, runningMean, runningVar, stats: 'running', ...(fused ? { activation: 'relu' } : {}) });
  }
  const r = bn.batchNorm2dTrain(x.data, gamma.data, beta.data, runningMean, runningVar, { eps, momentum: a.momentum, updateStats: true });
  // Saves the batch mean and 1/√(var+ε) so the backward need not recompute them.
  return record('batchNorm', r.y, [x, gamma, beta], (dY, needs) => {
    const g = bn.batchNorm2dBackward(x.data, dY, gamma.data, r.saveMean, r.saveInvStd,
      { needDX: needs[0], needDGamma: needs[1], needDBeta: needs[2] });
    return [g.dX, g.dGamma, g.dBeta];
  }, [r.saveMean, r.saveInvStd], { eps, runningMean, runningVar, stats: 'batch' });
}

/**
 * Inverted dropout. The mask is regenerated from the seed in the backward, so nothing is saved.
 * `seed` is a number, or a generator of seeds: then a captured step draws a fresh seed for every
 * replay and rewrites it into both the forward and the backward dispatches (same mask in both).
 */
export function dropout(x: Variable, p: number, seed: number | (() => number)): Variable {
  const next = typeof seed === 'number' ? null : seed;
  const s0 = next ? next() : (seed as number);
  const gpu = x.data.gpu;
  const fwd = drop.dropoutLaunch(x.data, p, s0);
  let bwdReseed: ((s: number) => void) | null = null;
  if (next && gpu.capturing) gpu.onReplay(() => { const s = next(); fwd.reseed(s); bwdReseed?.(s); });
  return record('dropout', fwd.y, [x], (dY) => {
    const b = drop.dropoutLaunch(dY, p, s0);
    bwdReseed = b.reseed;
    return [b.y];
  }, [], { p });
}

// ---- classification losses ------------------------------------------------------------------------

export interface CrossEntropyOut {
  /** Scalar loss (mean over the batch), differentiable. */
  loss: Variable;
  /** [1] count of argmax == label (f32), not part of the graph. */
  correct: Tensor;
}

/**
 * Fused softmax + cross-entropy against class indices (u32 [N] tensor). Saves the probabilities:
 * the backward is dLogits = (p − q)·dLoss/N, q the (smoothed) one-hot target.
 */
export function crossEntropy(logits: Variable, labels: Tensor, labelSmoothing = 0): CrossEntropyOut {
  const r = sm.softmaxCrossEntropy(logits.data, labels, { labelSmoothing, accuracy: true });
  r.pred?.dispose();
  const loss = record('crossEntropy', r.loss, [logits],
    (dLoss) => [sm.softmaxCrossEntropyBackward(r.probs, labels, { labelSmoothing, dLoss })], [r.probs], { labelSmoothing });
  return { loss, correct: r.correct! };
}

/** Softmax over the last axis of [N, K]. Saves y: dX = y ⊙ (dY − Σ dY·y). */
export function softmax(x: Variable): Variable {
  const y = sm.softmax(x.data);
  return record('softmax', y, [x], (dY) => [sm.softmaxBackward(y, dY)]);
}

/** log-softmax over the last axis of [N, K]. Saves y: dX = dY − exp(y)·Σ dY. */
export function logSoftmax(x: Variable): Variable {
  const y = sm.logSoftmax(x.data);
  return record('logSoftmax', y, [x], (dY) => [sm.logSoftmaxBackward(y, dY)]);
}

// ---- dense and convolution ----------------------------------------------------------------------

/**
 * y = x·Wᵀ + b (PyTorch Linear). The backward computes only what is needed: no dW/db for a frozen
 * layer, no dX when x needs no gradient (the lowest trainable layer).
 * activation 'relu': y = relu(x·Wᵀ + b) in the matmul's epilogue (one op, attrs `activation: 'relu'`;
 * exported as Gemm + Relu); its backward masks dY with [y > 0] first, as `conv2d`'s does.
 */
export function linear(x: Variable, w: Variable, b: Variable | null, activation?: 'relu'): Variable {
  const fused = activation === 'relu';
  const y = mm.dense(x.data, w.data, b?.data, fused ? { relu: true } : {});
  const inputs = b ? [x, w, b] : [x, w];
  return record('linear', y, inputs, (dY, needs) => {
    const dZ = fused ? ew.reluBackward(y, dY) : dY;
    const g = mm.denseBackward(x.data, w.data, dZ, { needDX: needs[0], needDW: needs[1], needDB: b ? needs[2] : false });
    if (dZ !== dY) dZ.dispose();
    return [g.dX ?? null, g.dW ?? null, g.db ?? null];
  }, [], fused ? { activation: 'relu' } : {});
}

/**
 * 2-D convolution; the same skipping rules as `linear`. Saves nothing beyond its inputs (and, fused
 * with a ReLU, its output).
 * opts.activation = 'relu' fuses y = relu(conv(x) + b) into the convolution's dispatch (one op on the
 * tape, attrs `activation: 'relu'`; ONNX export writes Conv + Relu). Its backward is the unfused
 * chain's: dZ = dY·[y > 0] (reluBackward on the saved OUTPUT y, which is positive exactly where the
 * pre-activation z is, so the mask and the gradients are the unfused path's bit for bit), then the
 * convolution's backward on dZ.
 */
export function conv2d(x: Variable, w: Variable, b: Variable | null, opts: conv.Conv2dOptions): Variable {
  const y = conv.conv2d(x.data, w.data, b?.data, opts);
  const inputs = b ? [x, w, b] : [x, w];
  const fused = opts.activation === 'relu';
  return record('conv2d', y, inputs, (dY, needs) => {
    const dZ = fused ? ew.reluBackward(y, dY) : dY;
    const g = conv.conv2dBackward(x.data, w.data, dZ, opts, { needDX: needs[0], needDW: needs[1], needDB: b ? needs[2] : false });
    if (dZ !== dY) dZ.dispose();
    return [g.dX ?? null, g.dW ?? null, g.db ?? null];
  }, [], { ...opts });
}

/** relu(conv2d(x, w) + b) in one forward dispatch (see `conv2d`'s `activation`). */
export function conv2dRelu(x: Variable, w: Variable, b: Variable | null, opts: conv.Conv2dOptions): Variable {
  return conv2d(x, w, b, { ...opts, activation: 'relu' });
}

// ---- ops of imported graphs (activations, data movement, LRN) -----------------------------------

/** σ(x) = 1/(1 + e^−x). Saves y: dX = dY·y·(1 − y). */
export function sigmoid(x: Variable): Variable {
  const y = act.sigmoid(x.data);
  return record('sigmoid', y, [x], (dY) => [act.sigmoidBackward(y, dY)]);
}

/** tanh(x). Saves y: dX = dY·(1 − y²). */
export function tanh(x: Variable): Variable {
  const y = act.tanh(x.data);
  return record('tanh', y, [x], (dY) => [act.tanhBackward(y, dY)]);
}

/** min(max(x, lo), hi) (ONNX Clip, ReLU6). The backward reads x (see clipBackward's modes). */
export function clip(x: Variable, lo = -Infinity, hi = Infinity, mode: act.ClipGradMode = 'clamp'): Variable {
  const y = act.clip(x.data, lo, hi);
  return record('clip', y, [x], (dY) => [act.clipBackward(x.data, dY, lo, hi, { mode })], [], { lo, hi });
}

/** Axis permutation; the backward applies the inverse permutation. */
export function transpose(x: Variable, perm: readonly number[]): Variable {
  const y = shp.transpose(x.data, perm);
  return record('transpose', y, [x], (dY) => [shp.transposeBackward(dY, perm)], [], { perm });
}

/** Concatenation along `axis`; the backward slices dY back into the inputs' shapes. */
export function concat(xs: readonly Variable[], axis: number): Variable {
  const y = shp.concat(xs.map((v) => v.data), axis);
  const shapes = xs.map((v) => v.shape);
  return record('concat', y, xs, (dY, needs) => {
    const parts = shp.concatBackward(dY, shapes, axis);
    return parts.map((p, i) => { if (needs[i]) return p; p.dispose(); return null; });
  }, [], { axis });
}

/** Constant padding, ONNX layout [begin_0 … begin_{r−1}, end_0 … end_{r−1}]; negative pads crop. */
export function pad(x: Variable, pads: readonly number[], value = 0): Variable {
  const y = shp.pad(x.data, pads, value);
  const xShape = x.shape;
  return record('pad', y, [x], (dY) => [shp.padBackward(dY, xShape, pads)], [], { pads, value });
}

/** Strided slice with resolved (non-negative) bounds; the backward scatters dY into zeros. */
export function slice(x: Variable, spec: shp.SliceSpec): Variable {
  const y = shp.slice(x.data, spec);
  const xShape = x.shape;
  return record('slice', y, [x], (dY) => [shp.sliceBackward(dY, xShape, spec)], [], { ...spec });
}

/** Local response normalisation across channels (AlexNet-era CNNs). Saves the denominators. */
export function lrn(x: Variable, opts: lrnK.LrnOptions): Variable {
  const { y, denom } = lrnK.lrn(x.data, opts);
  return record('lrn', y, [x], (dY) => [lrnK.lrnBackward(x.data, denom, dY, opts)], [denom], { ...opts });
}
