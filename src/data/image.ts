// The two interfaces that keep the data pipeline portable between Node and the browser:
//
//   ImageSource   lists folders and reads file bytes    Node: NodeFileSource (fs)   browser: MemorySource
//                                                        over File objects from <input webkitdirectory>
//   ImageDecoder  bytes → 8-bit RGB pixels               Node: SharpDecoder (sharp)  browser: one built on
//                                                        createImageBitmap + OffscreenCanvas.getImageData
//
// Everything else (class discovery, transforms, split, loader) is plain TypeScript over these, so
// it runs unchanged in both places. Only src/data/node.ts imports fs or sharp.

/** An 8-bit RGB image, row-major HWC: the value of channel c at (x, y) is data[(y·width + x)·3 + c]. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** Bytes an RgbImage occupies (what the decoded-image cache counts). */
export function imageBytes(img: RgbImage): number {
  return img.data.byteLength;
}

export interface DecodeOptions {
  /**
   * If the decoded image's shorter side exceeds this, the decoder may shrink it (aspect kept) so the
   * shorter side is exactly this. A speed and memory trade for big photos: the transforms then
   * resample from fewer pixels. 0 or undefined: full resolution.
   */
  maxShorterSide?: number;
}

export interface ImageDecoder {
  /**
   * Reads only the header: the size as displayed (after EXIF orientation). Throws if the bytes are not
   * an image the decoder supports. Used to find unreadable files when a dataset is opened.
   */
  probe(bytes: Uint8Array): Promise<{ width: number; height: number }>;
  /**
   * Decodes to RGB. Contract, whatever the file holds:
   *   - EXIF orientation applied (the image as a viewer shows it);
   *   - grayscale → R = G = B; CMYK and other colour spaces → sRGB;
   *   - alpha DROPPED, not composited: a pixel keeps the colour stored under it, as PIL's
   *     `convert('RGB')` (what torchvision's ImageFolder loader does). Fully transparent areas are
   *     usually stored as black, so in practice they come out black.
   *   - 16-bit images → 8 bits.
   * Throws on corrupt or truncated data.
   */
  decode(bytes: Uint8Array, opts?: DecodeOptions): Promise<RgbImage>;
  /** How many decodes can usefully run at once (the loader's default concurrency). */
  readonly concurrency?: number;
}

/** An entry of a listed folder. */
export interface DirEntry {
  name: string;
  kind: 'file' | 'dir';
}

/**
 * A tree of files under a root. Paths are relative to the root, '/'-separated, with '' for the root
 * itself, so they are the same on every platform and can be stored in a split manifest.
 */
export interface ImageSource {
  /** How messages name the root: a folder path, or a description such as "the selected folder". */
  readonly root: string;
  stat(path: string): Promise<'file' | 'dir' | 'missing'>;
  /** The entries of a folder, in any order (callers sort). */
  list(dir: string): Promise<DirEntry[]>;
  read(path: string): Promise<Uint8Array>;
}

/** Joins '/'-separated relative paths, treating '' as the root. */
export function joinPath(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}

/**
 * An ImageSource over files held in memory: a Map from relative path to bytes or a Blob. Folders are
 * implied by the paths. In a browser, a folder picked with <input type=file webkitdirectory> gives
 * File objects (Blobs) whose `webkitRelativePath` is "picked/cat/1.jpg": strip the first segment and
 * pass them here. Tests use it to run the pipeline with a fake decoder.
 */
export class MemorySource implements ImageSource {
  private readonly files = new Map<string, Uint8Array | Blob>();
  private readonly dirs = new Map<string, Map<string, DirEntry['kind']>>();

  constructor(files: Iterable<readonly [string, Uint8Array | Blob]>, readonly root = 'the selected files') {
    this.dirs.set('', new Map());
    for (const [path, data] of files) {
      const parts = path.split('/').filter((p) => p !== '');
      if (parts.length === 0) throw new Error(`MemorySource: empty path`);
      this.files.set(parts.join('/'), data);
      // Register every ancestor folder in its parent.
      let dir = '';
      parts.forEach((name, i) => {
        const isFile = i === parts.length - 1;
        this.dirs.get(dir)!.set(name, isFile ? 'file' : 'dir');
        if (!isFile) {
          dir = joinPath(dir, name);
          if (!this.dirs.has(dir)) this.dirs.set(dir, new Map());
        }
      });
    }
  }

  async stat(path: string): Promise<'file' | 'dir' | 'missing'> {
    return this.files.has(path) ? 'file' : this.dirs.has(path) ? 'dir' : 'missing';
  }

  async list(dir: string): Promise<DirEntry[]> {
    const d = this.dirs.get(dir);
    if (!d) throw new Error(`no such folder: ${dir}`);
    return [...d].map(([name, kind]) => ({ name, kind }));
  }

  async read(path: string): Promise<Uint8Array> {
    const f = this.files.get(path);
    if (f === undefined) throw new Error(`no such file: ${path}`);
    return f instanceof Uint8Array ? f : new Uint8Array(await f.arrayBuffer());
  }
}
