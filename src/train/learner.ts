// The Learner: epochs, stages, schedules and metrics around the training step.
//
//   fit(epochs, lr, schedule)      one run of a schedule over `epochs` epochs (fastai fit_one_cycle)
//   fineTune(epochs, …)            fastai's recipe: freeze → train the head freezeEpochs with
//                                  slice(baseLr), pctStart 0.99 → baseLr/2 → unfreeze → train `epochs`
//                                  with slice(baseLr/lrMult, baseLr)
//   evaluate(source)               loss, accuracy, confusion matrix (no gradient)
//   predict(x)                     class probabilities
//
// One training step = upload the batch → forward (records the tape) → mean cross-entropy →
// backward → optimizer step (per-group LR from the schedule) → drop gradients. With `replay` on, the
// first step of each (batch shape, freeze state) is captured and later steps replay it (capture.ts).
// The schedule position is the fraction of the run done, so a resume with another batch size
// continues the same curve.

import type { Gpu } from '../gpu/device.js';
import { Tensor } from '../gpu/tensor.js';
import * as ops from '../autograd/ops.js';
import { backward, noGrad, releaseTape } from '../autograd/variable.js';
import { CapturedStep } from '../autograd/capture.js';
import { labelsTensor, readU32, softmax, softmaxCrossEntropy } from '../kernels/softmax.js';
import type { Module } from '../nn/module.js';
import { Dropout } from '../nn/layers.js';
import { freeze, freezeTo, groupParameters, unfreeze, type Grouped } from '../nn/groups.js';
import { Optimizer, type OptimizerKind } from '../optim/optimizer.js';
import { slice, spreadLr, type LrSpec } from '../optim/lr.js';
import { constant, cosine, oneCycle, type Schedule } from '../optim/schedule.js';
import type { StepObserver, StepPhase } from './trace.js';

/** A labelled batch, NCHW float32 (already normalised). */
export interface Batch { x: Float32Array; shape: readonly [number, number, number, number]; labels: Uint32Array }

/** Where batches come from: an epoch's batches, in order. The data pipeline implements this. */
export interface BatchSource {
  /** Batches of `epoch` (the epoch seeds shuffling and augmentation). */
  batches(epoch: number): AsyncIterable<Batch>;
  /** Batches per epoch. */
  readonly length: number;
}

export type ScheduleKind = 'one-cycle' | 'cosine' | 'constant';

export interface FitOptions {
  lr: LrSpec;
  schedule?: ScheduleKind;
  /** one-cycle: warm-up fraction (fastai 0.25), start LR = max/div (25), end = max/divFinal (1e5). */
  pctStart?: number; div?: number; divFinal?: number;
  /** Stage name recorded in the history ('head', 'unfrozen', …). */
  stage?: string;
  /** Resume: epochs of this run already done (the schedule continues from there). */
  startEpoch?: number;
}

export interface EpochRecord {
  stage: string;
  epoch: number;
  /** Epochs of this stage. */
  epochs: number;
  trainLoss: number;
  trainAcc: number;
  valLoss?: number;
  valAcc?: number;
  /** Per-group LR at the end of the epoch. */
  lrs: number[];
  trainableParams: number;
  /** Input height×width of this epoch's training batches (progressive resizing changes it). */
  inputSize: number;
  ms: number;
  /** Images per second over the training part of the epoch. */
  imgPerSec: number;
}

export interface Progress { stage: string; epoch: number; epochs: number; step: number; steps: number; loss: number; /** Images trained on so far this epoch. */ images: number }

export interface LearnerOptions {
  /** Optimizer (fastai's default: Adam with decoupled weight decay 0.01, β = (0.9, 0.99), ε = 1e-5). */
  optimizer?: OptimizerKind;
  weightDecay?: number;
  labelSmoothing?: number;
  /** Capture the training step once per (shape, freeze state) and replay it (default true). */
  replay?: boolean;
  numClasses: number;
  onProgress?: (p: Progress) => void;
  /** Called after every epoch (checkpointing, curves). Awaited. */
  onEpochEnd?: (r: EpochRecord, learner: Learner) => void | Promise<void>;
  /** Sees every training step and its phases (a trace: train/trace.ts). */
  observer?: StepObserver;
  /** Called before each kernel shape class is autotuned (first use of a shape on this adapter). */
  onTune?: (key: string, index: number, total: number) => void;
}

export interface EvalResult { loss: number; accuracy: number; n: number; confusion: number[][]; predictions: Uint32Array; labels: Uint32Array }

export class Learner {
  readonly optimizer: Optimizer;
  readonly history: EpochRecord[] = [];
  private captured = new Map<string, CapturedStep<{ loss: Tensor; correct: Tensor }>>();
  private inputs = new Map<string, { x: Tensor; y: Tensor }>();
  /** Set to stop training at the end of the current step (pause; checkpoints stay consistent). */
  stopRequested = false;
  /** Set when a stop request cut an epoch short. */
  interrupted = false;

  constructor(readonly gpu: Gpu, readonly model: Module & Grouped, readonly opts: LearnerOptions) {
    const kind = opts.optimizer ?? 'adamw';
    const groups = groupParameters(model).map((params, i) => ({ name: `group${i}`, params, lr: 1e-3 }));
    this.optimizer = new Optimizer(kind, groups, {
      weightDecay: opts.weightDecay ?? (kind === 'sgd' ? 0 : 0.01), betas: [0.9, 0.99], eps: 1e-5, momentum: 0.9,
    });
  }

  get numGroups(): number { return this.optimizer.groups.length; }

  /** Trainable parameter count now. */
  trainableParams(): number { return this.model.parameters().filter((p) => p.trainable).reduce((s, p) => s + p.size, 0); }

  /** fastai `fit_one_cycle` / cosine / constant over `epochs` epochs. */
  async fit(epochs: number, train: BatchSource, val: BatchSource | null, o: FitOptions): Promise<EpochRecord[]> {
    if (!Number.isInteger(epochs) || epochs < 1) throw new Error(`fit: epochs must be a positive integer, got ${epochs}`);
    const lrs = spreadLr(o.lr, this.numGroups);
    const peak = Math.max(...lrs);
    this.optimizer.setLr(lrs);
    const schedule = makeSchedule(o.schedule ?? 'one-cycle', peak, o);
    const stage = o.stage ?? 'fit';
    const out: EpochRecord[] = [];
    for (let e = o.startEpoch ?? 0; e < epochs; e++) {
      if (this.stopRequested) { this.interrupted = true; break; }
      const t0 = performance.now();
      const tr = await this.trainEpoch(train, e, epochs, schedule, peak, stage);
      // NOTE: a stop mid-epoch leaves that epoch unrecorded (no history entry, no checkpoint): a
      // resume restarts it from the last checkpoint, so the resumed run equals an uninterrupted one.
      if (this.stopRequested) { this.interrupted = true; break; }
      const trainMs = performance.now() - t0;
      const v = val && val.length > 0 ? await this.evaluate(val, e) : null;
      const rec: EpochRecord = {
        stage, epoch: e + 1, epochs, trainLoss: tr.loss, trainAcc: tr.acc,
        ...(v ? { valLoss: v.loss, valAcc: v.accuracy } : {}),
        lrs: this.optimizer.groups.map((g) => g.lr), trainableParams: this.trainableParams(), inputSize: tr.size,
        ms: performance.now() - t0, imgPerSec: tr.n / (trainMs / 1000),
      };
      this.history.push(rec);
      out.push(rec);
      await this.opts.onEpochEnd?.(rec, this);
    }
    return out;
  }

  /**
   * fastai's `fine_tune`: the head alone first (base frozen, BatchNorm of the base on its running
   * statistics), then everything (or the top `unfreezeGroups` groups) with discriminative LRs.
   */
  async fineTune(epochs: number, train: BatchSource, val: BatchSource | null, o: FineTuneOptions = {}): Promise<EpochRecord[]> {
    const { baseLr = 2e-3, freezeEpochs = 1, lrMult = 100, pctStart = 0.3, div = 5, unfreezeGroups = 'all' } = o;
    const done = o.resume ?? { stage: 'head', epoch: 0 };
    const out: EpochRecord[] = [];
    if (freezeEpochs > 0 && done.stage === 'head') {
      freeze(this.model);
      out.push(...await this.fit(freezeEpochs, o.headTrain ?? train, val, { lr: slice(baseLr), pctStart: 0.99, stage: 'head', startEpoch: done.epoch }));
    }
    if (this.stopRequested) { this.interrupted = true; return out; }
    if (epochs < 1) return out;
    if (unfreezeGroups === 'all') unfreeze(this.model); else freezeTo(this.model, -unfreezeGroups);
    const lr = baseLr / 2;
    out.push(...await this.fit(epochs, train, val, {
      lr: slice(lr / lrMult, lr), pctStart, div, stage: 'unfrozen', startEpoch: done.stage === 'unfrozen' ? done.epoch : 0,
    }));
    return out;
  }

  private async trainEpoch(src: BatchSource, epoch: number, epochs: number, schedule: Schedule, peak: number, stage: string) {
    this.model.train();
    // Dropout masks depend only on (stage, epoch, layer): a resumed run draws the same ones.
    let k = 0;
    for (const [, m] of this.model.namedModules()) if (m instanceof Dropout) m.reseed(hashSeed(`${stage}/${epoch}/${k++}`));
    let lossSum = 0, correct = 0, n = 0, step = 0, size = 0;
    const steps = src.length;
    let waitFrom = performance.now();
    for await (const b of src.batches(epoch)) {
      this.opts.observer?.beginStep({ stage, epoch: epoch + 1, step: step + 1, waitMs: performance.now() - waitFrom });
      this.optimizer.applySchedule(schedule, (epoch + step / Math.max(1, steps)) / epochs, peak);
      const r = this.trainStep(b);
      const [l, c] = await Promise.all([r.loss.read(), r.correct.read()]);
      if (!this.isCapturedOutput(r.loss)) { r.loss.dispose(); r.correct.dispose(); }
      if (!Number.isFinite(l[0]!)) throw new Error(`training diverged: loss is ${l[0]} at ${stage} epoch ${epoch + 1} step ${step + 1}; lower the learning rate`);
      await this.settleTuning();
      lossSum += l[0]! * b.labels.length; correct += c[0]!; n += b.labels.length; step++; size = b.shape[2];
      this.opts.onProgress?.({ stage, epoch: epoch + 1, epochs, step, steps, loss: l[0]!, images: n });
      if (this.stopRequested) break;
      waitFrom = performance.now();
    }
    return { loss: lossSum / Math.max(1, n), acc: correct / Math.max(1, n), n, size };
  }

  /** Whether `t` is an output of a captured step (owned by the capture: don't dispose it). */
  isCapturedOutput(t: Tensor): boolean {
    for (const c of this.captured.values()) if (c.outputs.loss === t || c.outputs.correct === t) return true;
    return false;
  }

  /** Input tensors for one batch shape, written in place so a captured step reads them. */
  private batchTensors(b: Batch) {
    const key = b.shape.join('x');
    let t = this.inputs.get(key);
    if (!t) {
      t = { x: Tensor.empty(this.gpu, [...b.shape]), y: labelsTensor(this.gpu, new Uint32Array(b.shape[0]), this.opts.numClasses) };
      this.inputs.set(key, t);
    }
    t.x.write(b.x);
    labelsCheck(b.labels, this.opts.numClasses);
    this.gpu.upload(t.y.buffer, b.labels);
    return { ...t, key };
  }

  /** One optimisation step on a batch; returns loss and correct-count tensors (on the GPU). */
  trainStep(b: Batch): { loss: Tensor; correct: Tensor } {
    const obs = this.opts.observer;
    const phase = <T>(p: StepPhase, fn: () => T): T => (obs ? obs.phase(p, fn) : fn());
    const { x, y, key } = phase('data', () => this.batchTensors(b));
    const run = () => {
      const { loss, correct } = phase('forward', () => ops.crossEntropy(this.model.call(ops.constant(x)), y, this.opts.labelSmoothing ?? 0));
      phase('backward', () => backward(loss));
      phase('optimizer', () => { this.optimizer.step(); this.optimizer.zeroGrad(); });
      return { loss: loss.data, correct };
    };
    // NOTE: a replay (below) runs outside the phases: the observer matches its dispatches to the captured step.
    if (this.opts.replay === false) return run();
    // NOTE: a capture binds the parameters' and optimizer state's buffers and bakes in which layers
    // are trainable and whether the model is in training mode: any change needs a new capture.
    const capKey = `${key}|${this.optimizer.stateVersion}|${this.model.training}|${this.model.parameters().map((p) => (p.trainable ? 1 : 0)).join('')}`;
    const cap = this.captured.get(capKey);
    if (cap) return cap.replay();
    // A new shape or freeze state: the old captures are stale (their parameters' roles changed).
    this.dropCaptures();
    const c = CapturedStep.capture(this.gpu, run);
    this.captured.set(capKey, c);
    return c.outputs;
  }

  /**
   * Autotuning (gpu/tune.ts): the first step with new shapes ran every kernel's heuristic default and
   * queued the shape classes the adapter has no measurement for; measure them now, between steps.
   * Captured steps baked in the defaults, so they are dropped and the next step captures the winners.
   */
  async settleTuning() {
    if (!this.gpu.tuner.pending) return;
    await this.gpu.tuner.settle({ onProblem: this.opts.onTune });
    this.dropCaptures();
  }

  /** Forgets captured steps (after the model's or optimizer's buffers were replaced). */
  resetCaptures() { this.dropCaptures(); }

  private dropCaptures() {
    for (const c of this.captured.values()) c.dispose();
    this.captured.clear();
  }

  /** Loss, accuracy and confusion matrix (rows: true class, columns: predicted) over a source. */
  async evaluate(src: BatchSource, epoch = 0): Promise<EvalResult> {
    const K = this.opts.numClasses;
    const confusion = Array.from({ length: K }, () => new Array<number>(K).fill(0));
    const preds: number[] = [], labels: number[] = [];
    let lossSum = 0, n = 0;
    this.model.eval();
    for await (const b of src.batches(epoch)) {
      const { x, y } = this.batchTensors(b);
      const r = noGrad(() => {
        const logits = this.model.call(ops.constant(x));
        const out = softmaxCrossEntropy(logits.data, y, { accuracy: true, rowLosses: false });
        releaseTape();
        return out;
      });
      const [loss, pred] = await Promise.all([r.loss.read(), readU32(r.pred!)]);
      [r.loss, r.probs, r.pred!, r.correct!].forEach((t) => t.dispose());
      await this.settleTuning();
      lossSum += loss[0]! * b.labels.length; n += b.labels.length;
      b.labels.forEach((l, i) => { confusion[l]![pred[i]!]!++; preds.push(pred[i]!); labels.push(l); });
    }
    this.model.train();
    const correct = confusion.reduce((s, row, i) => s + row[i]!, 0);
    return { loss: lossSum / Math.max(1, n), accuracy: correct / Math.max(1, n), n, confusion, predictions: Uint32Array.from(preds), labels: Uint32Array.from(labels) };
  }

  /** Class probabilities [N, K] for a normalised NCHW batch. */
  async predict(x: Float32Array, shape: readonly [number, number, number, number]): Promise<Float32Array> {
    this.model.eval();
    const xt = Tensor.from(this.gpu, x, [...shape]);
    const probs = noGrad(() => {
      const logits = this.model.call(ops.constant(xt));
      const p = softmax(logits.data);
      releaseTape();
      return p;
    });
    const out = await probs.read();
    probs.dispose(); xt.dispose();
    this.model.train();
    return out;
  }

  /** Releases captures, input buffers and optimizer state (not the model). */
  dispose() {
    this.dropCaptures();
    for (const t of this.inputs.values()) { t.x.dispose(); t.y.dispose(); }
    this.inputs.clear();
    this.optimizer.dispose();
  }
}

export interface FineTuneOptions {
  baseLr?: number;
  freezeEpochs?: number;
  lrMult?: number;
  pctStart?: number;
  div?: number;
  /** 'all' (fastai) or the number of top layer groups to unfreeze (the head counts as one). */
  unfreezeGroups?: 'all' | number;
  /** Resume point: the stage and epochs of it already done. */
  resume?: { stage: 'head' | 'unfrozen'; epoch: number };
  /** Batches for the frozen (head) stage when they differ (a frozen base fits a larger batch). */
  headTrain?: BatchSource;
}

function makeSchedule(kind: ScheduleKind, peak: number, o: FitOptions): Schedule {
  switch (kind) {
    case 'one-cycle': return oneCycle({ lrMax: peak, pctStart: o.pctStart, div: o.div, divFinal: o.divFinal });
    case 'cosine': return cosine(peak);
    case 'constant': return constant(peak);
    default: throw new Error(`unknown schedule '${kind as string}' (one-cycle, cosine, constant)`);
  }
}

/** 32-bit FNV-1a of a string: a stable seed from a label. */
function hashSeed(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 0x01000193) >>> 0; }
  return h;
}

function labelsCheck(labels: Uint32Array, k: number) {
  for (const l of labels) if (l >= k) throw new Error(`label ${l} is out of range for ${k} classes`);
}
