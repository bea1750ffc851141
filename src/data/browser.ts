// The browser side of the data pipeline: the counterpart of node.ts, behind the same interfaces
// (image.ts), so ImageFolder, the split, the transforms and the DataLoader run unchanged in a page or
// a Worker.
//
//   BrowserDecoder        ImageDecoder over createImageBitmap + OffscreenCanvas (works in Workers)
//   filesSource(files)    an ImageSource over File objects from <input type=file webkitdirectory>
//   droppedFiles(items)   the files of folders dragged onto the page (DataTransferItemList)
//   openBrowserFolder     ImageFolder.open with the BrowserDecoder
//
// Nothing here imports Node modules; nothing in node.ts is reachable from here.

import { ImageFolder, type ImageFolderOptions } from './folder.js';
import { MemorySource, type DecodeOptions, type ImageDecoder, type RgbImage } from './image.js';

/** The size a decode produces: the shorter side shrunk to `m` (aspect kept, never enlarged). */
export function decodeSize(width: number, height: number, m: number | undefined): { width: number; height: number } {
  const shorter = Math.min(width, height);
  if (!m || shorter <= m) return { width, height };
  const s = m / shorter;
  // NOTE: the shorter side is exactly m; the longer one rounds (as sharp's fit 'outside' does).
  return width <= height ? { width: m, height: Math.max(1, Math.round(height * s)) } : { width: Math.max(1, Math.round(width * s)), height: m };
}

/**
 * Decoding with the browser's own image decoders (JPEG, PNG, WebP, and whatever else it reads),
 * meeting the ImageDecoder contract:
 *   - EXIF orientation applied: createImageBitmap's default `imageOrientation: 'from-image'`;
 *   - any colour space → sRGB (the 2D canvas is sRGB; embedded ICC profiles are honoured);
 *   - grayscale → R = G = B, 16 bits → 8 (the canvas is 8-bit RGBA);
 *   - alpha dropped.
 * NOTE: a 2D canvas stores premultiplied alpha, so the colour under a pixel is only kept where the
 * pixel is opaque: fully transparent pixels come out black (what PIL gives for the usual file that
 * stores black there) and half-transparent ones lose low bits. Opaque images (photos, the demo's
 * PNGs) decode to exactly the bytes sharp gives.
 */
export class BrowserDecoder implements ImageDecoder {
  readonly concurrency = Math.max(1, (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ?? 4);

  private async bitmap(bytes: Uint8Array): Promise<ImageBitmap> {
    if (typeof createImageBitmap !== 'function') throw new Error('this environment has no createImageBitmap (BrowserDecoder needs a browser page or worker)');
    // NOTE: Blob copies the bytes; a view into a larger buffer would otherwise hand over all of it.
    const blob = new Blob([bytes.slice() as Uint8Array<ArrayBuffer>]);
    try {
      return await createImageBitmap(blob, { premultiplyAlpha: 'none', colorSpaceConversion: 'default' });
    } catch (e) {
      throw new Error(`not an image the browser can decode (${(e as Error).message || 'InvalidStateError'})`);
    }
  }

  async probe(bytes: Uint8Array): Promise<{ width: number; height: number }> {
    // NOTE: browsers have no header-only decode; this decodes the image once (cheap next to training).
    const bm = await this.bitmap(bytes);
    const size = { width: bm.width, height: bm.height };
    bm.close();
    if (!(size.width > 0 && size.height > 0)) throw new Error('image has no size');
    return size;
  }

  async decode(bytes: Uint8Array, opts?: DecodeOptions): Promise<RgbImage> {
    const bm = await this.bitmap(bytes);
    try {
      const { width, height } = decodeSize(bm.width, bm.height, opts?.maxShorterSide);
      const canvas = new OffscreenCanvas(width, height);
      const ctx = canvas.getContext('2d', { willReadFrequently: true, alpha: true });
      if (!ctx) throw new Error('OffscreenCanvas has no 2D context');
      ctx.imageSmoothingQuality = 'high';
      ctx.drawImage(bm, 0, 0, width, height);
      const rgba = ctx.getImageData(0, 0, width, height, { colorSpace: 'srgb' }).data;
      // RGBA → RGB, row-major HWC.
      const data = new Uint8Array(width * height * 3);
      for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
        data[j] = rgba[i]!; data[j + 1] = rgba[i + 1]!; data[j + 2] = rgba[i + 2]!;
      }
      return { width, height, data };
    } finally {
      bm.close();
    }
  }
}

/** A File and the path it had inside the picked or dropped folder ('cat/1.jpg', root stripped). */
export type RelativeFile = readonly [path: string, file: Blob];

/**
 * The files of a picked folder (<input type=file webkitdirectory>): each File's webkitRelativePath is
 * "picked/cat/1.jpg"; the common first segment (the picked folder) is stripped, so paths are
 * relative to the dataset root as on the Node side.
 */
export function relativeFiles(files: Iterable<File>): RelativeFile[] {
  const list = [...files].map((f) => [f.webkitRelativePath || f.name, f] as const);
  return stripCommonRoot(list);
}

/** Strips a first path segment that every file shares (the folder that was picked or dropped). */
export function stripCommonRoot(list: readonly RelativeFile[]): RelativeFile[] {
  const firsts = new Set(list.map(([p]) => p.split('/')[0]));
  const nested = list.every(([p]) => p.includes('/'));
  if (firsts.size === 1 && nested && list.length > 0) return list.map(([p, f]) => [p.slice(p.indexOf('/') + 1), f] as const);
  return [...list];
}

/** An ImageSource over picked or dropped files; `root` names the folder in messages. */
export function filesSource(files: readonly RelativeFile[], root = 'the selected folder'): MemorySource {
  return new MemorySource(files, root);
}

/**
 * The files under folders (and loose files) dragged onto the page, with paths relative to the
 * dropped item's parent: dropping folder "pets" gives "pets/cat/1.jpg" (use stripCommonRoot).
 * NOTE: must be called synchronously in the drop handler: the DataTransfer empties afterwards, so
 * the entries are taken first and read later.
 */
export function droppedFiles(items: DataTransferItemList): Promise<RelativeFile[]> {
  const entries: FileSystemEntry[] = [];
  for (let i = 0; i < items.length; i++) {
    const it = items[i]!;
    const e = it.kind === 'file' ? it.webkitGetAsEntry() : null;
    if (e) entries.push(e);
  }
  return (async () => {
    const out: [string, File][] = [];
    const walk = async (e: FileSystemEntry, prefix: string): Promise<void> => {
      const path = prefix ? `${prefix}/${e.name}` : e.name;
      if (e.isFile) {
        out.push([path, await new Promise<File>((res, rej) => (e as FileSystemFileEntry).file(res, rej))]);
      } else if (e.isDirectory) {
        const reader = (e as FileSystemDirectoryEntry).createReader();
        // NOTE: readEntries returns at most ~100 entries per call; call until it returns none.
        for (;;) {
          const batch = await new Promise<FileSystemEntry[]>((res, rej) => reader.readEntries(res, rej));
          if (batch.length === 0) break;
          for (const c of batch) await walk(c, path);
        }
      }
    };
    for (const e of entries) await walk(e, '');
    return out;
  })();
}

/** Opens an image folder held in the browser (picked, dropped or fetched), decoding with the browser. */
export function openBrowserFolder(files: readonly RelativeFile[], root: string, opts: Partial<ImageFolderOptions> = {}): Promise<ImageFolder> {
  return ImageFolder.open(filesSource(files, root), { decoder: new BrowserDecoder(), ...opts });
}
