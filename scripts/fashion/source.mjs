// The SOURCE task of the demo, in memory, for pretraining: Fashion-MNIST classes 0-4 (T-shirt/top,
// Trouser, Pullover, Dress, Coat), every one of their training images (30,000) and test images
// (5,000). Nothing is written to disk.
//
//   import { loadSourceTask, toFloat01 } from '../scripts/fashion/source.mjs';
//   const { train, test, classes } = loadSourceTask();          // train.count = 30000
//   const x = toFloat01(train.pixels);                          // N·28·28 floats in [0, 1]
//
// Task labels are the Fashion-MNIST labels (0-4 map to themselves), in Uint32Array as the loss kernels
// take them. Images are in file order; shuffling is the trainer's business.

import { gatherTask, loadSplit, resolveIdxDir, SOURCE_CLASSES } from './dataset.mjs';

/**
 * @param {{ idxDir?: string }} [opts] idxDir: the folder of the IDX files (default $FASHION_MNIST_DIR,
 *   else /usr/share/datasets/fashion-mnist)
 */
export function loadSourceTask(opts = {}) {
  const dir = resolveIdxDir(opts.idxDir);
  const train = gatherTask(loadSplit('train', dir), SOURCE_CLASSES);
  const test = gatherTask(loadSplit('test', dir), SOURCE_CLASSES);
  return { classes: train.classes, train, test };
}

/**
 * Bytes 0..255 → Float32 in [0, 1] (x / 255), same layout. Normalisation (mean/std, RGB replication)
 * belongs to the model's preprocessing and is left to the caller.
 * @param {Uint8Array} pixels
 */
export function toFloat01(pixels) {
  const out = new Float32Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) out[i] = pixels[i] / 255;
  return out;
}
