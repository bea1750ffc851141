// Types of source.mjs (a plain ES module, so that it runs with `node` and no build step).
import type { Task } from './dataset.mjs';

export interface SourceTask {
  /** ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat'], by task label. */
  classes: string[];
  /** All 30,000 training images of classes 0-4, in file order. */
  train: Task;
  /** All 5,000 test images of classes 0-4, in file order. */
  test: Task;
}

export declare function loadSourceTask(opts?: { idxDir?: string }): SourceTask;
/** x / 255 as Float32, same layout. */
export declare function toFloat01(pixels: Uint8Array): Float32Array;
