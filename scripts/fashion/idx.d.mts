// Types of idx.mjs (a plain ES module, so that it runs with `node` and no build step).

export declare const IMAGES_MAGIC: 0x00000803;
export declare const LABELS_MAGIC: 0x00000801;

export interface IdxArray {
  /** The dimensions, outermost first. */
  dims: number[];
  /** The elements, row-major: a view into the file's bytes. */
  data: Uint8Array;
}

export interface IdxImages {
  count: number;
  height: number;
  width: number;
  /** count·height·width bytes, NHW row-major. */
  pixels: Uint8Array;
}

export declare function parseIdx(bytes: Uint8Array, name?: string): IdxArray;
export declare function readIdx(file: string): IdxArray;
export declare function readIdxImages(file: string): IdxImages;
export declare function readIdxLabels(file: string): Uint8Array;
