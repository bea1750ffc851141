// Reference: pooling (float64 loops), NCHW, each (n,c) plane on its own. Written straight from the
// PyTorch definitions; backwards are scatters (the GPU kernels gather), so the two are independent.

type Arr = ArrayLike<number>;
type Shape4 = readonly [number, number, number, number] | readonly number[];

/** Fully specified pooling options (no shorthands): padding is [top, left, bottom, right]. */
export interface Pool2dRefOptions {
  kernel: readonly [number, number];
  stride: readonly [number, number];
  padding: readonly [number, number, number, number];
  dilation: readonly [number, number];
  ceilMode: boolean;
  countIncludePad: boolean;
}

/** argmax of a window with no real pixel. */
export const NO_ARGMAX_REF = 0xffffffff;

/** PyTorch pooling_output_shape with asymmetric pads. */
export function poolOutputSizeRef(size: number, k: number, s: number, before: number, after: number, dil: number, ceil: boolean): number {
  const num = size + before + after - dil * (k - 1) - 1 + (ceil ? s - 1 : 0);
  let out = Math.floor(num / s) + 1;
  if (ceil && (out - 1) * s >= size + before) out--;
  return out;
}

function dims(xs: Shape4, o: Pool2dRefOptions) {
  const [N, C, H, W] = xs as [number, number, number, number];
  const [R, S] = o.kernel, [sh, sw] = o.stride, [dh, dw] = o.dilation, [pt, pl, pb, pr] = o.padding;
  const P = poolOutputSizeRef(H, R, sh, pt, pb, dh, o.ceilMode);
  const Q = poolOutputSizeRef(W, S, sw, pl, pr, dw, o.ceilMode);
  return { N, C, H, W, R, S, sh, sw, dh, dw, pt, pl, pb, pr, P, Q };
}

export function maxPool2dRef(x: Arr, xs: Shape4, o: Pool2dRefOptions): { y: Float64Array; argmax: Uint32Array; shape: number[] } {
  const d = dims(xs, o);
  const y = new Float64Array(d.N * d.C * d.P * d.Q), argmax = new Uint32Array(y.length);
  for (let pl = 0; pl < d.N * d.C; pl++) {
    for (let p = 0; p < d.P; p++) {
      for (let q = 0; q < d.Q; q++) {
        let best = -Infinity, arg = NO_ARGMAX_REF;
        for (let r = 0; r < d.R; r++) {
          for (let s = 0; s < d.S; s++) {
            const h = p * d.sh - d.pt + r * d.dh, w = q * d.sw - d.pl + s * d.dw;
            if (h < 0 || h >= d.H || w < 0 || w >= d.W) continue;
            const v = x[pl * d.H * d.W + h * d.W + w]!;
            if (arg === NO_ARGMAX_REF || v > best) { best = v; arg = h * d.W + w; } // first max wins
          }
        }
        const oi = (pl * d.P + p) * d.Q + q;
        y[oi] = best; argmax[oi] = arg;
      }
    }
  }
  return { y, argmax, shape: [d.N, d.C, d.P, d.Q] };
}

/** dX: each dY[o] added to the input its argmax names. */
export function maxPool2dBackwardRef(dY: Arr, argmax: ArrayLike<number>, xs: Shape4, ys: Shape4): Float64Array {
  const [N, C, H, W] = xs as [number, number, number, number];
  const PQ = ys[2]! * ys[3]!;
  const dX = new Float64Array(N * C * H * W);
  for (let i = 0; i < dY.length; i++) {
    const a = argmax[i]!;
    if (a === NO_ARGMAX_REF) continue;
    dX[Math.floor(i / PQ) * H * W + a]! += dY[i]!;
  }
  return dX;
}

/** Calls f(oi, inputIndex, divisor) for every real pixel of every average window. */
function avgWindows(xs: Shape4, o: Pool2dRefOptions, f: (oi: number, xi: number, div: number) => void) {
  const d = dims(xs, o);
  for (let pl = 0; pl < d.N * d.C; pl++) {
    for (let p = 0; p < d.P; p++) {
      for (let q = 0; q < d.Q; q++) {
        const h0 = p * d.sh - d.pt, w0 = q * d.sw - d.pl;
        const hPad = Math.min(h0 + d.R, d.H + d.pb), wPad = Math.min(w0 + d.S, d.W + d.pr);
        const hs = Math.max(h0, 0), he = Math.min(h0 + d.R, d.H), ws = Math.max(w0, 0), we = Math.min(w0 + d.S, d.W);
        const real = Math.max(he - hs, 0) * Math.max(we - ws, 0);
        const div = o.countIncludePad ? (hPad - h0) * (wPad - w0) : real;
        const oi = (pl * d.P + p) * d.Q + q;
        for (let h = hs; h < he; h++) for (let w = ws; w < we; w++) f(oi, pl * d.H * d.W + h * d.W + w, div);
      }
    }
  }
  return d;
}

export function avgPool2dRef(x: Arr, xs: Shape4, o: Pool2dRefOptions): { y: Float64Array; shape: number[] } {
  const d0 = dims(xs, o);
  const y = new Float64Array(d0.N * d0.C * d0.P * d0.Q);
  avgWindows(xs, o, (oi, xi, div) => { y[oi]! += x[xi]! / div; });
  return { y, shape: [d0.N, d0.C, d0.P, d0.Q] };
}

export function avgPool2dBackwardRef(dY: Arr, xs: Shape4, o: Pool2dRefOptions): Float64Array {
  const dX = new Float64Array(xs[0]! * xs[1]! * xs[2]! * xs[3]!);
  avgWindows(xs, o, (oi, xi, div) => { dX[xi]! += dY[oi]! / div; });
  return dX;
}

/** PyTorch adaptive bins: [⌊i·L/n⌋, ⌈(i+1)·L/n⌉). */
const bin = (i: number, n: number, L: number): [number, number] => [Math.floor((i * L) / n), Math.ceil(((i + 1) * L) / n)];

function adaptiveBins(xs: Shape4, P: number, Q: number, f: (oi: number, xi: number, count: number) => void) {
  const [N, C, H, W] = xs as [number, number, number, number];
  for (let pl = 0; pl < N * C; pl++) {
    for (let p = 0; p < P; p++) {
      const [hs, he] = bin(p, P, H);
      for (let q = 0; q < Q; q++) {
        const [ws, we] = bin(q, Q, W);
        const oi = (pl * P + p) * Q + q;
        for (let h = hs; h < he; h++) for (let w = ws; w < we; w++) f(oi, pl * H * W + h * W + w, (he - hs) * (we - ws));
      }
    }
  }
}

export function adaptiveAvgPool2dRef(x: Arr, xs: Shape4, out: readonly [number, number]): Float64Array {
  const y = new Float64Array(xs[0]! * xs[1]! * out[0] * out[1]);
  adaptiveBins(xs, out[0], out[1], (oi, xi, n) => { y[oi]! += x[xi]! / n; });
  return y;
}

export function adaptiveAvgPool2dBackwardRef(dY: Arr, xs: Shape4, out: readonly [number, number]): Float64Array {
  const dX = new Float64Array(xs[0]! * xs[1]! * xs[2]! * xs[3]!);
  adaptiveBins(xs, out[0], out[1], (oi, xi, n) => { dX[xi]! += dY[oi]! / n; });
  return dX;
}

export function globalAvgPoolRef(x: Arr, xs: Shape4): Float64Array {
  const HW = xs[2]! * xs[3]!;
  const y = new Float64Array(xs[0]! * xs[1]!);
  for (let i = 0; i < x.length; i++) y[Math.floor(i / HW)]! += x[i]!;
  return y.map((v) => v / HW);
}

export function globalAvgPoolBackwardRef(dY: Arr, xs: Shape4): Float64Array {
  const HW = xs[2]! * xs[3]!;
  return Float64Array.from({ length: xs[0]! * xs[1]! * HW }, (_, i) => dY[Math.floor(i / HW)]! / HW);
}
