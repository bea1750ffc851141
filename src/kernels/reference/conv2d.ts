// Reference: 2-D convolution (NCHW) and its three gradients, float64 loops.
//
// The backward references are written as the adjoint of the forward loop (scatter: every
// multiply-add y += w·x of the forward sends dY·w to dX and dY·x to dW), not as the gather the GPU
// kernels use, so the two formulations check each other.

import { convGeometry, type Conv2dOptions, type ConvGeometry } from '../conv2d.js';

type Arr = ArrayLike<number>;
type Shape = readonly number[];

/**
 * Calls f(yi, xi, wi, k) for every multiply-add of the forward: y[yi] += x[xi] · w[wi] (k: output channel).
 * Taps that fall in the zero padding are skipped.
 */
function forEachTap(g: ConvGeometry, f: (yi: number, xi: number, wi: number) => void) {
  for (let n = 0; n < g.N; n++) {
    for (let k = 0; k < g.K; k++) {
      const grp = Math.floor(k / g.Kg);
      for (let p = 0; p < g.P; p++) {
        for (let q = 0; q < g.Q; q++) {
          const yi = ((n * g.K + k) * g.P + p) * g.Q + q;
          for (let c = 0; c < g.Cg; c++) {
            const ci = grp * g.Cg + c;
            for (let r = 0; r < g.R; r++) {
              const ih = p * g.sh + r * g.dh - g.pt;
              if (ih < 0 || ih >= g.H) continue;
              for (let s = 0; s < g.S; s++) {
                const iw = q * g.sw + s * g.dw - g.pl;
                if (iw < 0 || iw >= g.W) continue;
                f(yi, ((n * g.C + ci) * g.H + ih) * g.W + iw, ((k * g.Cg + c) * g.R + r) * g.S + s);
              }
            }
          }
        }
      }
    }
  }
}

/** y [N,K,P,Q] = conv2d(x [N,C,H,W], w [K,C/G,R,S]) + b [K]; then max(0, y) when opts.activation = 'relu'. */
export function conv2dRef(x: Arr, xShape: Shape, w: Arr, wShape: Shape, b: Arr | null, opts: Conv2dOptions = {}): { y: Float64Array; shape: number[] } {
  const g = convGeometry(xShape, wShape, opts);
  const y = new Float64Array(g.N * g.K * g.P * g.Q);
  if (b) for (let i = 0; i < y.length; i++) y[i] = b[Math.floor(i / (g.P * g.Q)) % g.K]!;
  forEachTap(g, (yi, xi, wi) => { y[yi]! += x[xi]! * w[wi]!; });
  if (opts.activation === 'relu') for (let i = 0; i < y.length; i++) y[i] = Math.max(0, y[i]!);
  return { y, shape: [g.N, g.K, g.P, g.Q] };
}

/** dX [N,C,H,W] = Σ over the forward's taps of dY · w (pixels no window covers get 0). */
export function conv2dBackwardInputRef(dY: Arr, w: Arr, wShape: Shape, xShape: Shape, opts: Conv2dOptions = {}): Float64Array {
  const g = convGeometry(xShape, wShape, opts);
  const dX = new Float64Array(g.N * g.C * g.H * g.W);
  forEachTap(g, (yi, xi, wi) => { dX[xi]! += dY[yi]! * w[wi]!; });
  return dX;
}

/** dW [K,C/G,R,S] = Σ over the forward's taps of dY · x. */
export function conv2dBackwardWeightRef(x: Arr, xShape: Shape, dY: Arr, wShape: Shape, opts: Conv2dOptions = {}): Float64Array {
  const g = convGeometry(xShape, wShape, opts);
  const dW = new Float64Array(g.K * g.Cg * g.R * g.S);
  forEachTap(g, (yi, xi, wi) => { dW[wi]! += dY[yi]! * x[xi]!; });
  return dW;
}

/** db [K] = Σ_{n,p,q} dY[n,k,p,q]. */
export function conv2dBackwardBiasRef(dY: Arr, yShape: Shape): Float64Array {
  const [N, K, P, Q] = yShape as [number, number, number, number];
  const db = new Float64Array(K);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) for (let i = 0; i < P * Q; i++) db[k]! += dY[(n * K + k) * P * Q + i]!;
  return db;
}
