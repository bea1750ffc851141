// What a model expects of its input. It travels with the model (checkpoint header, ONNX
// metadata_props) because an ONNX file alone does not say it, and predicting with the wrong mean/std
// or crop silently costs accuracy.
//
//   x[c, y, x] = (pixel[c] / 255 − mean[c]) / std[c]        pixel in RGB order, 0..255
//
// Evaluation view of an image (torchvision's classic ImageNet eval transform):
//   Resize(round(size / resizeRatio))  shorter side to that length, aspect kept (256 for size 224)
//   CenterCrop(size)
// Training view: RandomResizedCrop(size) + horizontal flip (transforms.ts).

import { DataError } from './errors.js';

/** torchvision's ImageNet statistics: what every torchvision/timm ImageNet checkpoint was trained with. */
export const IMAGENET_MEAN: readonly [number, number, number] = [0.485, 0.456, 0.406];
export const IMAGENET_STD: readonly [number, number, number] = [0.229, 0.224, 0.225];

/** 224/256: the eval crop covers the central 87.5% of the resized shorter side. */
export const DEFAULT_RESIZE_RATIO = 0.875;

export interface Preprocessing {
  /** Model input height = width, in pixels. */
  size: number;
  /** Per-channel mean and std, in channelOrder, on the 0..1 scale (after /255). */
  mean: [number, number, number];
  std: [number, number, number];
  /** Channel order of the tensor. Only RGB exists today; the field makes the file self-describing. */
  channelOrder: 'RGB';
  /** Eval resize: shorter side → round(size / resizeRatio), then center-crop size. In (0, 1]. */
  resizeRatio: number;
}

export function defaultPreprocessing(size = 224): Preprocessing {
  return checkPreprocessing({
    size, mean: [...IMAGENET_MEAN], std: [...IMAGENET_STD], channelOrder: 'RGB', resizeRatio: DEFAULT_RESIZE_RATIO,
  });
}

/** The eval transform's resize target for the shorter side: round(size / resizeRatio) (256 for 224). */
export function evalResizeSize(p: Preprocessing): number {
  return Math.round(p.size / p.resizeRatio);
}

/**
 * Validates a Preprocessing, e.g. one read back from a checkpoint or ONNX metadata; returns it typed.
 * Throws a DataError naming the bad field.
 */
export function checkPreprocessing(p: unknown): Preprocessing {
  const bad = (what: string): never => {
    throw new DataError(`invalid preprocessing: ${what}; the file that holds it may be damaged or from another tool`);
  };
  if (typeof p !== 'object' || p === null) return bad('not an object');
  const q = p as Record<string, unknown>;
  if (!(Number.isInteger(q.size) && (q.size as number) >= 1)) bad(`size must be a positive integer, got ${String(q.size)}`);
  const triple = (name: string, positive: boolean) => {
    const v = q[name];
    if (!(Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number' && Number.isFinite(x) && (!positive || x > 0)))) {
      bad(`${name} must be 3 ${positive ? 'positive ' : ''}numbers, got ${JSON.stringify(v)}`);
    }
  };
  triple('mean', false);
  triple('std', true);
  if (q.channelOrder !== 'RGB') bad(`channelOrder must be "RGB", got ${JSON.stringify(q.channelOrder)}`);
  const r = q.resizeRatio;
  if (!(typeof r === 'number' && r > 0 && r <= 1)) bad(`resizeRatio must be in (0, 1], got ${String(r)}`);
  return p as Preprocessing;
}
