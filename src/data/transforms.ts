// Image → normalised CHW float32: the eval view and the random training view, torchvision-exact in
// geometry and PIL-exact (up to float rounding) in resampling (resample.ts).
//
//   eval   Resize(R) + CenterCrop(size),  R = round(size / resizeRatio)    (256 → 224 by default)
//   train  RandomResizedCrop(size, scale, ratio) + RandomHorizontalFlip(p)
//   both   then  x[c, y, x] = (v / 255 − mean[c]) / std[c]                 (ToTensor + Normalize)
//
// A transform is planned first (a CropPlan: which source region maps onto the size×size output, and
// whether to mirror it) and then applied. Planning needs only the image size and an Rng; the Rng of
// item `index` in `epoch` is seeded by mixSeed(seed, STREAM.augment, epoch, index), so the crops and
// flips of a run are a pure function of (seed, epoch, index): reproducible, independent of batch
// composition, prefetch order and concurrency, and different in every epoch.

import { Rng } from '../util/rng.js';
import type { RgbImage } from './image.js';
import { evalResizeSize, type Preprocessing } from './preprocessing.js';
import { resampleBilinear, type AxisMap } from './resample.js';
import { mixSeed, STREAM } from './seed.js';

/** Where the size×size output comes from in the source image, and whether it is mirrored. */
export interface CropPlan {
  x: AxisMap;
  y: AxisMap;
  /** Mirror left ↔ right (applied to the output, so the same source region is read either way). */
  flip: boolean;
}

/** RandomResizedCrop + flip settings. */
export interface TrainAugment {
  /**
   * Range of the crop's area as a fraction of the image's. torchvision's default is (0.08, 1); we
   * default to (0.35, 1) as fastai's vision examples do (`RandomResizedCrop(size, min_scale=0.35)`):
   * on small datasets of small images an 8% crop often cuts the object out, which adds label noise
   * the few examples cannot average away.
   */
  scale: [number, number];
  /** Range of the crop's aspect ratio w/h, sampled log-uniformly. */
  ratio: [number, number];
  /** Probability of a horizontal flip. */
  flipP: number;
}

export const DEFAULT_TRAIN_AUGMENT: Readonly<TrainAugment> = { scale: [0.35, 1], ratio: [3 / 4, 4 / 3], flipP: 0.5 };

/** Python's round(): to nearest, ties to EVEN (round(2.5) = 2). torchvision's crop arithmetic uses it. */
export function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// ---- eval: Resize(R) + CenterCrop(size) --------------------------------------------------------

/**
 * The eval plan for a width×height image. torchvision's Resize(R) sets the shorter side to R and the
 * longer to trunc(R · long / short); CenterCrop(size) then starts at round_half_even((len − size)/2).
 * Resizing the whole image and cropping is one resampling whose filter may read the whole image.
 */
export function evalPlan(width: number, height: number, p: Preprocessing): CropPlan {
  const R = evalResizeSize(p);
  const [rw, rh] = width <= height ? [R, Math.trunc((R * height) / width)] : [Math.trunc((R * width) / height), R];
  const left = roundHalfEven((rw - p.size) / 2), top = roundHalfEven((rh - p.size) / 2);
  // NOTE: a pixel of the resized image covers width/rw source pixels; the crop's first column is
  // resized column `left`, i.e. the source offset left · width/rw.
  const sx = width / rw, sy = height / rh;
  return {
    x: { off: left * sx, scale: sx, lo: 0, hi: width, n: p.size },
    y: { off: top * sy, scale: sy, lo: 0, hi: height, n: p.size },
    flip: false,
  };
}

// ---- train: RandomResizedCrop + RandomHorizontalFlip -------------------------------------------

/** A crop box in source pixels: rows [top, top + h), columns [left, left + w). */
export interface CropBox { top: number; left: number; h: number; w: number }

/**
 * torchvision's RandomResizedCrop.get_params: up to 10 tries of (area fraction ~ U(scale), log aspect
 * ~ U(log ratio)); the first box that fits is placed uniformly. If none fits (very elongated images),
 * fall back to the largest centred box whose aspect is clamped into `ratio`.
 */
export function randomResizedCropBox(width: number, height: number, aug: TrainAugment, rng: Rng): CropBox {
  const area = width * height;
  const [logLo, logHi] = [Math.log(aug.ratio[0]), Math.log(aug.ratio[1])];
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * rng.uniform(aug.scale[0], aug.scale[1]);
    const aspect = Math.exp(rng.uniform(logLo, logHi));
    const w = roundHalfEven(Math.sqrt(target * aspect));
    const h = roundHalfEven(Math.sqrt(target / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      return { top: rng.int(height - h + 1), left: rng.int(width - w + 1), h, w };
    }
  }
  const inRatio = width / height;
  let w = width, h = height;
  if (inRatio < aug.ratio[0]) h = roundHalfEven(w / aug.ratio[0]);
  else if (inRatio > aug.ratio[1]) w = roundHalfEven(h * aug.ratio[1]);
  return { top: Math.floor((height - h) / 2), left: Math.floor((width - w) / 2), h, w };
}

/** Crop-then-resize of `box` to size×size: the filter reads only the box (torchvision's resized_crop). */
export function cropPlan(box: CropBox, size: number, flip: boolean): CropPlan {
  return {
    x: { off: box.left, scale: box.w / size, lo: box.left, hi: box.left + box.w, n: size },
    y: { off: box.top, scale: box.h / size, lo: box.top, hi: box.top + box.h, n: size },
    flip,
  };
}

/** The Rng of one item's augmentation: a pure function of (seed, epoch, index). */
export function augmentRng(seed: number, epoch: number, index: number): Rng {
  return new Rng(mixSeed(seed, STREAM.augment, epoch, index));
}

/** The training plan: crop box first, then the flip coin (torchvision's order of random draws). */
export function trainPlan(width: number, height: number, size: number, aug: TrainAugment, rng: Rng): CropPlan {
  const box = randomResizedCropBox(width, height, aug, rng);
  const flip = rng.next() < aug.flipP;
  return cropPlan(box, size, flip);
}

// ---- apply --------------------------------------------------------------------------------------

/**
 * Resamples `img` by `plan` and writes the normalised CHW result, 3·size·size floats, into
 * out[offset …]: out[offset + (c·size + y)·size + x] = (v / 255 − mean[c]) / std[c].
 */
export function applyPlan(img: RgbImage, plan: CropPlan, p: Preprocessing, out: Float32Array, offset = 0): void {
  const S = p.size;
  if (plan.x.n !== S || plan.y.n !== S) throw new Error(`applyPlan: plan is ${plan.x.n}×${plan.y.n}, preprocessing size is ${S}`);
  const hwc = resampleBilinear(img, plan.x, plan.y); // [S, S, 3], 0..255
  for (let c = 0; c < 3; c++) {
    // (v/255 − mean)/std = v·a + b
    const a = 1 / (255 * p.std[c]), b = -p.mean[c] / p.std[c];
    const plane = offset + c * S * S;
    for (let y = 0; y < S; y++) {
      for (let x = 0; x < S; x++) {
        const sx = plan.flip ? S - 1 - x : x;
        out[plane + y * S + x] = hwc[(y * S + sx) * 3 + c]! * a + b;
      }
    }
  }
}

/** Which view of the images a loader produces. */
export type TransformMode = { kind: 'eval' } | { kind: 'train'; augment: TrainAugment };

/** Convenience: the eval or training tensor of one image, a new Float32Array [3, size, size]. */
export function transformImage(
  img: RgbImage, p: Preprocessing, mode: TransformMode, at: { seed: number; epoch: number; index: number } = { seed: 0, epoch: 0, index: 0 },
): Float32Array {
  const out = new Float32Array(3 * p.size * p.size);
  applyPlan(img, planFor(img, p, mode, at), p, out);
  return out;
}

/** The plan of one image under a mode (the Rng is only drawn from for training). */
export function planFor(
  img: { width: number; height: number }, p: Preprocessing, mode: TransformMode, at: { seed: number; epoch: number; index: number },
): CropPlan {
  switch (mode.kind) {
    case 'eval': return evalPlan(img.width, img.height, p);
    case 'train': return trainPlan(img.width, img.height, p.size, mode.augment, augmentRng(at.seed, at.epoch, at.index));
    default: return mode satisfies never;
  }
}
