// Antialiased bilinear resampling of a region of an RGB image: the one numerical core of both the
// eval and the training transforms. It follows PIL's `Image.resize(..., BILINEAR)` (what torchvision
// runs on PIL images), so a model fine-tuned here sees the pixels it saw in PyTorch.
//
// Separable: out = V · (H · img), each axis with its own tap table. Along one axis, output pixel o
// (0 ≤ o < outN) is centred at source coordinate
//
//   center(o) = off + (o + ½)·scale                       scale = source pixels per output pixel
//
// and is a weighted mean of the source pixels i whose centres i + ½ lie within the triangle filter:
//
//   fs = max(scale, 1)                                    NOTE: when shrinking, the filter widens by
//   w(i) = tri((i + ½ − center) / fs),  tri(t) = max(0, 1 − |t|)     `scale`: that is the antialiasing;
//   i ∈ [trunc(center − fs + ½), trunc(center + fs + ½)) ∩ [lo, hi)   a plain bilinear lookup (fs = 1)
//   out(o) = Σ w(i)·src(i) / Σ w(i)                                   would alias stripes and noise.
//
// [lo, hi) is the region the filter may read. Resize-then-crop (the eval transform) reads the whole
// image, so pixels at the crop edge are blended with their neighbours outside the crop; crop-then-resize
// (RandomResizedCrop) reads only the crop box. Both are expressed by choosing (off, scale, lo, hi).
//
// NOTE: PIL rounds to uint8 after each pass; we keep float32 in between and at the end, so values
// differ from PIL's by at most ~1 grey level (≤ 0.5/255 per pass), far below what training notices.

import type { RgbImage } from './image.js';

/** Resampling along one axis. */
export interface AxisMap {
  /** Source coordinate of output pixel o's centre: off + (o + ½)·scale. */
  off: number;
  scale: number;
  /** The filter reads source pixels in [lo, hi) only (integers, 0 ≤ lo < hi ≤ source size). */
  lo: number;
  hi: number;
  /** Output length. */
  n: number;
}

/** Tap table of one axis: output o reads `count[o]` source pixels from `first[o]`, weights w[o·stride + k]. */
interface Taps {
  first: Int32Array;
  count: Int32Array;
  weights: Float32Array;
  stride: number;
}

const tri = (t: number) => Math.max(0, 1 - Math.abs(t));

/** The normalised triangle-filter taps of one axis (PIL's precompute_coeffs for BILINEAR). */
export function axisTaps(m: AxisMap): Taps {
  const fs = Math.max(m.scale, 1);
  const stride = Math.ceil(fs) * 2 + 1; // the most taps a window of width 2·fs can cover
  const first = new Int32Array(m.n), count = new Int32Array(m.n), weights = new Float32Array(m.n * stride);
  for (let o = 0; o < m.n; o++) {
    const center = m.off + (o + 0.5) * m.scale;
    const i0 = Math.max(Math.trunc(center - fs + 0.5), m.lo);
    const i1 = Math.min(Math.trunc(center + fs + 0.5), m.hi);
    // Weights in float64, normalised, then stored as float32.
    const w: number[] = [];
    let sum = 0;
    for (let i = i0; i < i1; i++) {
      const wi = tri((i + 0.5 - center) / fs);
      w.push(wi);
      sum += wi;
    }
    // NOTE: the window can hold no weight only if it lies outside [lo, hi), which a valid AxisMap
    // (centres inside the region) never produces; keep the pixel defined anyway by clamping.
    if (sum === 0) {
      first[o] = Math.min(Math.max(Math.floor(center), m.lo), m.hi - 1);
      count[o] = 1;
      weights[o * stride] = 1;
      continue;
    }
    first[o] = i0;
    count[o] = w.length;
    for (let k = 0; k < w.length; k++) weights[o * stride + k] = w[k]! / sum;
  }
  return { first, count, weights, stride };
}

/**
 * Resamples the image along x by `mx` and along y by `my`.
 * Returns float32 HWC of shape [my.n, mx.n, 3] on the 0..255 scale (not rounded).
 */
export function resampleBilinear(img: RgbImage, mx: AxisMap, my: AxisMap): Float32Array {
  const tx = axisTaps(mx), ty = axisTaps(my);
  const W = img.width, src = img.data, outW = mx.n, outH = my.n;

  // Horizontal pass over just the source rows some output row reads: [rowLo, rowHi).
  let rowLo = Infinity, rowHi = -Infinity;
  for (let o = 0; o < outH; o++) {
    rowLo = Math.min(rowLo, ty.first[o]!);
    rowHi = Math.max(rowHi, ty.first[o]! + ty.count[o]!);
  }
  const tmp = new Float32Array((rowHi - rowLo) * outW * 3); // [rows, outW, 3]
  for (let y = rowLo; y < rowHi; y++) {
    const srcRow = y * W * 3, tmpRow = (y - rowLo) * outW * 3;
    for (let ox = 0; ox < outW; ox++) {
      const x0 = tx.first[ox]!, nTaps = tx.count[ox]!, wBase = ox * tx.stride;
      let r = 0, g = 0, b = 0;
      for (let k = 0; k < nTaps; k++) {
        const w = tx.weights[wBase + k]!, p = srcRow + (x0 + k) * 3;
        r += w * src[p]!;
        g += w * src[p + 1]!;
        b += w * src[p + 2]!;
      }
      const q = tmpRow + ox * 3;
      tmp[q] = r; tmp[q + 1] = g; tmp[q + 2] = b;
    }
  }

  // Vertical pass: out[oy, ox, c] = Σ_k wy[oy, k] · tmp[first[oy] + k − rowLo, ox, c].
  const out = new Float32Array(outH * outW * 3);
  for (let oy = 0; oy < outH; oy++) {
    const y0 = ty.first[oy]! - rowLo, nTaps = ty.count[oy]!, wBase = oy * ty.stride;
    const outRow = oy * outW * 3;
    for (let k = 0; k < nTaps; k++) {
      const w = ty.weights[wBase + k]!, tmpRow = (y0 + k) * outW * 3;
      for (let j = 0; j < outW * 3; j++) out[outRow + j] += w * tmp[tmpRow + j]!;
    }
  }
  return out;
}
