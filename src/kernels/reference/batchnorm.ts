// Reference: batch normalisation over NCHW (float64 loops). x: [N, C, ...spatial] (rank ≥ 2; a 2-D
// [N, C] input has H·W = 1). Per-channel parameters gamma, beta, mean, var: [C]. m = N·H·W.

type Arr = ArrayLike<number>;

/** N, C and H·W of a shape [N, C, ...]. */
export function bnDimsRef(shape: readonly number[]): { N: number; C: number; HW: number } {
  if (shape.length < 2) throw new Error(`batchnorm: expected [N, C, ...], got [${shape.join(', ')}]`);
  return { N: shape[0]!, C: shape[1]!, HW: shape.slice(2).reduce((p, q) => p * q, 1) };
}

/** Calls f(index, channel) for every element of channel-major order, channel by channel. */
function forChannel(shape: readonly number[], c: number, f: (i: number) => void) {
  const { N, C, HW } = bnDimsRef(shape);
  for (let n = 0; n < N; n++) {
    const base = (n * C + c) * HW;
    for (let j = 0; j < HW; j++) f(base + j);
  }
}

/** Batch statistics per channel: mean and biased variance (two-pass: mean, then Σ(x − mean)²/m). */
export function batchNormStatsRef(x: Arr, shape: readonly number[]): { mean: Float64Array; variance: Float64Array } {
  const { N, C, HW } = bnDimsRef(shape);
  const m = N * HW;
  const mean = new Float64Array(C), variance = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    let s = 0;
    forChannel(shape, c, (i) => { s += x[i]!; });
    const mu = s / m;
    let s2 = 0;
    forChannel(shape, c, (i) => { s2 += (x[i]! - mu) ** 2; });
    mean[c] = mu; variance[c] = s2 / m;
  }
  return { mean, variance };
}

/** y = gamma·(x − mean)/sqrt(var + eps) + beta with given (running) statistics. */
export function batchNorm2dInferenceRef(x: Arr, shape: readonly number[], gamma: Arr, beta: Arr, mean: Arr, variance: Arr, eps = 1e-5): Float64Array {
  const { C } = bnDimsRef(shape);
  const y = new Float64Array(x.length);
  for (let c = 0; c < C; c++) {
    const inv = 1 / Math.sqrt(variance[c]! + eps);
    forChannel(shape, c, (i) => { y[i] = gamma[c]! * (x[i]! - mean[c]!) * inv + beta[c]!; });
  }
  return y;
}

/** Inference followed by ReLU (the fused kernel): y = max(0, gamma·(x − mean)/sqrt(var + eps) + beta). */
export function batchNorm2dInferenceReluRef(x: Arr, shape: readonly number[], gamma: Arr, beta: Arr, mean: Arr, variance: Arr, eps = 1e-5): Float64Array {
  return batchNorm2dInferenceRef(x, shape, gamma, beta, mean, variance, eps).map((v) => Math.max(0, v));
}

export interface BatchNormTrainRef {
  y: Float64Array; saveMean: Float64Array; saveInvStd: Float64Array;
  /** Updated running statistics (new arrays; the inputs are not modified). */
  runningMean: Float64Array; runningVar: Float64Array;
}

/**
 * Training-mode forward: normalise with the batch statistics (biased variance) and update running
 * statistics PyTorch-style, running = (1 − momentum)·running + momentum·batch, with the UNBIASED
 * batch variance (× m/(m − 1)) in the running variance.
 */
export function batchNorm2dTrainRef(
  x: Arr, shape: readonly number[], gamma: Arr, beta: Arr, runningMean: Arr, runningVar: Arr,
  { eps = 1e-5, momentum = 0.1 } = {},
): BatchNormTrainRef {
  const { N, HW } = bnDimsRef(shape);
  const m = N * HW;
  const { mean, variance } = batchNormStatsRef(x, shape);
  const saveInvStd = Float64Array.from(variance, (v) => 1 / Math.sqrt(v + eps));
  const y = batchNorm2dInferenceRef(x, shape, gamma, beta, mean, variance, eps);
  const rm = Float64Array.from(runningMean, (r, c) => (1 - momentum) * r + momentum * mean[c]!);
  const rv = Float64Array.from(runningVar, (r, c) => (1 - momentum) * r + momentum * variance[c]! * m / (m - 1));
  return { y, saveMean: mean, saveInvStd, runningMean: rm, runningVar: rv };
}

export interface BatchNormGradsRef { dX: Float64Array; dGamma: Float64Array; dBeta: Float64Array }

/**
 * Training-mode backward (the statistics depend on x):
 *   x̂ = (x − mean)·invStd,  dGamma = Σ dY·x̂,  dBeta = Σ dY,
 *   dX = gamma·invStd/m · (m·dY − Σ dY − x̂·Σ(dY·x̂))        (sums per channel over N·H·W)
 */
export function batchNorm2dBackwardRef(x: Arr, shape: readonly number[], dY: Arr, gamma: Arr, saveMean: Arr, saveInvStd: Arr): BatchNormGradsRef {
  const { N, C, HW } = bnDimsRef(shape);
  const m = N * HW;
  const dX = new Float64Array(x.length), dGamma = new Float64Array(C), dBeta = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    const mu = saveMean[c]!, inv = saveInvStd[c]!;
    let sdy = 0, sdyx = 0;
    forChannel(shape, c, (i) => { sdy += dY[i]!; sdyx += dY[i]! * (x[i]! - mu) * inv; });
    dGamma[c] = sdyx; dBeta[c] = sdy;
    const k = gamma[c]! * inv / m;
    forChannel(shape, c, (i) => { dX[i] = k * (m * dY[i]! - sdy - (x[i]! - mu) * inv * sdyx); });
  }
  return { dX, dGamma, dBeta };
}

/**
 * Inference-mode backward (frozen statistics: BN is a per-channel affine map):
 *   dX = dY·gamma·invStd,  dGamma = Σ dY·(x − mean)·invStd,  dBeta = Σ dY,  invStd = 1/sqrt(var + eps).
 */
export function batchNorm2dInferenceBackwardRef(
  x: Arr, shape: readonly number[], dY: Arr, gamma: Arr, mean: Arr, variance: Arr, eps = 1e-5,
): BatchNormGradsRef {
  const { C } = bnDimsRef(shape);
  const dX = new Float64Array(x.length), dGamma = new Float64Array(C), dBeta = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    const inv = 1 / Math.sqrt(variance[c]! + eps);
    forChannel(shape, c, (i) => {
      dX[i] = dY[i]! * gamma[c]! * inv;
      dGamma[c] += dY[i]! * (x[i]! - mean[c]!) * inv;
      dBeta[c] += dY[i]!;
    });
  }
  return { dX, dGamma, dBeta };
}
