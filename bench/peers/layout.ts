// Layout conversions between wgtrain (NCHW activations, KCRS weights: PyTorch's) and TensorFlow.js
// (NHWC activations, RSCK = HWIO weights).

/** [N, C, H, W] → [N, H, W, C]. */
export function nchwToNhwc(x: Float32Array, N: number, C: number, H: number, W: number): Float32Array {
  const y = new Float32Array(x.length);
  for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) for (let h = 0; h < H; h++) for (let w = 0; w < W; w++) {
    y[((n * H + h) * W + w) * C + c] = x[((n * C + c) * H + h) * W + w]!;
  }
  return y;
}

/** [N, H, W, C] → [N, C, H, W]. */
export function nhwcToNchw(x: Float32Array, N: number, C: number, H: number, W: number): Float32Array {
  const y = new Float32Array(x.length);
  for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) for (let h = 0; h < H; h++) for (let w = 0; w < W; w++) {
    y[((n * C + c) * H + h) * W + w] = x[((n * H + h) * W + w) * C + c]!;
  }
  return y;
}

/** Weights [K, C, R, S] → [R, S, C, K]. */
export function kcrsToRsck(w: Float32Array, K: number, C: number, R: number, S: number): Float32Array {
  const y = new Float32Array(w.length);
  for (let k = 0; k < K; k++) for (let c = 0; c < C; c++) for (let r = 0; r < R; r++) for (let s = 0; s < S; s++) {
    y[((r * S + s) * C + c) * K + k] = w[((k * C + c) * R + r) * S + s]!;
  }
  return y;
}

/** Weights [R, S, C, K] → [K, C, R, S]. */
export function rsckToKcrs(w: Float32Array, K: number, C: number, R: number, S: number): Float32Array {
  const y = new Float32Array(w.length);
  for (let k = 0; k < K; k++) for (let c = 0; c < C; c++) for (let r = 0; r < R; r++) for (let s = 0; s < S; s++) {
    y[((k * C + c) * R + r) * S + s] = w[((r * S + s) * C + c) * K + k]!;
  }
  return y;
}
