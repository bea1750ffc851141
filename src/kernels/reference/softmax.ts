// Reference: softmax family (float64 loops). x is [N, K] row-major; rows are independent.

type Arr = ArrayLike<number>;

function rowsOf(x: Arr, K: number): number {
  if (K < 1 || x.length % K !== 0) throw new Error(`softmax ref: ${x.length} values are not rows of ${K}`);
  return x.length / K;
}

/** log Σ_k exp(x[n, k]) for one row, stable (the row max subtracted). */
function logSumExp(x: Arr, base: number, K: number): number {
  let m = -Infinity;
  for (let k = 0; k < K; k++) m = Math.max(m, x[base + k]!);
  let s = 0;
  for (let k = 0; k < K; k++) s += Math.exp(x[base + k]! - m);
  return m + Math.log(s);
}

/** y[n, k] = exp(x[n, k]) / Σ_j exp(x[n, j]). */
export function softmaxRef(x: Arr, K: number): Float64Array {
  const N = rowsOf(x, K);
  const y = new Float64Array(x.length);
  for (let n = 0; n < N; n++) {
    const lse = logSumExp(x, n * K, K);
    for (let k = 0; k < K; k++) y[n * K + k] = Math.exp(x[n * K + k]! - lse);
  }
  return y;
}

/** y[n, k] = x[n, k] − log Σ_j exp(x[n, j]). */
export function logSoftmaxRef(x: Arr, K: number): Float64Array {
  const N = rowsOf(x, K);
  const y = new Float64Array(x.length);
  for (let n = 0; n < N; n++) {
    const lse = logSumExp(x, n * K, K);
    for (let k = 0; k < K; k++) y[n * K + k] = x[n * K + k]! - lse;
  }
  return y;
}

/** dX = y ⊙ (dY − Σ_k dY·y), y = softmax(x). */
export function softmaxBackwardRef(y: Arr, dY: Arr, K: number): Float64Array {
  const N = rowsOf(y, K);
  const dX = new Float64Array(y.length);
  for (let n = 0; n < N; n++) {
    let dot = 0;
    for (let k = 0; k < K; k++) dot += dY[n * K + k]! * y[n * K + k]!;
    for (let k = 0; k < K; k++) dX[n * K + k] = y[n * K + k]! * (dY[n * K + k]! - dot);
  }
  return dX;
}

/** dX = dY − exp(y)·Σ_k dY, y = logSoftmax(x). */
export function logSoftmaxBackwardRef(y: Arr, dY: Arr, K: number): Float64Array {
  const N = rowsOf(y, K);
  const dX = new Float64Array(y.length);
  for (let n = 0; n < N; n++) {
    let s = 0;
    for (let k = 0; k < K; k++) s += dY[n * K + k]!;
    for (let k = 0; k < K; k++) dX[n * K + k] = dY[n * K + k]! - Math.exp(y[n * K + k]!) * s;
  }
  return dX;
}

export interface CrossEntropyRefOptions {
  labelSmoothing?: number;
  reduction?: 'mean' | 'sum';
}

/**
 * Cross-entropy of softmax(logits) against class indices, PyTorch semantics:
 *   q = (1−ε)·onehot(label) + ε/K,   rowLoss[n] = −Σ_k q_k log p_k,   loss = mean (or sum) over n.
 */
export function softmaxCrossEntropyRef(
  logits: Arr, labels: ArrayLike<number>, K: number, { labelSmoothing = 0, reduction = 'mean' }: CrossEntropyRefOptions = {},
): { loss: number; rowLoss: Float64Array; probs: Float64Array } {
  const N = rowsOf(logits, K);
  if (labels.length !== N) throw new Error(`softmaxCrossEntropyRef: ${labels.length} labels for ${N} rows`);
  const logp = logSoftmaxRef(logits, K);
  const rowLoss = new Float64Array(N);
  let total = 0;
  for (let n = 0; n < N; n++) {
    const y = labels[n]!;
    if (!(y >= 0 && y < K)) throw new Error(`softmaxCrossEntropyRef: label ${y} out of range [0, ${K})`);
    let l = 0;
    for (let k = 0; k < K; k++) {
      const q = (k === y ? 1 - labelSmoothing : 0) + labelSmoothing / K;
      l -= q * logp[n * K + k]!;
    }
    rowLoss[n] = l;
    total += l;
  }
  return { loss: reduction === 'mean' ? total / N : total, rowLoss, probs: logp.map(Math.exp) };
}

/** dLogits = (p − q) · scale / N (mean) or (p − q) · scale (sum). */
export function softmaxCrossEntropyBackwardRef(
  probs: Arr, labels: ArrayLike<number>, K: number,
  { labelSmoothing = 0, reduction = 'mean', scale = 1 }: CrossEntropyRefOptions & { scale?: number } = {},
): Float64Array {
  const N = rowsOf(probs, K);
  const f = reduction === 'mean' ? scale / N : scale;
  const d = new Float64Array(probs.length);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const q = (k === labels[n] ? 1 - labelSmoothing : 0) + labelSmoothing / K;
      d[n * K + k] = (probs[n * K + k]! - q) * f;
    }
  }
  return d;
}

/** Index of the largest value of each row; the first one on ties (as torch.argmax). */
export function argmaxRowsRef(x: Arr, K: number): Uint32Array {
  const N = rowsOf(x, K);
  const out = new Uint32Array(N);
  for (let n = 0; n < N; n++) {
    let best = 0;
    for (let k = 1; k < K; k++) if (x[n * K + k]! > x[n * K + best]!) best = k;
    out[n] = best;
  }
  return out;
}
