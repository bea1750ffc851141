// The data pipeline, portable part (no fs, no sharp): import from 'src/data/index.js' anywhere.
// Node-only pieces (NodeFileSource, SharpDecoder, openImageFolder, manifest files) are in node.js.
//
//   const ds = await openImageFolder('data/pets');                        // node.js
//   const { train, val, manifest } = stratifiedSplit(ds.items, { valFraction: 0.2, seed: 42, classes: ds.classes });
//   const prep = defaultPreprocessing(224);
//   const loader = new DataLoader(ds, train, { batchSize: 32, preprocessing: prep, transform: 'train', seed: 42 });
//   for await (const b of loader.batches(epoch)) { /* b.x: Float32Array [b.n, 3, 224, 224], b.labels */ }

export { Limiter, mapLimit } from './async.js';
export { ImageCache } from './cache.js';
export { DataError } from './errors.js';
export {
  compareCodePoints, IMAGE_EXTENSIONS, ImageFolder, isImageFile,
  type ImageFolderOptions, type LabeledItem, type SkippedImage,
} from './folder.js';
export {
  imageBytes, joinPath, MemorySource,
  type DecodeOptions, type DirEntry, type ImageDecoder, type ImageSource, type RgbImage,
} from './image.js';
export { DataLoader, type Batch, type DecodableDataset, type LoaderOptions } from './loader.js';
export {
  checkPreprocessing, DEFAULT_RESIZE_RATIO, defaultPreprocessing, evalResizeSize, IMAGENET_MEAN, IMAGENET_STD,
  type Preprocessing,
} from './preprocessing.js';
export { axisTaps, resampleBilinear, type AxisMap } from './resample.js';
export { hashString, mixSeed, STREAM } from './seed.js';
export {
  parseManifest, resolveSplit, serializeManifest, stratifiedSplit, valCount,
  type Split, type SplitManifest, type SplitOptions,
} from './split.js';
export {
  applyPlan, augmentRng, cropPlan, DEFAULT_TRAIN_AUGMENT, evalPlan, planFor, randomResizedCropBox, roundHalfEven,
  trainPlan, transformImage,
  type CropBox, type CropPlan, type TrainAugment, type TransformMode,
} from './transforms.js';
