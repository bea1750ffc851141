// Learner batch sources over the data pipeline, shared by the CLI and the browser app (portable: no
// fs, no sharp — the dataset's source and decoder are whatever the host opened it with).

import { DataLoader, type Batch as LoaderBatch } from '../data/loader.js';
import type { ImageCache } from '../data/cache.js';
import type { ImageFolder, LabeledItem } from '../data/folder.js';
import type { Preprocessing } from '../data/preprocessing.js';
import { DEFAULT_TRAIN_AUGMENT, type TrainAugment } from '../data/transforms.js';
import type { BatchSource } from './learner.js';

export interface LoaderSourceOptions {
  batch: number;
  /** Training: shuffled, augmented, last partial batch dropped (fixed shapes for the captured step). */
  train: boolean;
  seed: number;
  /** Overrides of the default training augmentation (a model's wgtrain.augment, --min-scale, …). */
  augment?: Partial<TrainAugment> | null;
  cache?: ImageCache;
}

/** A Learner batch source over a DataLoader. */
export function loaderSource(dataset: ImageFolder, items: readonly LabeledItem[], p: Preprocessing, o: LoaderSourceOptions): BatchSource {
  const loader = new DataLoader(dataset, items, {
    batchSize: o.batch, preprocessing: p, shuffle: o.train,
    transform: o.train ? { kind: 'train', augment: { ...DEFAULT_TRAIN_AUGMENT, ...(o.augment ?? {}) } } : 'eval',
    dropLast: o.train && items.length > o.batch, seed: o.seed, cache: o.cache,
  });
  return { get length() { return loader.length; }, batches: (epoch: number) => loader.batches(epoch) as AsyncIterable<LoaderBatch> };
}

/** Progressive resizing: epoch e of `epochs` uses sources[floor(e·k/epochs)] (one per size). */
export function progressiveSource(sources: BatchSource[], epochs: number): BatchSource {
  const pick = (e: number) => sources[Math.min(sources.length - 1, Math.floor((e * sources.length) / Math.max(1, epochs)))]!;
  return { get length() { return sources[0]!.length; }, batches: (epoch: number) => pick(epoch).batches(epoch) };
}
