// Reference: sigmoid, tanh, clip and their backwards (float64, straight from the definitions).

type Arr = ArrayLike<number>;

export function sigmoidRef(x: Arr): Float64Array { return Float64Array.from(x, (v) => 1 / (1 + Math.exp(-v))); }

/** dX = dY·y·(1 − y) from the saved output y. */
export function sigmoidBackwardRef(y: Arr, dY: Arr): Float64Array { return Float64Array.from(y, (v, i) => dY[i]! * v * (1 - v)); }

export function tanhRef(x: Arr): Float64Array { return Float64Array.from(x, (v) => Math.tanh(v)); }

/** dX = dY·(1 − y²) from the saved output y. */
export function tanhBackwardRef(y: Arr, dY: Arr): Float64Array { return Float64Array.from(y, (v, i) => dY[i]! * (1 - v * v)); }

/** y = min(max(x, lo), hi): lo > hi gives hi (ONNX Clip, torch.clamp). */
export function clipRef(x: Arr, lo = -Infinity, hi = Infinity): Float64Array {
  return Float64Array.from(x, (v) => Math.min(Math.max(v, lo), hi));
}

/**
 * 'clamp': dX = dY where lo ≤ x ≤ hi (torch.clamp); 'hardtanh': except where x ≤ lo or x ≥ hi (ReLU6).
 * Both written as PyTorch writes them, so a NaN x gives 0 and dY respectively.
 */
export function clipBackwardRef(x: Arr, dY: Arr, lo = -Infinity, hi = Infinity, mode: 'clamp' | 'hardtanh' = 'clamp'): Float64Array {
  const pass = mode === 'clamp' ? (v: number) => v >= lo && v <= hi : (v: number) => !(v <= lo || v >= hi);
  return Float64Array.from(x, (v, i) => (pass(v) ? dY[i]! : 0));
}
