// Capture and replay of a whole training step.
//
// An eager step records the autograd tape, allocates activations from the pool, builds a bind group
// per dispatch and encodes everything anew. For fixed input shapes all of that is the same every
// step, so: run the step once under gpu.beginCapture() — it executes normally and every dispatch,
// clear and copy is recorded with its bind group — then replay the recording: one command buffer,
// no JS autograd, no allocation, no bind-group creation. What changes between steps is rewritten in
// place by hooks registered during capture (the optimizer's step count and LR, dropout seeds).
//
// NOTE: buffers bound by the recording are pinned in the pool (a buffer freed during capture is
// parked, not reused), so the planned memory of a step is exactly the buffers it touched.
// NOTE: the step function must be shape-static and read nothing back: CPU-side logic in it runs
// only once. Write new inputs into the tensors the step reads (`Tensor.write`) before each replay.

import type { Gpu, Recording } from '../gpu/device.js';
import type { Tensor } from '../gpu/tensor.js';

export class CapturedStep<T extends Record<string, Tensor>> {
  private constructor(readonly gpu: Gpu, private rec: Recording | null, readonly outputs: T) {}

  /**
   * Runs `step` once, recording it. The tensors it returns (a loss, a correct-count) stay valid and
   * are rewritten by every replay; don't dispose them while the capture is in use.
   */
  static capture<T extends Record<string, Tensor>>(gpu: Gpu, step: () => T): CapturedStep<T> {
    gpu.beginCapture();
    let outputs: T;
    try {
      outputs = step();
    } catch (e) {
      gpu.disposeRecording(gpu.endCapture());
      throw e;
    }
    return new CapturedStep(gpu, gpu.endCapture(), outputs);
  }

  /** Number of dispatches one replay launches. */
  get dispatches(): number { return this.rec?.dispatches ?? 0; }

  /** Encodes the step again (hooks first, then every recorded op); returns the same output tensors. */
  replay(): T {
    if (!this.rec) throw new Error('CapturedStep: already disposed');
    this.gpu.replay(this.rec);
    return this.outputs;
  }

  /** Releases the recording's pins and uniform buffers (and the outputs). */
  dispose() {
    if (!this.rec) return;
    this.gpu.flush();
    this.gpu.disposeRecording(this.rec);
    this.rec = null;
    for (const t of Object.values(this.outputs)) t.dispose();
  }
}
