// The Node side of the data pipeline: the file system (fs) and image decoding (sharp). This is the
// only file of src/data that imports either; a browser build provides its own ImageSource (e.g.
// MemorySource over File objects) and ImageDecoder (createImageBitmap + OffscreenCanvas).

import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { availableParallelism, homedir } from 'node:os';
import { dirname, join } from 'node:path';
import sharp from 'sharp';
import type { TuneStore, TuneTable } from '../gpu/tune.js';
import { DataError } from './errors.js';
import { ImageFolder, type ImageFolderOptions } from './folder.js';
import type { DecodeOptions, DirEntry, ImageDecoder, ImageSource, RgbImage } from './image.js';
import { parseManifest, serializeManifest, type SplitManifest } from './split.js';

/** A folder on disk as an ImageSource. Symbolic links are followed. */
export class NodeFileSource implements ImageSource {
  constructor(readonly root: string) {}

  private abs(path: string): string {
    return path === '' ? this.root : join(this.root, ...path.split('/'));
  }

  async stat(path: string): Promise<'file' | 'dir' | 'missing'> {
    try {
      const s = await stat(this.abs(path));
      return s.isDirectory() ? 'dir' : 'file';
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return 'missing';
      throw e;
    }
  }

  async list(dir: string): Promise<DirEntry[]> {
    const out: DirEntry[] = [];
    for (const d of await readdir(this.abs(dir), { withFileTypes: true })) {
      if (d.isDirectory()) out.push({ name: d.name, kind: 'dir' });
      else if (d.isFile()) out.push({ name: d.name, kind: 'file' });
      else if (d.isSymbolicLink()) {
        // Follow the link; a dangling one is left out.
        const k = await this.stat(dir === '' ? d.name : `${dir}/${d.name}`);
        if (k !== 'missing') out.push({ name: d.name, kind: k });
      }
      // Sockets, FIFOs, devices: not images.
    }
    return out;
  }

  async read(path: string): Promise<Uint8Array> {
    return readFile(this.abs(path));
  }
}

/**
 * Decoding with sharp (libvips): JPEG, PNG, WebP (and whatever else libvips reads), meeting the
 * ImageDecoder contract: EXIF orientation applied, any colour space → sRGB, alpha dropped, 8 bits.
 */
export class SharpDecoder implements ImageDecoder {
  /**
   * NOTE: sharp queues each image on libuv's thread pool (UV_THREADPOOL_SIZE, 4 by default), so more
   * than that many decodes never run at once however high this is; set the variable before Node
   * starts to use more cores.
   */
  readonly concurrency = availableParallelism();

  async probe(bytes: Uint8Array): Promise<{ width: number; height: number }> {
    const m = await sharp(bytes, { failOn: 'error' }).metadata();
    if (!(m.width > 0 && m.height > 0)) throw new Error('image has no size');
    // metadata().width/height are as stored; autoOrient has them as displayed (swapped for 90° turns).
    return m.autoOrient ?? { width: m.width, height: m.height };
  }

  async decode(bytes: Uint8Array, opts?: DecodeOptions): Promise<RgbImage> {
    // failOn 'error': reject corrupt and truncated data, tolerate mere warnings (as viewers do).
    let s = sharp(bytes, { failOn: 'error', autoOrient: true });
    const m = opts?.maxShorterSide;
    if (m) {
      // fit 'outside' into an m×m box: the shorter side becomes m, aspect kept; never enlarged.
      s = s.resize({ width: m, height: m, fit: 'outside', withoutEnlargement: true });
    }
    const { data, info } = await s
      .removeAlpha() //            drop alpha, as PIL's convert('RGB')
      .toColourspace('srgb') //    grayscale → 3 equal channels, CMYK → RGB
      .raw({ depth: 'uchar' }) //  8 bits per channel, HWC
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels, expected 3`);
    return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  }
}

/** Opens an image folder on disk, decoding with sharp. */
export function openImageFolder(root: string, opts: Partial<ImageFolderOptions> = {}): Promise<ImageFolder> {
  return ImageFolder.open(new NodeFileSource(root), { decoder: new SharpDecoder(), ...opts });
}

/**
 * Writes a file atomically: to a temporary file in the same folder, flushed to disk, then renamed
 * over the target. A reader sees the old file or the new one, never half of one, even if the process
 * dies mid-write. NOTE: rename is atomic only within one file system, hence the same folder.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

export function saveSplitManifest(file: string, manifest: SplitManifest): Promise<void> {
  return writeFileAtomic(file, serializeManifest(manifest));
}

/** Reads a manifest saved by saveSplitManifest; resolveSplit then checks it against the dataset. */
export async function loadSplitManifest(file: string): Promise<SplitManifest> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new DataError(`split manifest "${file}" does not exist: check the path, or leave it out to make a new split`);
    }
    throw e;
  }
  return parseManifest(text, file);
}

// ---- autotuning cache ------------------------------------------------------------------------------

/** Default place of the autotuning table: $WGTRAIN_CACHE_DIR, else $XDG_CACHE_HOME/wgtrain, else ~/.cache/wgtrain. */
export function defaultTuneFile(): string {
  const dir = process.env.WGTRAIN_CACHE_DIR || join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'wgtrain');
  return join(dir, 'autotune.json');
}

/**
 * The autotuner's table in one JSON file, one section per adapter:
 *   { "schema": 1, "adapters": { "<adapter name>": { "<family>|<class>": TuneEntry, ... } } }
 * A save re-reads the file and replaces only this adapter's section (another process may have
 * tuned another adapter), then writes atomically. An unreadable or foreign file is never fatal:
 * tuning starts from nothing and the next save replaces it.
 */
export function fileTuneStore(file = defaultTuneFile()): TuneStore {
  const readAll = async (): Promise<Record<string, TuneTable['entries']>> => {
    try {
      const j = JSON.parse(await readFile(file, 'utf8')) as { schema?: number; adapters?: Record<string, TuneTable['entries']> };
      return j && j.schema === 1 && j.adapters && typeof j.adapters === 'object' ? j.adapters : {};
    } catch {
      return {};
    }
  };
  return {
    where: file,
    async load(adapter) {
      const entries = (await readAll())[adapter];
      return entries && typeof entries === 'object' ? { schema: 1, adapter, entries } : null;
    },
    async save(table) {
      const adapters = await readAll();
      adapters[table.adapter] = table.entries;
      await mkdir(dirname(file), { recursive: true });
      await writeFileAtomic(file, JSON.stringify({ schema: 1, adapters }, null, 1) + '\n');
    },
  };
}
