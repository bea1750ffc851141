// Fashion-MNIST (Xiao, Rasul, Vollgraf 2017, MIT licence © Zalando SE): 70,000 28×28 grayscale images
// of clothing in 10 classes, 60,000 for training and 10,000 for testing, as four IDX files. Debian
// ships them in the package `dataset-fashion-mnist`, under /usr/share/datasets/fashion-mnist/.
//
// The demo splits the classes in two tasks (issue 6):
//   source task  labels 0-4  T-shirt/top, Trouser, Pullover, Dress, Coat    → the model is pretrained on it
//   target task  labels 5-9  Sandal, Shirt, Sneaker, Bag, Ankle boot       → the demo fine-tunes on it

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readIdxImages, readIdxLabels } from './idx.mjs';

export const DEFAULT_IDX_DIR = '/usr/share/datasets/fashion-mnist';

/** The official class names, indexed by label (from the dataset's README). */
export const CLASS_NAMES = Object.freeze([
  'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot',
]);
export const SOURCE_CLASSES = Object.freeze([0, 1, 2, 3, 4]);
export const TARGET_CLASSES = Object.freeze([5, 6, 7, 8, 9]);
/** Training images per target class in examples/fashion5 (issue 6: 286 × 5 = 1,430). */
export const DEMO_PER_CLASS = 286;

/**
 * The image-folder name of a label: "<label>_<name in snake case>", e.g. 9 → "9_ankle_boot",
 * 0 → "0_t_shirt_top". NOTE: the label digit in front makes the folders sort in label order, and
 * an image folder numbers its classes by sorted folder name, so task label i ↔ i-th class here.
 * @param {number} label
 */
export function folderName(label) {
  const name = CLASS_NAMES[label];
  if (name === undefined) throw new Error(`Fashion-MNIST has no label ${label} (0-9)`);
  return `${label}_${name.toLowerCase().replace(/[^a-z0-9]+/g, '_')}`;
}

/** The IDX folder: the argument, else $FASHION_MNIST_DIR, else Debian's location. */
export function resolveIdxDir(dir) {
  return dir ?? process.env.FASHION_MNIST_DIR ?? DEFAULT_IDX_DIR;
}

/** The path of one of the four files, gzipped (as shipped) or decompressed; undefined if neither is there. */
function idxFile(dir, split, kind) {
  const prefix = split === 'train' ? 'train' : 't10k';
  const base = join(dir, `${prefix}-${kind === 'images' ? 'images-idx3' : 'labels-idx1'}-ubyte`);
  return [`${base}.gz`, base].find((f) => existsSync(f));
}

/** True when all four IDX files are in `dir` (default: resolveIdxDir()). */
export function idxFilesPresent(dir) {
  const d = resolveIdxDir(dir);
  return ['train', 'test'].every((s) => idxFile(d, s, 'images') && idxFile(d, s, 'labels'));
}

/**
 * Reads one split: 'train' (60,000 images) or 'test' (10,000).
 * @param {'train' | 'test'} split
 * @param {string} [dir]
 */
export function loadSplit(split, dir) {
  if (split !== 'train' && split !== 'test') throw new Error(`split must be 'train' or 'test', got ${JSON.stringify(split)}`);
  const d = resolveIdxDir(dir);
  const imagesFile = idxFile(d, split, 'images'), labelsFile = idxFile(d, split, 'labels');
  if (!imagesFile || !labelsFile) {
    throw new Error(`Fashion-MNIST ${split} files not found in ${d}: install the Debian package dataset-fashion-mnist ` +
      `(apt-get install dataset-fashion-mnist), or pass the folder holding ${split === 'train' ? 'train' : 't10k'}-images-idx3-ubyte.gz ` +
      `and ${split === 'train' ? 'train' : 't10k'}-labels-idx1-ubyte.gz (--idx-dir, or $FASHION_MNIST_DIR)`);
  }
  const images = readIdxImages(imagesFile);
  const labels = readIdxLabels(labelsFile);
  if (labels.length !== images.count) throw new Error(`${labelsFile}: ${labels.length} labels for ${images.count} images in ${imagesFile}`);
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] >= CLASS_NAMES.length) throw new Error(`${labelsFile}: label ${labels[i]} at index ${i} is not 0-9`);
  }
  return { ...images, labels };
}

/**
 * The indices (into the split, ascending) of the first `perClass` images of each class, in file
 * order; every image of each class when perClass is undefined. Returns one index list per class,
 * in the order of `classes`. Throws when a class has fewer than perClass images.
 * NOTE: "first in file order" is the whole selection rule: no seed, nothing to record, and the PNG
 * names (the indices) show which images were taken.
 * @param {Uint8Array} labels
 * @param {readonly number[]} classes
 * @param {number} [perClass]
 */
export function firstPerClass(labels, classes, perClass) {
  const picked = classes.map(() => []);
  const slot = new Map(classes.map((c, i) => [c, i]));
  for (let i = 0; i < labels.length; i++) {
    const s = slot.get(labels[i]);
    if (s !== undefined && (perClass === undefined || picked[s].length < perClass)) picked[s].push(i);
  }
  classes.forEach((c, s) => {
    if (perClass !== undefined && picked[s].length < perClass) {
      throw new Error(`class ${c} (${CLASS_NAMES[c]}) has ${picked[s].length} images, fewer than the ${perClass} asked for`);
    }
  });
  return picked;
}

/**
 * Gathers a task from a split: the images of `classes` (the first perClass of each, or all), in
 * split order, relabelled 0..classes.length-1 by position in `classes`.
 *   pixels  Uint8Array  count·H·W, NHW row-major, 0..255 (0 = background)
 *   labels  Uint32Array count, task labels
 *   index   Uint32Array count, the image's index in the split file
 * @param {ReturnType<typeof loadSplit>} split
 * @param {readonly number[]} classes
 * @param {number} [perClass]
 */
export function gatherTask(split, classes, perClass) {
  const index = Uint32Array.from(firstPerClass(split.labels, classes, perClass).flat().sort((a, b) => a - b));
  const taskLabel = new Map(classes.map((c, i) => [c, i]));
  const hw = split.height * split.width;
  const pixels = new Uint8Array(index.length * hw);
  const labels = new Uint32Array(index.length);
  index.forEach((src, dst) => {
    pixels.set(split.pixels.subarray(src * hw, (src + 1) * hw), dst * hw);
    labels[dst] = /** @type {number} */ (taskLabel.get(split.labels[src]));
  });
  return {
    count: index.length, height: split.height, width: split.width, pixels, labels, index,
    classes: classes.map((c) => CLASS_NAMES[c]),
  };
}
