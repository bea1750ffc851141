// End-to-end: images per second of a whole training step — forward, cross-entropy, backward, AdamW —
// exactly as `Learner.fit` runs it (the step captured once per shape and freeze state, then
// replayed; the loss and correct count read back every step), with the base frozen (only the head
// trains) and unfrozen (everything trains), and the peak GPU memory the pool held meanwhile.
//
// Models: torchvision's ResNet34 and VGG16 (random weights: speed does not depend on them), and a
// small VGG-style CNN, the one the peer comparison trains in TensorFlow.js too:
//   conv3×3 3→32, ReLU, conv3×3 32→32, ReLU, max-pool 2 → conv3×3 32→64, ReLU, conv3×3 64→64, ReLU,
//   max-pool 2 → flatten → dense (64·(s/4)²) → 10.                            (pad 1 everywhere)

import type { Gpu } from '../gpu/device.js';
import type { Variable } from '../autograd/variable.js';
import { Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import { freeze, unfreeze, type Grouped } from '../nn/groups.js';
import { resnet34 } from '../nn/models/resnet34.js';
import { vgg16 } from '../nn/models/vgg16.js';
import type { TraceRecorder } from '../train/trace.js';
import { Learner, type Batch } from '../train/learner.js';
import { Rng } from '../util/rng.js';
import type { E2eResult } from './types.js';

export type E2eModel = 'resnet34' | 'vgg16' | 'smallcnn';

export interface E2eCase { model: E2eModel; size: number; batch: number; frozen: boolean; classes: number }

export const e2eId = (c: E2eCase) => `e2e/${c.model}@${c.size}/b${c.batch}/${c.frozen ? 'frozen' : 'unfrozen'}`;

/** The small VGG-style CNN of the peer comparison. Layer groups: features | classifier. */
export class SmallCnn extends Module implements Grouped {
  readonly features: Sequential;
  readonly classifier: Sequential;

  constructor(gpu: Gpu, size: number, classes = 10, rng = new Rng(0)) {
    super();
    const o = { padding: 1, rng };
    this.features = this.child('features', new Sequential(
      new Conv2d(gpu, 3, 32, 3, o), new ReLU(), new Conv2d(gpu, 32, 32, 3, o), new ReLU(), new MaxPool2d(2, 2),
      new Conv2d(gpu, 32, 64, 3, o), new ReLU(), new Conv2d(gpu, 64, 64, 3, o), new ReLU(), new MaxPool2d(2, 2),
    ));
    const s = Math.floor(Math.floor(size / 2) / 2);
    this.classifier = this.child('classifier', new Sequential(new Flatten(), new Linear(gpu, 64 * s * s, classes, { rng })));
  }

  forward(x: Variable): Variable { return this.classifier.call(this.features.call(x)); }

  layerGroups(): Module[][] { return [[this.features], [this.classifier]]; }
}

function build(gpu: Gpu, c: E2eCase): Module & Grouped {
  switch (c.model) {
    case 'resnet34': return resnet34(gpu, { numClasses: c.classes });
    case 'vgg16': return vgg16(gpu, { numClasses: c.classes });
    case 'smallcnn': return new SmallCnn(gpu, c.size, c.classes);
    default: return c.model satisfies never;
  }
}

export interface E2eOptions {
  /** Timed steps (after `warmup` untimed ones: the first captures the step and compiles pipelines). */
  steps: number;
  warmup: number;
  /** `bench --trace`: records the dispatches of the first steps of each configuration. */
  trace?: TraceRecorder;
}

/**
 * Measures one configuration. A model is built per call and disposed after it; pass `model` to
 * reuse one across the frozen and unfrozen measurements (building VGG16 takes seconds).
 */
export async function measureE2e(gpu: Gpu, c: E2eCase, o: E2eOptions, model?: Module & Grouped): Promise<E2eResult> {
  const base: E2eResult = {
    id: e2eId(c), model: c.model, size: c.size, batch: c.batch, frozen: c.frozen,
    msPerStep: null, imgPerSec: null, peakMiB: null, dispatches: null, steps: o.steps,
  };
  const net = model ?? build(gpu, c);
  if (c.frozen) freeze(net); else unfreeze(net);
  const learner = new Learner(gpu, net, { numClasses: c.classes, replay: true });
  if (o.trace) learner.opts.observer = o.trace.attach(learner);
  try {
    const rng = new Rng(3);
    const batch: Batch = {
      x: rng.array(c.batch * 3 * c.size * c.size, -2, 2),
      shape: [c.batch, 3, c.size, c.size],
      labels: Uint32Array.from({ length: c.batch }, (_, i) => i % c.classes),
    };
    // NOTE: the pool's peak is a process-wide high-water mark; restart it at what is held now (the
    // weights, and whatever earlier cases still hold), so it reports this configuration's peak.
    gpu.pool.stats.peak = gpu.pool.stats.inUse;
    const step = async () => {
      o.trace?.beginStep({ stage: e2eId(c) });
      const r = learner.trainStep(batch);
      // As Learner.fit does: read the loss and the correct count every step.
      const [loss] = await Promise.all([r.loss.read(), r.correct.read()]);
      if (!learner.isCapturedOutput(r.loss)) { r.loss.dispose(); r.correct.dispose(); }
      if (!Number.isFinite(loss[0]!)) throw new Error(`loss is ${loss[0]}`);
    };
    // As Learner.fit does: the first step queues the shape classes new to the autotuner; measure them
    // before the timed steps (the pool peak is restarted after: tuning buffers are not the model's).
    await step();
    await learner.settleTuning();
    gpu.pool.stats.peak = gpu.pool.stats.inUse;
    for (let i = 1; i < o.warmup; i++) await step();
    const d0 = gpu.dispatchCount;
    const t0 = performance.now();
    for (let i = 0; i < o.steps; i++) await step();
    const ms = (performance.now() - t0) / o.steps;
    return {
      ...base, msPerStep: ms, imgPerSec: (1000 * c.batch) / ms,
      peakMiB: gpu.pool.stats.peak / 2 ** 20, dispatches: Math.round((gpu.dispatchCount - d0) / o.steps),
    };
  } catch (e) {
    return { ...base, error: (e as Error).message };
  } finally {
    learner.dispose();
    if (!model) net.dispose();
  }
}

/** Runs configurations in order, building each model once for consecutive cases of the same model and size. */
export async function measureE2eAll(gpu: Gpu, cases: E2eCase[], o: E2eOptions, onResult?: (r: E2eResult) => void): Promise<E2eResult[]> {
  const out: E2eResult[] = [];
  let held: { key: string; net: Module & Grouped } | null = null;
  const release = () => { held?.net.dispose(); held = null; };
  for (const c of cases) {
    const key = `${c.model}@${c.size}/${c.classes}`;
    if (held === null || held.key !== key) {
      release();
      try { held = { key, net: build(gpu, c) }; } catch (e) {
        const r: E2eResult = { id: e2eId(c), model: c.model, size: c.size, batch: c.batch, frozen: c.frozen, msPerStep: null, imgPerSec: null, peakMiB: null, dispatches: null, steps: o.steps, error: (e as Error).message };
        out.push(r); onResult?.(r);
        continue;
      }
    }
    const r = await measureE2e(gpu, c, o, held.net);
    out.push(r); onResult?.(r);
  }
  release();
  return out;
}
