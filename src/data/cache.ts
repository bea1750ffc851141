// A small in-memory cache of decoded images, least-recently-used out first, bounded by bytes.
//
// For tiny datasets the decode (entropy decoding of a JPEG, colour conversion) costs far more than
// the transform, and the eval view of an image is the same every epoch: with a cache, each image is
// decoded once per run. Training views are still re-cropped every epoch from the cached pixels.
//
// NOTE: the budget counts pixel bytes only (width·height·3); the few objects around them are noise.
// An image larger than the whole budget is not cached at all (it would evict everything for nothing).

import { imageBytes, type RgbImage } from './image.js';

export class ImageCache {
  // A Map iterates in insertion order; re-inserting on every hit keeps the least recently used first.
  private readonly entries = new Map<string, RgbImage>();
  private usedBytes = 0;
  hits = 0;
  misses = 0;

  constructor(readonly maxBytes: number) {
    if (!(maxBytes >= 0)) throw new Error(`ImageCache: maxBytes must be ≥ 0, got ${maxBytes}`);
  }

  get bytes(): number { return this.usedBytes; }
  get size(): number { return this.entries.size; }

  get(key: string): RgbImage | undefined {
    const img = this.entries.get(key);
    if (img === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    this.entries.delete(key);
    this.entries.set(key, img);
    return img;
  }

  set(key: string, img: RgbImage): void {
    const n = imageBytes(img);
    this.delete(key);
    if (n > this.maxBytes) return;
    // Evict from the least-recent end until the new image fits.
    for (const [k] of this.entries) {
      if (this.usedBytes + n <= this.maxBytes) break;
      this.delete(k);
    }
    this.entries.set(key, img);
    this.usedBytes += n;
  }

  delete(key: string): void {
    const old = this.entries.get(key);
    if (old === undefined) return;
    this.entries.delete(key);
    this.usedBytes -= imageBytes(old);
  }

  clear(): void {
    this.entries.clear();
    this.usedBytes = 0;
  }
}
