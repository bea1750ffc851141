// The demo dataset examples/fashion5 and the scripts that make it (scripts/fashion/).
//
// Always: the IDX reader on small hand-built files, and the committed folder (5 classes × 286
// 28×28 grayscale PNGs, readable by wgtrain's ImageFolder). When the Fashion-MNIST IDX files are
// installed (Debian package dataset-fashion-mnist, or $FASHION_MNIST_DIR): the committed PNGs hold the
// right pixels, make-demo reproduces them byte for byte, --test-out writes the 5,000 test images, and
// loadSourceTask returns classes 0-4.

import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openImageFolder } from '../../src/data/node.js';
import { parseIdx, readIdxImages, readIdxLabels } from '../../scripts/fashion/idx.mjs';
import {
  CLASS_NAMES, DEMO_PER_CLASS, TARGET_CLASSES, firstPerClass, folderName, idxFilesPresent, loadSplit, type Split,
} from '../../scripts/fashion/dataset.mjs';
import { loadSourceTask, toFloat01 } from '../../scripts/fashion/source.mjs';

const run = promisify(execFile);
const DEMO = 'examples/fashion5';
const SCRIPT = 'scripts/fashion/make-demo.mjs';
const haveIdx = idxFilesPresent();
if (!haveIdx) {
  console.warn('fashion.test: Fashion-MNIST IDX files not found (apt-get install dataset-fashion-mnist, or set ' +
    '$FASHION_MNIST_DIR): skipping the tests that regenerate examples/fashion5 and read the source task');
}

let tmp: string;
beforeAll(async () => { tmp = await mkdtemp(join(tmpdir(), 'wgtrain-fashion-')); });
afterAll(async () => { await rm(tmp, { recursive: true, force: true }); });

/** An IDX file: 0x00 0x00 0x08 rank, the dims big-endian, then the bytes. */
function idx(dims: number[], data: number[]): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  const view = new DataView(out.buffer);
  out.set([0, 0, 0x08, dims.length]);
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  out.set(data, 4 + 4 * dims.length);
  return out;
}

/** The first four bytes as a big-endian uint32: the "magic number" of the IDX description. */
const magic = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset).getUint32(0, false);

describe('IDX reader', () => {
  // 3 images of 2×3 (N×H×W), pixel value = 10·n + 3·y + x so that every position is distinct.
  const pixels = Array.from({ length: 3 * 2 * 3 }, (_, i) => 10 * Math.floor(i / 6) + (i % 6));
  const images = idx([3, 2, 3], pixels);
  const labels = idx([3], [7, 0, 9]);

  it('has the magic numbers 0x00000803 (images) and 0x00000801 (labels)', () => {
    expect(magic(images)).toBe(0x00000803);
    expect(magic(labels)).toBe(0x00000801);
  });

  it('reads images and labels, plain and gzipped alike', async () => {
    for (const gz of [false, true]) {
      const fi = join(tmp, `img-${gz}`), fl = join(tmp, `lab-${gz}`);
      await writeFile(fi, gz ? gzipSync(images) : images);
      await writeFile(fl, gz ? gzipSync(labels) : labels);
      const im = readIdxImages(fi);
      expect([im.count, im.height, im.width]).toEqual([3, 2, 3]);
      expect(Array.from(im.pixels)).toEqual(pixels);
      // Image 2, row 1, column 2 is at (2·H + 1)·W + 2 = 17.
      expect(im.pixels[(2 * 2 + 1) * 3 + 2]).toBe(25);
      expect(Array.from(readIdxLabels(fl))).toEqual([7, 0, 9]);
    }
  });

  it('rejects what is not IDX of unsigned bytes, with the reason', () => {
    expect(() => parseIdx(gzipSync(images))).toThrow(/not an IDX file.*gzipped/);
    const float = idx([3], [0, 0, 0]); float[2] = 0x0d;
    expect(() => parseIdx(float)).toThrow(/element type 0xd is not supported/);
    expect(() => parseIdx(images.subarray(0, images.length - 1))).toThrow(/3×2×3 = 18 bytes of data, the file holds 17/);
    expect(() => parseIdx(new Uint8Array([...images, 0]))).toThrow(/18 bytes of data, the file holds 19/);
    expect(() => parseIdx(images.subarray(0, 9))).toThrow(/truncated IDX header/);
  });

  it('tells images from labels', async () => {
    await writeFile(join(tmp, 'swap'), labels);
    expect(() => readIdxImages(join(tmp, 'swap'))).toThrow(/expected images \(magic 0x00000803/);
  });
});

describe('class naming and selection', () => {
  it('names folders <label>_<name>, sorting in label order', () => {
    expect(CLASS_NAMES.map((_, i) => folderName(i))).toEqual([
      '0_t_shirt_top', '1_trouser', '2_pullover', '3_dress', '4_coat',
      '5_sandal', '6_shirt', '7_sneaker', '8_bag', '9_ankle_boot',
    ]);
    const names = TARGET_CLASSES.map(folderName);
    expect([...names].sort()).toEqual(names);
    expect(() => folderName(10)).toThrow(/no label 10/);
  });

  it('takes the first perClass of each class in file order, in the order of the classes asked for', () => {
    const labels = Uint8Array.from([5, 6, 5, 1, 6, 5, 6, 5]);
    expect(firstPerClass(labels, [6, 5], 2)).toEqual([[1, 4], [0, 2]]);
    expect(firstPerClass(labels, [5, 6])).toEqual([[0, 2, 5, 7], [1, 4, 6]]);
    expect(() => firstPerClass(labels, [5, 6], 4)).toThrow(/class 6 \(Shirt\) has 3 images, fewer than the 4/);
  });
});

/** The class folders of an image folder and, per class, its file names (sorted). */
async function listing(root: string): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const d of (await readdir(root, { withFileTypes: true })).filter((d) => d.isDirectory()).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    out.set(d.name, (await readdir(join(root, d.name))).sort());
  }
  return out;
}

describe('examples/fashion5 (committed)', () => {
  it('holds 5 classes × 286 PNGs, the target classes in label order', async () => {
    const list = await listing(DEMO);
    expect([...list.keys()]).toEqual(['5_sandal', '6_shirt', '7_sneaker', '8_bag', '9_ankle_boot']);
    for (const files of list.values()) {
      expect(files).toHaveLength(DEMO_PER_CLASS);
      for (const f of files) expect(f).toMatch(/^\d{5}\.png$/);
    }
  });

  it('PNGs are 28×28, 1 channel, 8 bits (first and last of each class)', async () => {
    for (const [cls, files] of await listing(DEMO)) {
      for (const f of [files[0]!, files[files.length - 1]!]) {
        const m = await sharp(join(DEMO, cls, f)).metadata();
        expect([m.format, m.width, m.height, m.channels, m.depth], `${cls}/${f}`).toEqual(['png', 28, 28, 1, 'uchar']);
      }
    }
  });

  it("is read by wgtrain's ImageFolder as 5 classes of 286, nothing skipped", async () => {
    const ds = await openImageFolder(DEMO, { onWarning: (m) => { throw new Error(m); } });
    expect(ds.classes).toEqual(['5_sandal', '6_shirt', '7_sneaker', '8_bag', '9_ankle_boot']);
    expect(ds.items).toHaveLength(5 * DEMO_PER_CLASS);
    expect(ds.skipped).toEqual([]);
    const perLabel = [0, 0, 0, 0, 0];
    for (const it of ds.items) perLabel[it.label]!++;
    expect(perLabel).toEqual([286, 286, 286, 286, 286]);
  });
});

describe('make-demo without the IDX files', () => {
  it('fails with exit code 1 and an install hint', async () => {
    const err = await run(process.execPath, [SCRIPT, '--idx-dir', join(tmp, 'nowhere'), '--out', join(tmp, 'x')]).then(
      () => { throw new Error('should have failed'); }, (e: { code: number; stderr: string }) => e);
    expect(err.code).toBe(1);
    expect(err.stderr).toMatch(/train files not found.*apt-get install dataset-fashion-mnist/);
  });
});

describe.skipIf(!haveIdx)('from the IDX files', () => {
  let train: Split;
  beforeAll(() => { train = loadSplit('train'); });

  it('the training split is 60,000 images of 28×28, 6,000 per class', () => {
    expect([train.count, train.height, train.width]).toEqual([60000, 28, 28]);
    const perClass = new Array(10).fill(0);
    for (const l of train.labels) perClass[l]++;
    expect(perClass).toEqual(new Array(10).fill(6000));
  });

  it('each committed PNG is the training image its name indexes, of its folder\'s class (every 7th checked)', async () => {
    const hw = 28 * 28;
    const picked = firstPerClass(train.labels, TARGET_CLASSES, DEMO_PER_CLASS);
    const list = await listing(DEMO);
    for (const [k, label] of TARGET_CLASSES.entries()) {
      const files = list.get(folderName(label))!;
      // The names are exactly the first 286 indices of the class, in file order.
      expect(files.map((f) => Number(f.slice(0, 5)))).toEqual(picked[k]);
      for (const f of files.filter((_, i) => i % 7 === 0)) {
        const i = Number(f.slice(0, 5));
        expect(train.labels[i]).toBe(label);
        // NOTE: sharp turns gray into sRGB on output unless told to keep it b-w.
        const decoded = await sharp(join(DEMO, folderName(label), f)).toColourspace('b-w').raw().toBuffer();
        expect(decoded.length).toBe(hw);
        expect(Buffer.compare(decoded, train.pixels.subarray(i * hw, (i + 1) * hw)), f).toBe(0);
      }
    }
  });

  it('make-demo reproduces every committed file byte for byte', async () => {
    const out = join(tmp, 'demo');
    const { stdout } = await run(process.execPath, [SCRIPT, '--out', out]);
    expect(stdout).toContain(`${out}: 1430 images`);
    const want = await listing(DEMO), got = await listing(out);
    expect(got).toEqual(want);
    const differ: string[] = [];
    for (const [cls, files] of want) {
      for (const f of files) {
        const [a, b] = await Promise.all([readFile(join(DEMO, cls, f)), readFile(join(out, cls, f))]);
        if (!a.equals(b)) differ.push(`${cls}/${f}`);
      }
    }
    expect(differ).toEqual([]);
  });

  it('--test-out writes the 1,000 test images of each target class', async () => {
    const out = join(tmp, 'test5');
    const { stdout } = await run(process.execPath, [SCRIPT, '--no-demo', '--test-out', out]);
    expect(stdout).toContain(`${out}: 5000 images`);
    const list = await listing(out);
    expect([...list.keys()]).toEqual(TARGET_CLASSES.map(folderName));
    for (const files of list.values()) expect(files).toHaveLength(1000);
  });

  it('loadSourceTask: classes 0-4, 30,000 training and 5,000 test images, labels 0-4', () => {
    const { classes, train: tr, test } = loadSourceTask();
    expect(classes).toEqual(['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat']);
    for (const [t, n] of [[tr, 30000], [test, 5000]] as const) {
      expect([t.count, t.height, t.width, t.pixels.length, t.labels.length]).toEqual([n, 28, 28, n * 784, n]);
      const perClass = [0, 0, 0, 0, 0];
      for (const l of t.labels) perClass[l]!++;
      expect(perClass).toEqual(new Array(5).fill(n / 5));
    }
    // Row i is training image index[i], in file order, with its own label.
    const hw = 784;
    expect(tr.index.every((v, i) => i === 0 || v > tr.index[i - 1]!)).toBe(true);
    for (const i of [0, 1, 12345, 29999]) {
      const src = tr.index[i]!;
      expect(tr.labels[i]).toBe(train.labels[src]);
      expect(Buffer.compare(tr.pixels.subarray(i * hw, (i + 1) * hw), train.pixels.subarray(src * hw, (src + 1) * hw))).toBe(0);
    }
    const f = toFloat01(Uint8Array.from([0, 51, 255]));
    expect(Array.from(f)).toEqual([0, Math.fround(0.2), 1]);
  });
});
