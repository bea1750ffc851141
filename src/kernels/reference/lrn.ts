// Reference: ONNX LRN across channels (float64). The backward is written as a scatter over each
// output's window (the GPU gathers over the mirrored window), from x alone (the GPU reads the saved
// denominators), so the two are independent.

type Arr = ArrayLike<number>;

export interface LrnRefOptions { size: number; alpha: number; beta: number; bias: number }

/** ONNX window of channel c: [max(0, c − ⌊(size−1)/2⌋), min(C − 1, c + ⌈(size−1)/2⌉)]. */
function window(c: number, C: number, size: number): [number, number] {
  return [Math.max(0, c - Math.floor((size - 1) / 2)), Math.min(C - 1, c + Math.ceil((size - 1) / 2))];
}

function dims(shape: readonly number[]) {
  return { N: shape[0]!, C: shape[1]!, S: shape.slice(2).reduce((p, q) => p * q, 1) };
}

/** y = x·d^−β with d = bias + (α/size)·Σ_window x²; also returns d. */
export function lrnRef(x: Arr, shape: readonly number[], o: LrnRefOptions): { y: Float64Array; denom: Float64Array } {
  const { N, C, S } = dims(shape);
  const y = new Float64Array(N * C * S), denom = new Float64Array(N * C * S);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      const [k0, k1] = window(c, C, o.size);
      for (let s = 0; s < S; s++) {
        let sq = 0;
        for (let k = k0; k <= k1; k++) sq += x[(n * C + k) * S + s]! ** 2;
        const i = (n * C + c) * S + s;
        denom[i] = o.bias + (o.alpha / o.size) * sq;
        y[i] = x[i]! * denom[i]! ** -o.beta;
      }
    }
  }
  return { y, denom };
}

/**
 * dX: for every output y_c, scatter dY_c·∂y_c/∂x_j to each j in its window:
 * ∂y_c/∂x_j = [c = j]·d_c^−β − (2αβ/size)·x_c·x_j·d_c^(−β−1).
 */
export function lrnBackwardRef(x: Arr, dY: Arr, shape: readonly number[], o: LrnRefOptions): Float64Array {
  const { N, C, S } = dims(shape);
  const { denom } = lrnRef(x, shape, o);
  const dx = new Float64Array(N * C * S);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      const [k0, k1] = window(c, C, o.size);
      for (let s = 0; s < S; s++) {
        const i = (n * C + c) * S + s;
        const d = denom[i]!, g = dY[i]!;
        dx[i]! += g * d ** -o.beta;
        const common = g * (2 * o.alpha * o.beta / o.size) * x[i]! * d ** (-o.beta - 1);
        for (let k = k0; k <= k1; k++) dx[(n * C + k) * S + s]! -= common * x[(n * C + k) * S + s]!;
      }
    }
  }
  return dx;
}
