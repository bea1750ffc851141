// ImageFolder: a dataset laid out as one subfolder per class (torchvision's ImageFolder, Keras's
// image_dataset_from_directory):
//
//   root/
//     cat/  001.jpg  002.png  more/003.webp     ← class "cat" (subfolders are searched too)
//     dog/  a.jpeg   B.JPG                      ← class "dog"
//
// Rules (each one a deliberate choice; the tests pin them):
//   - class names are the subfolder names sorted in Unicode code-point order, which is the byte order
//     of their UTF-8 encoding and what Python's sorted() gives (so labels match torchvision and Keras
//     for the same folders). NOTE: it is case-sensitive: "Zebra" sorts before "apple".
//   - label = index of the class in that order.
//   - images: files ending in .jpg .jpeg .png .webp, any letter case; other files are ignored.
//   - hidden entries (name starting with '.') are ignored, files and folders alike, as are files
//     directly in the root.
//   - items are listed in code-point order of their relative path, so the dataset is the same whatever
//     order the file system lists in.
//   - an unreadable or corrupt image is skipped with a warning and recorded in `skipped`, when the
//     dataset is opened (its header is checked) or later, when a full decode fails during training.
// Layout problems are DataErrors with a one-line message: what is wrong and what to do.

import { mapLimit } from './async.js';
import { DataError, firstLine } from './errors.js';
import { joinPath, type DecodeOptions, type ImageDecoder, type ImageSource, type RgbImage } from './image.js';

export const IMAGE_EXTENSIONS: readonly string[] = ['.jpg', '.jpeg', '.png', '.webp'];

/** True for a file name the dataset takes as an image: not hidden, with an image extension. */
export function isImageFile(name: string): boolean {
  if (name.startsWith('.')) return false;
  const dot = name.lastIndexOf('.');
  return dot > 0 && IMAGE_EXTENSIONS.includes(name.slice(dot).toLowerCase());
}

/**
 * Compares strings by Unicode code point (= UTF-8 byte order). NOTE: JavaScript's default sort
 * compares UTF-16 code units, which differs for characters above U+FFFF (emoji) versus U+E000–U+FFFF.
 */
export function compareCodePoints(a: string, b: string): number {
  const ia = a[Symbol.iterator](), ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next(), y = ib.next();
    if (x.done || y.done) return x.done ? (y.done ? 0 : -1) : 1;
    const d = x.value.codePointAt(0)! - y.value.codePointAt(0)!;
    if (d !== 0) return d;
  }
}

/** One image of the dataset: its path relative to the root ('/'-separated) and its class index. */
export interface LabeledItem {
  path: string;
  label: number;
}

/** An image left out, and why. */
export interface SkippedImage {
  path: string;
  reason: string;
}

export interface ImageFolderOptions {
  decoder: ImageDecoder;
  /**
   * 'header' (default): read every file's header when opening, and skip those that are not images.
   * 'none': trust the extensions; corrupt files are then found (and skipped) during training.
   */
  verify?: 'header' | 'none';
  /** Where warnings go (default: console.warn, i.e. stderr in Node). */
  onWarning?: (message: string) => void;
}

/** How many names a warning or error lists before "and N more". */
const NAMES_SHOWN = 5;

function nameList(names: readonly string[]): string {
  const shown = names.slice(0, NAMES_SHOWN).map((n) => `"${n}"`).join(', ');
  return names.length > NAMES_SHOWN ? `${shown} and ${names.length - NAMES_SHOWN} more` : shown;
}

export class ImageFolder {
  /** Paths of `skipped`, for the loader's per-item check. */
  private readonly skippedPaths = new Set<string>();

  private constructor(
    readonly source: ImageSource,
    readonly decoder: ImageDecoder,
    /** Class names; label i is classes[i]. */
    readonly classes: readonly string[],
    /** Every readable image found when opening, in path order. */
    readonly items: readonly LabeledItem[],
    /** Images left out so far (found unreadable when opening or during training). */
    readonly skipped: SkippedImage[],
    private readonly warn: (message: string) => void,
  ) {
    for (const s of skipped) this.skippedPaths.add(s.path);
  }

  /** Scans `source` for classes and images. Throws a DataError for a bad layout. */
  static async open(source: ImageSource, opts: ImageFolderOptions): Promise<ImageFolder> {
    const root = source.root;
    const warn = opts.onWarning ?? ((m: string) => console.warn(`wgtrain: ${m}`));
    const kind = await source.stat('');
    if (kind === 'missing') {
      throw new DataError(`data folder "${root}" does not exist: pass a folder that holds one subfolder of images per class`);
    }
    if (kind === 'file') {
      throw new DataError(`"${root}" is a file, not a folder: pass a folder that holds one subfolder of images per class`);
    }

    const top = (await source.list('')).filter((e) => !e.name.startsWith('.'));
    const classes = top.filter((e) => e.kind === 'dir').map((e) => e.name).sort(compareCodePoints);
    if (classes.length === 0) {
      const loose = top.filter((e) => e.kind === 'file' && isImageFile(e.name)).length;
      const hint = loose > 0 ? ` (it holds ${loose} images directly: move them into one subfolder per class)` : '';
      throw new DataError(`"${root}" has no class subfolders${hint}: put each class's images in its own subfolder, e.g. ${root}/cat/1.jpg and ${root}/dog/1.jpg`);
    }

    // Every image file of every class, in path order.
    const perClass = await Promise.all(classes.map((c) => listImages(source, c)));
    const candidates: LabeledItem[] = perClass.flatMap((paths, label) => paths.map((path) => ({ path, label })));

    // Check each file's header; keep what the decoder can read.
    const skipped: SkippedImage[] = [];
    let items = candidates;
    if ((opts.verify ?? 'header') === 'header') {
      const ok = await mapLimit(candidates, 8, async (it) => {
        try {
          await opts.decoder.probe(await source.read(it.path));
          return true;
        } catch (e) {
          skipped.push({ path: it.path, reason: firstLine(e) });
          return false;
        }
      });
      items = candidates.filter((_, i) => ok[i]);
      skipped.sort((a, b) => compareCodePoints(a.path, b.path));
    }

    const counts = classes.map(() => 0);
    for (const it of items) counts[it.label]!++;
    const empty = classes.filter((_, i) => counts[i] === 0);
    if (empty.length > 0) {
      // Files were there but none could be read, or there were none to begin with?
      const unreadable = empty.some((c) => perClass[classes.indexOf(c)]!.length > 0);
      const what = unreadable ? 'no readable images' : `no images (${IMAGE_EXTENSIONS.join(' ')})`;
      const folders = nameList(empty.map((c) => `${root}/${c}`));
      throw new DataError(
        empty.length === 1
          ? `class folder ${folders} has ${what}: add images to it or remove the folder`
          : `class folders ${folders} have ${what}: add images to them or remove the folders`,
      );
    }
    if (classes.length === 1) {
      throw new DataError(`"${root}" has only one class ("${classes[0]}"): a classifier needs at least two class subfolders`);
    }

    if (skipped.length > 0) {
      warn(`skipped ${skipped.length} unreadable image${skipped.length === 1 ? '' : 's'} in "${root}": ` +
        skipped.slice(0, NAMES_SHOWN).map((s) => `"${s.path}" (${s.reason})`).join(', ') +
        (skipped.length > NAMES_SHOWN ? ` and ${skipped.length - NAMES_SHOWN} more` : ''));
    }
    return new ImageFolder(source, opts.decoder, classes, items, skipped, warn);
  }

  /** Number of (readable) images per class, indexed by label. */
  classCounts(): number[] {
    const counts = this.classes.map(() => 0);
    for (const it of this.items) if (!this.skippedPaths.has(it.path)) counts[it.label]!++;
    return counts;
  }

  /** Reads and decodes one image. Throws if it cannot (the loader catches and calls markSkipped). */
  async decode(path: string, opts?: DecodeOptions): Promise<RgbImage> {
    return this.decoder.decode(await this.source.read(path), opts);
  }

  /** Records an image that failed to decode during training: warns once, and the loader leaves it out from then on. */
  markSkipped(path: string, reason: string): void {
    if (this.skippedPaths.has(path)) return;
    this.skippedPaths.add(path);
    this.skipped.push({ path, reason });
    this.warn(`skipped unreadable image "${path}" (${reason}); ${this.skipped.length} skipped in total`);
  }

  isSkipped(path: string): boolean {
    return this.skippedPaths.has(path);
  }

  /** The decoder's preferred number of concurrent decodes. */
  get concurrency(): number | undefined {
    return this.decoder.concurrency;
  }
}

/** The image files under class folder `dir`, searched recursively, in code-point order of path. */
async function listImages(source: ImageSource, dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await source.list(dir)) {
    if (e.name.startsWith('.')) continue;
    const path = joinPath(dir, e.name);
    if (e.kind === 'dir') out.push(...(await listImages(source, path)));
    else if (isImageFile(e.name)) out.push(path);
  }
  return out.sort(compareCodePoints);
}
