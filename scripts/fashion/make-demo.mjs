// Writes the demo dataset examples/fashion5 from the Fashion-MNIST IDX files:
//
//   node scripts/fashion/make-demo.mjs [--idx-dir DIR] [--out examples/fashion5] [--test-out DIR] [--no-demo]
//
//   --idx-dir DIR   the IDX files (default $FASHION_MNIST_DIR, else /usr/share/datasets/fashion-mnist,
//                   where the Debian package dataset-fashion-mnist puts them)
//   --out DIR       the demo folder (default examples/fashion5): the TARGET classes 5-9, the first 286
//                   training images of each in file order, 1,430 in all
//   --test-out DIR  also writes the official TEST images of classes 5-9 (1,000 each, 5,000 in all) there,
//                   for accuracy on data the demo never saw (not committed)
//   --no-demo       skip --out (with --test-out: write only the test images)
//
// Layout (an image folder: one subfolder per class, read by wgtrain's ImageFolder):
//   <out>/5_sandal/00009.png  …  <out>/9_ankle_boot/…
// each a 28×28 8-bit grayscale PNG named by the image's index in the split's IDX file (5 digits, so
// name order = file order). Folders sort in label order, so ImageFolder's label i = i-th class here.
//
// Reproducible: the selection has no randomness, and the PNGs are encoded with fixed options and no
// metadata, so a rerun writes the same bytes (with the same sharp/libvips/zlib-ng, i.e. the sharp
// version in package-lock.json; another version may compress differently, never with other pixels).
// The class folders are replaced whole; other files in <out> (README.md, LICENSE) are left alone.
// At the end the folder is read back and checked: the class folders, the count per class, and each
// PNG's size and channels. Exit code 1 on any failure.

import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import {
  CLASS_NAMES, DEMO_PER_CLASS, TARGET_CLASSES, firstPerClass, folderName, loadSplit, resolveIdxDir,
} from './dataset.mjs';

/**
 * One 8-bit grayscale image as PNG bytes.
 * NOTE: sharp reads 1-channel raw input as sRGB and would write an RGB PNG; toColourspace('b-w')
 * keeps it 1-channel (PNG colour type 0). Filtering and compression are pinned, not left to defaults
 * that a sharp release could change; adaptive filtering (a deterministic per-row choice of PNG
 * filter) makes the files about 15% smaller than none.
 * @param {Uint8Array} pixels height·width bytes
 */
function encodePng(pixels, width, height) {
  return sharp(pixels, { raw: { width, height, channels: 1 } })
    .toColourspace('b-w')
    .png({ compressionLevel: 9, adaptiveFiltering: true, palette: false, progressive: false })
    .toBuffer();
}

/** PNG file name of a split index: 5 digits, zero-padded (Fashion-MNIST has < 100,000 images). */
const pngName = (index) => `${String(index).padStart(5, '0')}.png`;

/** Runs fn over items with at most `limit` in flight (sharp encodes on libuv's worker threads). */
async function forEachLimit(items, limit, fn) {
  let next = 0;
  const worker = async () => { while (next < items.length) { const i = next++; await fn(items[i]); } };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/**
 * Writes the chosen images of a split as an image folder: picked[k] are the indices of class
 * classes[k]. Each class folder is deleted first, so no stale file survives.
 */
async function writeImageFolder(split, classes, picked, out) {
  const hw = split.height * split.width;
  for (const [k, label] of classes.entries()) {
    const dir = join(out, folderName(label));
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    await forEachLimit(picked[k], 8, async (i) => {
      const png = await encodePng(split.pixels.subarray(i * hw, (i + 1) * hw), split.width, split.height);
      await writeFile(join(dir, pngName(i)), png);
    });
  }
}

/**
 * Reads the folder back: exactly the class folders expected (hidden entries and loose files aside),
 * each with exactly perClass files, all of them 1-channel PNGs of the split's size.
 */
async function verifyImageFolder(out, classes, perClass, width, height) {
  const dirs = (await readdir(out, { withFileTypes: true }))
    .filter((d) => d.isDirectory() && !d.name.startsWith('.')).map((d) => d.name).sort();
  const want = classes.map(folderName);
  if (dirs.join() !== want.join()) throw new Error(`${out}: class folders are [${dirs.join(', ')}], expected [${want.join(', ')}]`);
  let total = 0;
  for (const name of want) {
    const files = (await readdir(join(out, name))).filter((f) => !f.startsWith('.'));
    if (files.length !== perClass) throw new Error(`${out}/${name}: ${files.length} files, expected ${perClass}`);
    await forEachLimit(files, 8, async (f) => {
      const m = await sharp(join(out, name, f)).metadata();
      if (m.format !== 'png' || m.width !== width || m.height !== height || m.channels !== 1 || m.depth !== 'uchar') {
        throw new Error(`${out}/${name}/${f}: ${m.format} ${m.width}×${m.height}×${m.channels} ${m.depth}, expected png ${width}×${height}×1 uchar`);
      }
    });
    total += files.length;
  }
  return total;
}

/** Writes the images of `classes` from one split (the first perClass of each, or all) and checks them. */
async function makeFolder(split, classes, perClass, out) {
  const picked = firstPerClass(split.labels, classes, perClass);
  // With perClass undefined every class keeps what it has; the check then wants all classes equal,
  // which holds for Fashion-MNIST (6,000 per class in train, 1,000 in test).
  const n = perClass ?? picked[0].length;
  if (picked.some((p) => p.length !== n)) throw new Error(`classes have unequal counts: ${picked.map((p) => p.length).join(', ')}`);
  await writeImageFolder(split, classes, picked, out);
  const total = await verifyImageFolder(out, classes, n, split.width, split.height);
  const names = classes.map((c) => `${CLASS_NAMES[c]} ${n}`).join(', ');
  console.log(`${out}: ${total} images (${names}), ${split.width}×${split.height} grayscale PNG`);
}

function parseArgs(argv) {
  const opts = { idxDir: undefined, out: 'examples/fashion5', testOut: undefined, demo: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined || v.startsWith('--')) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--idx-dir') opts.idxDir = value();
    else if (a === '--out') opts.out = value();
    else if (a === '--test-out') opts.testOut = value();
    else if (a === '--no-demo') opts.demo = false;
    else if (a === '--help' || a === '-h') opts.help = true;
    else throw new Error(`unknown argument ${a} (try --help)`);
  }
  return opts;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.help) {
    console.log('usage: node scripts/fashion/make-demo.mjs [--idx-dir DIR] [--out examples/fashion5] [--test-out DIR] [--no-demo]');
    return;
  }
  const dir = resolveIdxDir(opts.idxDir);
  if (opts.demo) await makeFolder(loadSplit('train', dir), TARGET_CLASSES, DEMO_PER_CLASS, opts.out);
  if (opts.testOut) await makeFolder(loadSplit('test', dir), TARGET_CLASSES, undefined, opts.testOut);
  if (!opts.demo && !opts.testOut) console.log('nothing to do: --no-demo without --test-out');
}

main().catch((e) => {
  console.error(`make-demo: ${e instanceof Error ? e.message : e}`);
  process.exit(1);
});
