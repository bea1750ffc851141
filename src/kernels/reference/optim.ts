// Reference: optimizer steps (float64 loops), PyTorch torch.optim.SGD / Adam / AdamW semantics
// (single-tensor path, maximize=False, amsgrad=False). All update their arrays in place.

type Arr = ArrayLike<number>;

export interface SgdRefOptions {
  lr: number;
  momentum?: number;
  dampening?: number;
  weightDecay?: number;
  nesterov?: boolean;
  /** True on the first step (PyTorch: the momentum buffer does not exist yet). */
  firstStep?: boolean;
}

/**
 *   d = g + wd·p
 *   if μ ≠ 0:  buf = d (first step) | μ·buf + (1 − dampening)·d;   d = nesterov ? d + μ·buf : buf
 *   p −= lr·d
 */
export function sgdStepRef(p: Float64Array, g: Arr, buf: Float64Array | null, o: SgdRefOptions): void {
  const { lr, momentum = 0, dampening = 0, weightDecay = 0, nesterov = false, firstStep = false } = o;
  for (let i = 0; i < p.length; i++) {
    let d = g[i]! + weightDecay * p[i]!;
    if (momentum !== 0) {
      if (!buf) throw new Error('sgdStepRef: momentum needs a buffer');
      buf[i] = firstStep ? d : momentum * buf[i]! + (1 - dampening) * d;
      d = nesterov ? d + momentum * buf[i]! : buf[i]!;
    }
    p[i] = p[i]! - lr * d;
  }
}

export interface AdamRefOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** AdamW: decoupled weight decay p ← p·(1 − lr·wd); Adam (false): L2, g ← g + wd·p. */
  decoupled?: boolean;
  /** 1-based step count, after this step's increment (PyTorch's state['step']). */
  step: number;
}

/**
 *   Adam:  g ← g + wd·p              AdamW:  p ← p·(1 − lr·wd)
 *   m ← β1·m + (1−β1)·g,   v ← β2·v + (1−β2)·g²
 *   p ← p − lr · (m / (1−β1^t)) / (sqrt(v / (1−β2^t)) + eps)
 */
export function adamStepRef(p: Float64Array, g: Arr, m: Float64Array, v: Float64Array, o: AdamRefOptions): void {
  const { lr, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0, decoupled = false, step } = o;
  const bc1 = 1 - beta1 ** step, bc2 = 1 - beta2 ** step;
  for (let i = 0; i < p.length; i++) {
    let gi = g[i]!;
    if (decoupled) p[i] = p[i]! * (1 - lr * weightDecay);
    else gi += weightDecay * p[i]!;
    m[i] = beta1 * m[i]! + (1 - beta1) * gi;
    v[i] = beta2 * v[i]! + (1 - beta2) * gi * gi;
    p[i] = p[i]! - lr * (m[i]! / bc1) / (Math.sqrt(v[i]! / bc2) + eps);
  }
}
