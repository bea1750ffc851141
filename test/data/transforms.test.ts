import { describe, expect, it } from 'vitest';
import type { RgbImage } from '../../src/data/image.js';
import { DataError } from '../../src/data/errors.js';
import { checkPreprocessing, defaultPreprocessing, evalResizeSize, type Preprocessing } from '../../src/data/preprocessing.js';
import { resampleBilinear, type AxisMap } from '../../src/data/resample.js';
import {
  applyPlan, augmentRng, cropPlan, DEFAULT_TRAIN_AUGMENT, evalPlan, randomResizedCropBox, roundHalfEven, trainPlan,
  transformImage, type CropPlan,
} from '../../src/data/transforms.js';
import { expectClose, Rng } from '../helpers.js';

type RGB = [number, number, number];

/** An image whose pixel (x, y) is f(x, y). */
function image(width: number, height: number, f: (x: number, y: number) => RGB): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.set(f(x, y), (y * width + x) * 3);
  return { width, height, data };
}

function randomImage(rng: Rng, width: number, height: number): RgbImage {
  return image(width, height, () => [rng.int(256), rng.int(256), rng.int(256)]);
}

/** ToTensor + Normalize of one value in float64. */
const norm = (v: number, c: number, p: Preprocessing) => (v / 255 - p.mean[c]!) / p.std[c]!;

/** The expected [3, S, S] tensor whose pixel (x, y) has 0..255 colour f(x, y). */
function expected(p: Preprocessing, f: (x: number, y: number) => RGB): Float64Array {
  const S = p.size, out = new Float64Array(3 * S * S);
  for (let c = 0; c < 3; c++) for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) out[(c * S + y) * S + x] = norm(f(x, y)[c]!, c, p);
  return out;
}

/**
 * Float64 reference of one resampling, straight from the definition (no tap tables, no separable
 * passes): out(ox, oy) = Σ_{i,j in region} tri_x(i) · tri_y(j) · src(i, j) / Σ tri_x(i) · tri_y(j).
 */
function resampleRef(img: RgbImage, mx: AxisMap, my: AxisMap): Float64Array {
  const w = (m: AxisMap, o: number, i: number) => {
    const fs = Math.max(m.scale, 1), center = m.off + (o + 0.5) * m.scale;
    return i >= m.lo && i < m.hi ? Math.max(0, 1 - Math.abs((i + 0.5 - center) / fs)) : 0;
  };
  const out = new Float64Array(my.n * mx.n * 3);
  for (let oy = 0; oy < my.n; oy++) for (let ox = 0; ox < mx.n; ox++) {
    let sum = 0;
    const acc = [0, 0, 0];
    for (let j = 0; j < img.height; j++) {
      const wy = w(my, oy, j);
      if (wy === 0) continue;
      for (let i = 0; i < img.width; i++) {
        const wij = wy * w(mx, ox, i);
        sum += wij;
        for (let c = 0; c < 3; c++) acc[c]! += wij * img.data[(j * img.width + i) * 3 + c]!;
      }
    }
    for (let c = 0; c < 3; c++) out[(oy * mx.n + ox) * 3 + c] = acc[c]! / sum;
  }
  return out;
}

const prep = (size: number, resizeRatio = 1): Preprocessing => ({ ...defaultPreprocessing(size), resizeRatio });

describe('eval transform: Resize(round(size/ratio)) + CenterCrop(size)', () => {
  const A: RGB = [255, 64, 0], B: RGB = [0, 128, 255];

  it('no resampling: an 8×4 two-colour image, crop of the middle 4 columns', () => {
    // Shorter side 4 = resize target: scale 1, so each output pixel is one source pixel.
    // Crop left = round((8 − 4)/2) = 2: columns 2,3 are A (x < 4), columns 4,5 are B.
    const p = prep(4);
    const img = image(8, 4, (x) => (x < 4 ? A : B));
    const got = transformImage(img, p, { kind: 'eval' });
    expectClose('eval 8x4', got, expected(p, (x) => (x < 2 ? A : B)), 1e-5);
  });

  it('2× downscale: the antialiasing filter blends across the colour edge with weights 1/8, 3/8, 3/8, 1/8', () => {
    // 16×8 → shorter side 4: resized to 8×4, scale 2, filter half-width 2. Crop left 2 = source offset 4.
    // Output column j is centred at source x = 4 + 2(j + ½) = 5 + 2j and reads x = 3+2j … 6+2j with
    // triangle weights (0.25, 0.75, 0.75, 0.25)/2. The edge is at x = 8 (A left of it), so:
    //   j=0: x 3..6 all A;  j=1: x 5..8 → 7/8 A + 1/8 B;  j=2: x 7..10 → 1/8 A + 7/8 B;  j=3: all B.
    const p = prep(4);
    const img = image(16, 8, (x) => (x < 8 ? A : B));
    const mix = (a: number): RGB => [0, 1, 2].map((c) => a * A[c]! + (1 - a) * B[c]!) as RGB;
    const cols = [A, mix(7 / 8), mix(1 / 8), B];
    const got = transformImage(img, p, { kind: 'eval' });
    expectClose('eval 16x8', got, expected(p, (x) => cols[x]!), 1e-5);
  });

  it('torchvision geometry: 224 → resize 256, a 500×375 image → 341×256, crop at (58, 16)', () => {
    const p = defaultPreprocessing(224);
    expect(evalResizeSize(p)).toBe(256);
    const plan = evalPlan(500, 375, p);
    // Resize(256): shorter side 375 → 256, longer trunc(256·500/375) = 341.
    // CenterCrop: left = round((341 − 224)/2) = round(58.5) = 58 (Python rounds half to even), top = 16.
    expect(plan.x.scale).toBeCloseTo(500 / 341, 12);
    expect(plan.y.scale).toBeCloseTo(375 / 256, 12);
    expect(plan.x.off).toBeCloseTo(58 * (500 / 341), 9);
    expect(plan.y.off).toBeCloseTo(16 * (375 / 256), 9);
    expect([plan.x.lo, plan.x.hi, plan.y.lo, plan.y.hi]).toEqual([0, 500, 0, 375]);
    // Portrait: the roles swap.
    const q = evalPlan(375, 500, p);
    expect(q.y.off).toBeCloseTo(58 * (500 / 341), 9);
  });

  it('matches the float64 definition on random images of odd sizes', () => {
    const rng = new Rng(3);
    for (const [w, h, size, ratio] of [[17, 33, 7, 0.875], [33, 17, 5, 0.875], [7, 7, 3, 1], [31, 9, 9, 0.5], [5, 13, 11, 0.9]] as const) {
      const img = randomImage(rng, w, h);
      const plan = evalPlan(w, h, prep(size, ratio));
      expectClose(`resample ${w}x${h} → ${size}`, resampleBilinear(img, plan.x, plan.y), resampleRef(img, plan.x, plan.y), 1e-5);
    }
  });
});

describe('train transform: RandomResizedCrop + horizontal flip', () => {
  it('crop-then-resize reads only the box (matches the float64 definition)', () => {
    const rng = new Rng(5);
    const img = randomImage(rng, 23, 19);
    for (const box of [{ top: 2, left: 3, h: 11, w: 15 }, { top: 0, left: 0, h: 19, w: 23 }, { top: 7, left: 9, h: 3, w: 4 }]) {
      const plan = cropPlan(box, 7, false);
      expectClose(`crop ${JSON.stringify(box)}`, resampleBilinear(img, plan.x, plan.y), resampleRef(img, plan.x, plan.y), 1e-5);
    }
    // A box whose outside is a different colour: nothing of the outside may leak in.
    const framed = image(12, 12, (x, y) => (x >= 3 && x < 9 && y >= 2 && y < 10 ? [10, 200, 30] : [255, 255, 255]));
    const p = prep(4);
    const out = new Float32Array(3 * 16);
    applyPlan(framed, cropPlan({ top: 2, left: 3, h: 8, w: 6 }, 4, false), p, out);
    expectClose('no leak', out, expected(p, () => [10, 200, 30]), 1e-5);
  });

  it('is deterministic for (seed, epoch, index) and varies across epochs and items', () => {
    const img = randomImage(new Rng(1), 40, 30);
    const p = prep(8, 0.875);
    const mode = { kind: 'train', augment: DEFAULT_TRAIN_AUGMENT } as const;
    const at = (seed: number, epoch: number, index: number) => transformImage(img, p, mode, { seed, epoch, index });
    expect(at(7, 2, 5)).toEqual(at(7, 2, 5));
    // Different epochs (and items, and seeds) give different crops: check several, allowing no repeats.
    const views = [at(7, 0, 5), at(7, 1, 5), at(7, 2, 5), at(7, 3, 5), at(7, 2, 6), at(8, 2, 5)];
    for (let i = 0; i < views.length; i++) for (let j = i + 1; j < views.length; j++) expect(views[i]).not.toEqual(views[j]);
  });

  it('flip mirrors the output exactly', () => {
    const img = randomImage(new Rng(2), 21, 16);
    const p = prep(9);
    const plan = trainPlan(21, 16, 9, DEFAULT_TRAIN_AUGMENT, new Rng(4));
    const run = (q: CropPlan) => { const o = new Float32Array(3 * 81); applyPlan(img, q, p, o); return o; };
    const a = run({ ...plan, flip: false }), b = run({ ...plan, flip: true });
    const mirrored = a.map((_, k) => { const x = k % 9; return a[k - x + (8 - x)]!; });
    expect(b).toEqual(mirrored);
    expect(b).not.toEqual(a);
  });

  it('crop boxes follow torchvision: inside the image, area in scale, aspect in ratio, flips ≈ 50%', () => {
    const rng = new Rng(11);
    const aug = { scale: [0.35, 1] as [number, number], ratio: [3 / 4, 4 / 3] as [number, number], flipP: 0.5 };
    let flips = 0;
    const N = 2000, W = 64, H = 48;
    for (let i = 0; i < N; i++) {
      const box = randomResizedCropBox(W, H, aug, rng);
      expect(box.top >= 0 && box.left >= 0 && box.top + box.h <= H && box.left + box.w <= W).toBe(true);
      // w, h are rounded to whole pixels, so the area and aspect hold up to that rounding.
      const area = (box.w * box.h) / (W * H), aspect = box.w / box.h;
      expect(area).toBeGreaterThan(0.35 * 0.9);
      expect(aspect).toBeGreaterThan((3 / 4) * 0.95);
      expect(aspect).toBeLessThan((4 / 3) * 1.05);
      if (rng.next() < aug.flipP) flips++;
    }
    expect(Math.abs(flips / N - 0.5)).toBeLessThan(0.05);
    const plans = Array.from({ length: 400 }, (_, i) => trainPlan(W, H, 8, aug, augmentRng(0, 0, i)));
    const flipRate = plans.filter((q) => q.flip).length / plans.length;
    expect(Math.abs(flipRate - 0.5)).toBeLessThan(0.1);
  });

  it('falls back to a centred box with the aspect clamped for very elongated images', () => {
    // 100×2 never fits a crop of aspect ≤ 4/3 with ≥ 35% of the area: fallback h = 2, w = round(2·4/3) = 3.
    const box = randomResizedCropBox(100, 2, DEFAULT_TRAIN_AUGMENT, new Rng(0));
    expect(box).toEqual({ top: 0, left: 48, h: 2, w: 3 });
  });

  it('roundHalfEven is Python round', () => {
    expect([0.5, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5, 2.4, 2.6].map(roundHalfEven)).toEqual([0, 2, 2, 4, -0, -2, -2, 2, 3]);
  });
});

describe('Preprocessing', () => {
  it('defaults to torchvision ImageNet: RGB, mean/std, 224 from 256', () => {
    expect(defaultPreprocessing()).toEqual({
      size: 224, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], channelOrder: 'RGB', resizeRatio: 0.875,
    });
    expect(evalResizeSize(defaultPreprocessing(64))).toBe(73); // round(64 / 0.875) = round(73.14)
  });

  it('checkPreprocessing validates what a file brings back', () => {
    const ok = defaultPreprocessing(96);
    expect(checkPreprocessing(JSON.parse(JSON.stringify(ok)))).toEqual(ok);
    expect(() => checkPreprocessing({ ...ok, std: [1, 0, 1] })).toThrow(DataError);
    expect(() => checkPreprocessing({ ...ok, channelOrder: 'BGR' })).toThrow(/channelOrder must be "RGB"/);
    expect(() => checkPreprocessing({ ...ok, resizeRatio: 1.2 })).toThrow(/resizeRatio must be in \(0, 1\]/);
    expect(() => checkPreprocessing({ ...ok, size: 0 })).toThrow(/size must be a positive integer/);
  });
});
