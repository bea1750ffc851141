// DataLoader: items → batches of normalised NCHW float32, decoded ahead of the consumer.
//
//   for await (const b of loader.batches(epoch)) { upload(b.x) … }     b.x: [n, 3, size, size]
//
// Order. Epoch e visits every (not skipped) item exactly once, in a permutation drawn from
// Rng(mixSeed(seed, STREAM.shuffle, e)) when shuffling, else in list order; consecutive chunks of
// batchSize make the batches, and dropLast drops a last, smaller chunk. Item i's crop and flip are
// drawn from its own Rng(seed, epoch, i) (transforms.ts), so results do not depend on timing.
//
// Prefetch. While the consumer works on batch k (e.g. waiting on the GPU), batches k+1 … k+prefetch
// are being decoded: a bounded queue of batch promises. Each image is one task on a shared FIFO
// Limiter of `concurrency` slots; decoding is async (sharp runs it on libuv worker threads; a browser
// decodes off the main thread too), so up to `concurrency` images decode in parallel, and the earlier
// batch's images are always queued first. The transform (resample + normalise) runs on the main
// thread as each decode completes. Memory: at most prefetch + 1 batches exist at once.
//
// Failures. An image that fails to decode is left out of its batch (the batch is smaller; a batch
// where all fail is not yielded), reported once through dataset.markSkipped, and excluded from later
// epochs. A crash at epoch 7 because one JPEG is truncated helps nobody.

import { Rng } from '../util/rng.js';
import { Limiter } from './async.js';
import type { ImageCache } from './cache.js';
import { firstLine } from './errors.js';
import type { LabeledItem } from './folder.js';
import type { DecodeOptions, RgbImage } from './image.js';
import { evalResizeSize, type Preprocessing } from './preprocessing.js';
import { mixSeed, STREAM } from './seed.js';
import { applyPlan, DEFAULT_TRAIN_AUGMENT, planFor, type TransformMode } from './transforms.js';

/** What the loader needs of a dataset (ImageFolder has it; tests pass fakes). */
export interface DecodableDataset {
  decode(path: string, opts?: DecodeOptions): Promise<RgbImage>;
  markSkipped(path: string, reason: string): void;
  isSkipped(path: string): boolean;
  readonly concurrency?: number;
}

export interface LoaderOptions {
  batchSize: number;
  preprocessing: Preprocessing;
  /** 'eval' (default), 'train' (DEFAULT_TRAIN_AUGMENT), or a TransformMode with its own augmentation. */
  transform?: 'eval' | 'train' | TransformMode;
  /** Shuffle every epoch. Default: true for training transforms, false for eval. */
  shuffle?: boolean;
  /** Drop the last batch if it is smaller than batchSize (default false). */
  dropLast?: boolean;
  /** Seeds the shuffle and the augmentation (default 0). */
  seed?: number;
  /** Batches decoded ahead of the consumer (default 2; 0: each batch is loaded when asked for). */
  prefetch?: number;
  /** Images decoded at once (default: the decoder's preference, else the CPU count). */
  concurrency?: number;
  /** Decoded-image cache shared across epochs (and loaders): each image is decoded once while it fits. */
  cache?: ImageCache;
  /**
   * Images whose shorter side is larger are shrunk to it when decoded (DecodeOptions). Default:
   * 2 × the eval resize (512 for size 224): big photos cost less to decode, cache and crop, while a
   * 35% RandomResizedCrop still only ever shrinks. 0: always full resolution (torchvision-exact).
   */
  maxShorterSide?: number;
}

export interface Batch {
  /** Normalised images, row-major [n, 3, size, size]. */
  x: Float32Array;
  shape: [n: number, c: 3, h: number, w: number];
  /** Class index of each image. */
  labels: Uint32Array;
  /** Relative path of each image (for error analysis: top losses, confusions). */
  paths: string[];
  /** Images in this batch: batchSize, or fewer for the last batch or when images were skipped. */
  n: number;
  epoch: number;
  /** Position of the batch in its epoch. */
  index: number;
}

function hardwareConcurrency(): number | undefined {
  return (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency;
}

export class DataLoader implements AsyncIterable<Batch> {
  readonly batchSize: number;
  readonly preprocessing: Preprocessing;
  readonly mode: TransformMode;
  readonly shuffle: boolean;
  readonly dropLast: boolean;
  readonly seed: number;
  readonly prefetch: number;
  readonly concurrency: number;
  readonly maxShorterSide: number;
  readonly cache: ImageCache | undefined;
  /** The epoch the next `for await (… of loader)` runs; it advances by one each time. */
  epoch = 0;

  constructor(readonly dataset: DecodableDataset, readonly items: readonly LabeledItem[], opts: LoaderOptions) {
    const t = opts.transform ?? 'eval';
    this.mode = t === 'eval' ? { kind: 'eval' } : t === 'train' ? { kind: 'train', augment: { ...DEFAULT_TRAIN_AUGMENT } } : t;
    this.batchSize = opts.batchSize;
    this.preprocessing = opts.preprocessing;
    this.shuffle = opts.shuffle ?? this.mode.kind === 'train';
    this.dropLast = opts.dropLast ?? false;
    this.seed = opts.seed ?? 0;
    this.prefetch = opts.prefetch ?? 2;
    this.concurrency = opts.concurrency ?? dataset.concurrency ?? hardwareConcurrency() ?? 4;
    this.maxShorterSide = opts.maxShorterSide ?? 2 * evalResizeSize(opts.preprocessing);
    this.cache = opts.cache;
    const int = (name: string, v: number, min: number) => {
      if (!(Number.isInteger(v) && v >= min)) throw new Error(`DataLoader: ${name} must be an integer ≥ ${min}, got ${v}`);
    };
    int('batchSize', this.batchSize, 1);
    int('prefetch', this.prefetch, 0);
    int('concurrency', this.concurrency, 1);
    int('maxShorterSide', this.maxShorterSide, 0);
  }

  /** Items still in play (not skipped as unreadable), as indices into `items`. */
  private activeIndices(): number[] {
    const out: number[] = [];
    this.items.forEach((it, i) => { if (!this.dataset.isSkipped(it.path)) out.push(i); });
    return out;
  }

  /** Number of batches in an epoch (with the items known to be readable now). */
  get length(): number {
    const n = this.activeIndices().length;
    return this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
  }

  /** Item indices of each batch of `epoch`, in order. */
  epochBatches(epoch: number): number[][] {
    const order = this.activeIndices();
    if (this.shuffle) new Rng(mixSeed(this.seed, STREAM.shuffle, epoch)).shuffle(order);
    const out: number[][] = [];
    for (let i = 0; i < order.length; i += this.batchSize) {
      const chunk = order.slice(i, i + this.batchSize);
      if (chunk.length < this.batchSize && this.dropLast) break;
      out.push(chunk);
    }
    return out;
  }

  [Symbol.asyncIterator](): AsyncIterator<Batch> {
    return this.batches(this.epoch++);
  }

  /** The batches of one epoch, decoded `prefetch` batches ahead of the consumer. */
  async *batches(epoch: number): AsyncGenerator<Batch, void, undefined> {
    const plan = this.epochBatches(epoch);
    const limiter = new Limiter(this.concurrency);
    const run = { stopped: false };
    const queue: Promise<Batch | null>[] = [];
    let next = 0;
    const fill = (depth: number) => {
      while (next < plan.length && queue.length < depth) {
        const p = this.loadBatch(epoch, next, plan[next]!, limiter, run);
        // NOTE: if the consumer stops early, queued batches are never awaited; this handler keeps a
        // failure in one of them from becoming an unhandled rejection.
        p.catch(() => {});
        queue.push(p);
        next++;
      }
    };
    try {
      for (;;) {
        fill(Math.max(this.prefetch, 1));
        const head = queue.shift();
        if (head === undefined) return;
        const batch = await head;
        fill(this.prefetch); // start the next batches before handing this one over
        if (batch !== null) yield batch;
      }
    } finally {
      // Consumer done or gone (break, throw): queued decodes that have not started are dropped.
      run.stopped = true;
    }
  }

  /** Decodes (or fetches from the cache) one image. */
  private async image(path: string): Promise<RgbImage> {
    const key = `${path}\u0000${this.maxShorterSide}`;
    const hit = this.cache?.get(key);
    if (hit) return hit;
    const img = await this.dataset.decode(path, { maxShorterSide: this.maxShorterSide || undefined });
    this.cache?.set(key, img);
    return img;
  }

  private async loadBatch(epoch: number, index: number, indices: number[], limiter: Limiter, run: { stopped: boolean }): Promise<Batch | null> {
    const p = this.preprocessing, per = 3 * p.size * p.size;
    const x = new Float32Array(indices.length * per);
    const ok = await Promise.all(indices.map((i, slot) => limiter.run(async () => {
      if (run.stopped) return false;
      const item = this.items[i]!;
      let img: RgbImage;
      try {
        img = await this.image(item.path);
      } catch (e) {
        this.dataset.markSkipped(item.path, firstLine(e));
        return false;
      }
      applyPlan(img, planFor(img, p, this.mode, { seed: this.seed, epoch, index: i }), p, x, slot * per);
      return true;
    })));
    if (run.stopped) return null;

    // Leave out the images that failed (rare): compact x, labels and paths to the successful slots.
    const slots = indices.map((_, s) => s).filter((s) => ok[s]);
    if (slots.length === 0) return null;
    const n = slots.length;
    const xs = n === indices.length ? x : new Float32Array(n * per);
    if (xs !== x) slots.forEach((s, j) => xs.set(x.subarray(s * per, (s + 1) * per), j * per));
    return {
      x: xs,
      shape: [n, 3, p.size, p.size],
      labels: Uint32Array.from(slots, (s) => this.items[indices[s]!]!.label),
      paths: slots.map((s) => this.items[indices[s]!]!.path),
      n, epoch, index,
    };
  }
}
