// Memory planning: the largest batch that fits, per stage, measured instead of guessed.
//
// A trial forward + backward at batch 1 and batch 2 gives the pool's peak bytes for each; their
// difference is the per-image cost (activations, saved tensors, gradients of activations), the rest
// is fixed (gradients of trainable parameters, workspace). Adam's state (2 × trainable parameter
// bytes) is added on top. batch = ⌊(budget − fixed − state) / perImage⌋, clamped, rounded down to a
// multiple of 8 from 8 up. A frozen base needs no gradients below the head and saves no
// activations for them, so the frozen stage gets a (much) larger batch.
//
// NOTE: WebGPU does not report how much memory a device has, so the budget is a setting
// (`--memory-budget`, default 2 GiB); the adapter's maxBufferSize also caps the largest tensor.
// The trial changes nothing: BatchNorm running statistics are restored and no optimizer step runs.

import { Tensor } from '../gpu/tensor.js';
import * as ops from '../autograd/ops.js';
import { backward } from '../autograd/variable.js';
import { labelsTensor } from '../kernels/softmax.js';
import type { Learner } from './learner.js';

export interface BatchPlan { batch: number; perImageBytes: number; fixedBytes: number; optimizerBytes: number; budgetBytes: number }

export async function planBatch(learner: Learner, sample: readonly [number, number, number], o: { budgetBytes: number; min?: number; max?: number }): Promise<BatchPlan> {
  const { gpu, model } = learner;
  const K = learner.opts.numClasses;
  const buffers = await Promise.all(model.namedBuffers().map(async ([, t]) => [t, await t.read()] as const));
  const trial = async (n: number) => {
    await gpu.sync();
    gpu.pool.resetPeak();
    const base = gpu.pool.stats.inUse;
    const x = Tensor.zeros(gpu, [n, ...sample]);
    const y = labelsTensor(gpu, new Uint32Array(n), K);
    model.train();
    const { loss, correct } = ops.crossEntropy(model.call(ops.constant(x)), y);
    if (loss.requiresGrad) backward(loss); else loss.dispose();
    await gpu.sync();
    const peak = gpu.pool.stats.peak - base;
    for (const p of model.parameters()) p.zeroGrad();
    loss.dispose(); correct.dispose(); x.dispose(); y.dispose();
    return peak;
  };
  const m1 = await trial(1), m2 = await trial(2);
  for (const [t, d] of buffers) t.write(d);
  const perImage = Math.max(1, m2 - m1), fixed = Math.max(0, m1 - perImage);
  // Optimizer state is keyed by the model's parameter names (which may differ from Parameter.name).
  const optimizerBytes = model.namedParameters().filter(([n, p]) => p.trainable && !learner.optimizer.state.get(n)?.m).reduce((s, [, p]) => s + 2 * 4 * p.size, 0);
  const largest = Math.max(...[sample].map((s) => s.reduce((a, b) => a * b, 1) * 4));
  const maxByBuffer = Math.floor(Number(gpu.limits.maxBufferSize) / Math.max(1, largest * 64));   // activations ≲ 64× the input
  let b = Math.floor((o.budgetBytes - fixed - optimizerBytes) / perImage);
  b = Math.min(b, o.max ?? 256, Math.max(1, maxByBuffer));
  if (b >= 8) b -= b % 8;
  b = Math.max(o.min ?? 1, b);
  return { batch: b, perImageBytes: perImage, fixedBytes: fixed, optimizerBytes, budgetBytes: o.budgetBytes };
}
