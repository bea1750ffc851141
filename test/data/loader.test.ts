import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../../src/data/async.js';
import { ImageCache } from '../../src/data/cache.js';
import type { ImageFolder, LabeledItem } from '../../src/data/folder.js';
import type { RgbImage } from '../../src/data/image.js';
import { DataLoader, type Batch, type DecodableDataset } from '../../src/data/loader.js';
import { openImageFolder } from '../../src/data/node.js';
import { defaultPreprocessing, type Preprocessing } from '../../src/data/preprocessing.js';
import { Rng } from '../helpers.js';
import { encode, put, putSolid, tempDir } from './fixtures.js';

let tmp: { dir: string; cleanup: () => Promise<void> };
beforeAll(async () => { tmp = await tempDir(); });
afterAll(async () => { await tmp.cleanup(); });

const COLOURS: Record<string, [number, number, number]> = { cat: [250, 20, 20], dog: [20, 250, 20], owl: [20, 20, 250] };
const SIZE = 4;
const prep: Preprocessing = { ...defaultPreprocessing(SIZE), resizeRatio: 0.8 };

/** 7 cats, 5 dogs, 4 owls: solid images of their class's colour, in assorted sizes. */
async function colourDataset(root: string, extra: (root: string) => Promise<void> = async () => {}): Promise<{ ds: ImageFolder; warnings: string[] }> {
  const counts: Record<string, number> = { cat: 7, dog: 5, owl: 4 };
  for (const [c, n] of Object.entries(counts)) {
    for (let k = 0; k < n; k++) await putSolid(root, `${c}/${k}.png`, 5 + k, 9 - k, COLOURS[c]!);
  }
  await extra(root);
  const warnings: string[] = [];
  return { ds: await openImageFolder(root, { onWarning: (m) => warnings.push(m) }), warnings };
}

async function collect(it: AsyncIterable<Batch>): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of it) out.push(b);
  return out;
}

/** Checks that each image of the batch is its label's colour, normalised: labels really match folders. */
function expectClassColours(b: Batch, classes: readonly string[]) {
  const S = SIZE * SIZE;
  for (let i = 0; i < b.n; i++) {
    const rgb = COLOURS[classes[b.labels[i]!]!]!;
    expect(classes[b.labels[i]!]).toBe(b.paths[i]!.split('/')[0]);
    for (let c = 0; c < 3; c++) {
      const want = (rgb[c]! / 255 - prep.mean[c]!) / prep.std[c]!;
      for (let k = 0; k < S; k++) expect(b.x[(i * 3 + c) * S + k]).toBeCloseTo(want, 5);
    }
  }
}

describe('DataLoader over an ImageFolder', () => {
  let ds: ImageFolder;
  beforeAll(async () => { ({ ds } = await colourDataset(`${tmp.dir}/colours`)); });

  it('covers every item exactly once per epoch, NCHW batches, labels match folders', async () => {
    for (const transform of ['eval', 'train'] as const) {
      const loader = new DataLoader(ds, ds.items, { batchSize: 5, preprocessing: prep, transform, seed: 3 });
      expect(loader.length).toBe(4); // 16 items: 5 + 5 + 5 + 1
      for (const epoch of [0, 1]) {
        const batches = await collect(loader.batches(epoch));
        expect(batches.map((b) => b.n)).toEqual([5, 5, 5, 1]);
        expect(batches.map((b) => b.index)).toEqual([0, 1, 2, 3]);
        for (const b of batches) {
          expect(b.shape).toEqual([b.n, 3, SIZE, SIZE]);
          expect(b.x.length).toBe(b.n * 3 * SIZE * SIZE);
          expect(b.epoch).toBe(epoch);
          expectClassColours(b, ds.classes);
        }
        expect(batches.flatMap((b) => b.paths).sort()).toEqual(ds.items.map((i) => i.path).sort());
      }
    }
  });

  it('drop_last drops the short batch', async () => {
    const loader = new DataLoader(ds, ds.items, { batchSize: 5, preprocessing: prep, dropLast: true });
    expect(loader.length).toBe(3);
    expect((await collect(loader.batches(0))).map((b) => b.n)).toEqual([5, 5, 5]);
  });

  it('eval order is the list order; train order is a seeded shuffle per epoch', async () => {
    const paths = async (l: DataLoader, e: number) => (await collect(l.batches(e))).flatMap((b) => b.paths);
    const ev = new DataLoader(ds, ds.items, { batchSize: 4, preprocessing: prep });
    expect(await paths(ev, 0)).toEqual(ds.items.map((i) => i.path));
    const tr = new DataLoader(ds, ds.items, { batchSize: 4, preprocessing: prep, transform: 'train', seed: 1 });
    const e0 = await paths(tr, 0), e1 = await paths(tr, 1);
    expect(e1).not.toEqual(e0);
    expect(await paths(tr, 0)).toEqual(e0);
    const other = new DataLoader(ds, ds.items, { batchSize: 4, preprocessing: prep, transform: 'train', seed: 2 });
    expect(await paths(other, 0)).not.toEqual(e0);
  });

  it('for await over the loader runs epoch 0, then 1, …', async () => {
    const loader = new DataLoader(ds, ds.items, { batchSize: 8, preprocessing: prep });
    expect((await collect(loader)).map((b) => b.epoch)).toEqual([0, 0]);
    expect((await collect(loader)).map((b) => b.epoch)).toEqual([1, 1]);
  });
});

describe('DataLoader: training batches are reproducible', () => {
  it('same (seed, epoch) → identical tensors, whatever the prefetch and concurrency; other epochs differ', async () => {
    const root = `${tmp.dir}/noise`;
    const rng = new Rng(17);
    for (const c of ['x', 'y']) {
      for (let k = 0; k < 5; k++) {
        const w = 12 + k, h = 10 + 2 * k;
        await put(root, `${c}/${k}.png`, await encode(Array.from({ length: w * h * 3 }, () => rng.int(256)), w, h, 3));
      }
    }
    const ds = await openImageFolder(root);
    const make = (prefetch: number, concurrency: number) =>
      new DataLoader(ds, ds.items, { batchSize: 3, preprocessing: prep, transform: 'train', seed: 5, prefetch, concurrency });
    const run = async (l: DataLoader, e: number) => (await collect(l.batches(e))).map((b) => [b.paths, Array.from(b.x)]);
    const a = await run(make(2, 4), 1);
    expect(await run(make(0, 1), 1)).toEqual(a);
    expect(await run(make(3, 2), 2)).not.toEqual(a);
  });
});

/** A dataset whose decode takes `delayMs` and counts calls: for timing, caching and failure tests. */
class FakeDataset implements DecodableDataset {
  decodes = 0;
  readonly skipped: string[] = [];
  constructor(readonly delayMs: number, readonly failing = new Set<string>()) {}
  async decode(path: string): Promise<RgbImage> {
    this.decodes++;
    await sleep(this.delayMs);
    if (this.failing.has(path)) throw new Error(`cannot decode ${path}\nsecond line`);
    return { width: 6, height: 6, data: new Uint8Array(6 * 6 * 3).fill(100) };
  }
  markSkipped(path: string): void { if (!this.skipped.includes(path)) this.skipped.push(path); }
  isSkipped(path: string): boolean { return this.skipped.includes(path); }
}

const fakeItems = (n: number): LabeledItem[] => Array.from({ length: n }, (_, i) => ({ path: `c${i % 2}/${i}.png`, label: i % 2 }));

describe('DataLoader: prefetch', () => {
  it('decodes the next batches while the consumer works, never more than `prefetch` ahead', async () => {
    // Each batch of 3 decodes in one 100 ms wave (concurrency 3); the consumer spends 100 ms per batch.
    const ms = 100, nb = 4;
    const timed = async (prefetch: number) => {
      const ds = new FakeDataset(ms);
      const loader = new DataLoader(ds, fakeItems(3 * nb), { batchSize: 3, preprocessing: prep, prefetch, concurrency: 3 });
      const started: number[] = [];
      const t0 = performance.now();
      for await (const b of loader.batches(0)) {
        await sleep(ms); // the consumer's work (a training step)
        started[b.index] = ds.decodes; // decodes started by the time the consumer finished this batch
      }
      return { elapsed: performance.now() - t0, started };
    };
    const serial = await timed(0);
    const ahead = await timed(2);
    // Without prefetch, nothing is decoded while the consumer works: batch k's 3 images, no more.
    expect(serial.started).toEqual([3, 6, 9, 12]);
    // With prefetch 2, batches k+1 and k+2 were already started (bounded: not k+3).
    expect(ahead.started).toEqual([9, 12, 12, 12]);
    // Timing: serial ≥ nb·(decode + consume) = 800 ms; overlapped ≈ decode + nb·consume = 500 ms.
    console.log(`prefetch 0: ${serial.elapsed.toFixed(0)} ms, prefetch 2: ${ahead.elapsed.toFixed(0)} ms (sum of work ${nb * 2 * ms} ms)`);
    expect(serial.elapsed).toBeGreaterThanOrEqual(nb * 2 * ms - 5);
    expect(ahead.elapsed).toBeLessThan(0.8 * nb * 2 * ms);
  });

  it('a consumer that stops early stops the queued work', async () => {
    const ds = new FakeDataset(20);
    const loader = new DataLoader(ds, fakeItems(40), { batchSize: 2, preprocessing: prep, prefetch: 2, concurrency: 2 });
    for await (const b of loader.batches(0)) { if (b.index === 0) break; }
    await sleep(150);
    // Batch 0 plus the two prefetched batches at most: 6 images, not 40.
    expect(ds.decodes).toBeLessThanOrEqual(6);
  });
});

describe('DataLoader: failures and cache', () => {
  it('a decode failure during training is skipped with a warning, not a crash, and left out afterwards', async () => {
    const root = `${tmp.dir}/truncated`;
    const { ds, warnings } = await colourDataset(root, async (r) => {
      // A PNG cut short: its header reads fine, so opening keeps it; the full decode fails.
      const png = await encode(Array(16 * 16 * 3).fill(7), 16, 16, 3);
      await put(r, 'dog/zz-cut.png', png.subarray(0, png.length - 30));
    });
    expect(ds.items).toHaveLength(17);
    expect(warnings).toEqual([]);
    const loader = new DataLoader(ds, ds.items, { batchSize: 6, preprocessing: prep });
    const e0 = await collect(loader.batches(0));
    expect(e0.map((b) => b.n)).toEqual([6, 6, 4]); // the bad image's batch is one short
    for (const b of e0) expectClassColours(b, ds.classes);
    expect(e0.flatMap((b) => b.paths)).not.toContain('dog/zz-cut.png');
    expect(ds.skipped.map((s) => s.path)).toEqual(['dog/zz-cut.png']);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/skipped unreadable image "dog\/zz-cut.png" \(.+\); 1 skipped in total/);
    // Later epochs no longer count it.
    expect(loader.length).toBe(3);
    expect((await collect(loader.batches(1))).map((b) => b.n)).toEqual([6, 6, 4]);
    expect(warnings).toHaveLength(1);
  });

  it('a batch whose images all fail is not yielded', async () => {
    const items = fakeItems(6);
    const ds = new FakeDataset(1, new Set([items[2]!.path, items[3]!.path]));
    const batches = await collect(new DataLoader(ds, items, { batchSize: 2, preprocessing: prep }).batches(0));
    expect(batches.map((b) => b.index)).toEqual([0, 2]);
    expect(ds.skipped).toEqual([items[2]!.path, items[3]!.path]);
  });

  it('the cache decodes each image once across epochs', async () => {
    const items = fakeItems(10);
    const uncached = new FakeDataset(1);
    const l1 = new DataLoader(uncached, items, { batchSize: 4, preprocessing: prep });
    await collect(l1.batches(0));
    await collect(l1.batches(1));
    expect(uncached.decodes).toBe(20);
    const cached = new FakeDataset(1);
    const cache = new ImageCache(1 << 20);
    const l2 = new DataLoader(cached, items, { batchSize: 4, preprocessing: prep, cache });
    const a = await collect(l2.batches(0));
    const b = await collect(l2.batches(1));
    expect(cached.decodes).toBe(10);
    expect([cache.hits, cache.misses, cache.size, cache.bytes]).toEqual([10, 10, 10, 10 * 6 * 6 * 3]);
    expect(b.map((x) => Array.from(x.x))).toEqual(a.map((x) => Array.from(x.x)));
  });

  it('ImageCache evicts the least recently used by bytes', () => {
    const img = (n: number): RgbImage => ({ width: n, height: 1, data: new Uint8Array(n * 3) });
    const cache = new ImageCache(30); // room for 10 pixels
    cache.set('a', img(4));
    cache.set('b', img(4));
    expect(cache.get('a')).toBeDefined(); // a is now the most recent
    cache.set('c', img(4)); // 36 bytes > 30: evict b (least recent), not a
    expect([cache.get('a'), cache.get('b'), cache.get('c')].map((x) => x !== undefined)).toEqual([true, false, true]);
    expect(cache.bytes).toBe(24);
    cache.set('huge', img(11)); // larger than the whole cache: not cached, nothing evicted
    expect(cache.get('huge')).toBeUndefined();
    expect(cache.size).toBe(2);
    cache.set('a', img(2)); // replacing an entry updates the byte count
    expect(cache.bytes).toBe(18);
  });
});
