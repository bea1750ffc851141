// Reference: matmul and the dense layer (float64 loops).

type Arr = ArrayLike<number>;

export interface MatmulRefOptions { transA?: boolean; transB?: boolean; bias?: Arr; beta?: number; out?: Arr; relu?: boolean }

/**
 * C[M,N] = op(A)·op(B) + bias[N] + β·out (relu: max(0, ·)), row-major. A: [M,K] (transA: [K,M]), B: [K,N] (transB: [N,K]).
 */
export function matmulRef(a: Arr, b: Arr, M: number, N: number, K: number, o: MatmulRefOptions = {}): Float64Array {
  const c = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) {
        const av = o.transA ? a[k * M + m]! : a[m * K + k]!;
        const bv = o.transB ? b[n * K + k]! : b[k * N + n]!;
        s += av * bv;
      }
      if (o.bias) s += o.bias[n]!;
      if (o.beta && o.out) s += o.beta * o.out[m * N + n]!;
      c[m * N + n] = o.relu ? Math.max(0, s) : s;
    }
  }
  return c;
}

/** y[N,K] = x[N,C]·Wᵀ + b (relu: max(0, ·)), W: [K,C]. */
export function denseRef(x: Arr, W: Arr, b: Arr | undefined, N: number, C: number, K: number, relu = false): Float64Array {
  return matmulRef(x, W, N, K, C, { transB: true, bias: b, relu });
}

/** dX[N,C] = dY·W, dW[K,C] = dYᵀ·x, db[K] = Σ_n dY[n,:]. */
export function denseBackwardRef(x: Arr, W: Arr, dY: Arr, N: number, C: number, K: number): { dX: Float64Array; dW: Float64Array; db: Float64Array } {
  const db = new Float64Array(K);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) db[k]! += dY[n * K + k]!;
  return {
    dX: matmulRef(dY, W, N, C, K),
    dW: matmulRef(dY, x, K, C, N, { transA: true }),
    db,
  };
}
