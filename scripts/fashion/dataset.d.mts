// Types of dataset.mjs (a plain ES module, so that it runs with `node` and no build step).

export declare const DEFAULT_IDX_DIR: string;
/** The official class names, indexed by label 0-9. */
export declare const CLASS_NAMES: readonly string[];
export declare const SOURCE_CLASSES: readonly number[];
export declare const TARGET_CLASSES: readonly number[];
export declare const DEMO_PER_CLASS: number;

export type SplitName = 'train' | 'test';

/** One split of Fashion-MNIST as read from its IDX files. */
export interface Split {
  count: number;
  height: number;
  width: number;
  /** count·height·width bytes, NHW row-major, 0..255. */
  pixels: Uint8Array;
  /** count labels, 0-9. */
  labels: Uint8Array;
}

/** Some classes of a split, relabelled 0..classes.length-1 (see gatherTask). */
export interface Task {
  count: number;
  height: number;
  width: number;
  /** count·height·width bytes, NHW row-major, 0..255 (0 = background). */
  pixels: Uint8Array;
  /** count task labels: position of the image's class in the `classes` asked for. */
  labels: Uint32Array;
  /** count indices of the images in the split file, ascending. */
  index: Uint32Array;
  /** The class names, by task label. */
  classes: string[];
}

/** "<label>_<snake_case name>", e.g. 9 → "9_ankle_boot". */
export declare function folderName(label: number): string;
export declare function resolveIdxDir(dir?: string): string;
export declare function idxFilesPresent(dir?: string): boolean;
export declare function loadSplit(split: SplitName, dir?: string): Split;
export declare function firstPerClass(labels: Uint8Array, classes: readonly number[], perClass?: number): number[][];
export declare function gatherTask(split: Split, classes: readonly number[], perClass?: number): Task;
