// `wgtrain finetune`: staged fine-tuning (fastai fine_tune) or feature extraction of an ONNX model on
// an image folder, with a checkpoint every epoch, learning curves, and the fine-tuned model.onnx.
//
//   out/checkpoint.safetensors   weights + optimizer state by name + progress (resume with --resume out)
//   out/model.onnx               the fine-tuned model, classes + preprocessing in metadata_props
//   out/history.json             one record per epoch (stage, losses, accuracies, LRs, timing)
//   out/loss.svg, accuracy.svg   learning curves, train vs validation
//   out/split.json               the stratified split (reused by --resume and `evaluate`)
//   out/report.json              final validation accuracy, per-class precision/recall, confusion matrix

import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';
import type { Gpu } from '../gpu/device.js';
import { Tensor } from '../gpu/tensor.js';
import * as ops from '../autograd/ops.js';
import { noGrad, releaseTape, type Variable } from '../autograd/variable.js';
import { Module, type Parameter } from '../nn/module.js';
import type { Grouped } from '../nn/groups.js';
import { Learner, type Batch, type BatchSource, type EpochRecord, type EvalResult } from '../train/learner.js';
import { checkpointMeta, decodeSafetensors, encodeSafetensors, loadCheckpoint, saveCheckpoint, type WgtrainMeta } from '../train/checkpoint.js';
import { confusionMatrixSvg, historyCsv, learningCurves } from '../train/plots.js';
import sharp from 'sharp';
import { planBatch } from '../train/memory.js';
import { TraceRecorder } from '../train/trace.js';
import { exportOnnx } from '../onnx/export.js';
import type { OnnxModule } from '../onnx/import.js';
import { writeFileAtomic } from '../data/node.js';
import type { Preprocessing } from '../data/preprocessing.js';
import type { TrainAugment } from '../data/transforms.js';
import {
  bar, demoDataPath, demoModelPath, fraction, loadOnnx, loaderSource, openData, openGpu, parseSizes, positiveInt,
  progressiveSource, resolveRecipe, StatusLine, tuneProgress, writeJson,
} from './session.js';
import { UserError } from './errors.js';

export interface FinetuneFlags {
  model?: string; data?: string; out?: string; epochs?: string; freezeEpochs?: string; lr?: string;
  batch?: string; size?: string; mode?: string; unfreeze?: string; valSplit?: string; seed?: string;
  resume?: string; json?: boolean; memoryBudget?: string; replay?: boolean; minScale?: string; augment?: boolean;
  trace?: string; traceSteps?: string; autotune?: string;
}

/** The plan of a run: everything needed to resume it exactly (stored in the checkpoint). */
export interface RunPlan {
  model: string; modelHash: string; data: string; out: string;
  mode: 'finetune' | 'features';
  epochs: number; freezeEpochs: number; baseLr: number; lrMult: number;
  batch: number | 'auto'; sizes: number[]; unfreeze: 'all' | number; valSplit: number; seed: number;
  classes: string[]; preprocessing: Preprocessing;
  /** Training augmentation (RandomResizedCrop scale range, flip probability). */
  augment: Partial<TrainAugment>;
}

/** Progress line: stage, epoch, bar, loss, images/s and the epoch's ETA. */
let epochStart = 0, lastKey = '';
function progressText(p: { stage: string; epoch: number; epochs: number; step: number; steps: number; loss: number; images?: number }): string {
  const key = `${p.stage}/${p.epoch}`;
  if (key !== lastKey || p.step === 1) { lastKey = key; epochStart = performance.now(); }
  const sec = (performance.now() - epochStart) / 1000;
  const rate = p.images && sec > 0 ? p.images / sec : 0;
  const eta = p.step > 0 ? (sec / p.step) * (p.steps - p.step) : 0;
  return `${p.stage} epoch ${p.epoch}/${p.epochs} ${bar(p.step, p.steps)} loss ${p.loss.toFixed(4)}${rate ? `  ${rate.toFixed(0)} img/s` : ''}  ETA ${eta.toFixed(0)} s`;
}

function plural(n: number, w: string) { return `${n} ${w}${n === 1 ? '' : 's'}`; }

export async function finetuneCommand(flags: FinetuneFlags) {
  const status = new StatusLine(false);
  const warn = (s: string) => status.log(`warning: ${s}`);
  const resumeDir = flags.resume ? resolve(flags.resume) : null;
  let resumeMeta: WgtrainMeta | null = null;
  let resumeBytes: Uint8Array | null = null;
  if (resumeDir) {
    const f = join(resumeDir, 'checkpoint.safetensors');
    if (!existsSync(f)) throw new UserError(`--resume ${flags.resume}: no checkpoint.safetensors there (pass the --out folder of an earlier run)`);
    resumeBytes = new Uint8Array(readFileSync(f));
    resumeMeta = checkpointMeta(resumeBytes);
    if (resumeMeta.progress.done) throw new UserError(`--resume ${flags.resume}: that run already finished (${resumeMeta.history.length} epochs); start a new one with --out`);
  }
  const prev = resumeMeta?.plan as RunPlan | undefined;
  const { isDemo, epochs, freezeEpochs, baseLr, lrMult, seed, unfreeze, batch: batchFlag } = resolveRecipe(flags, prev);
  const modelPath = flags.model ?? prev?.model ?? demoModelPath();
  const dataDir = resolve(flags.data ?? prev?.data ?? demoDataPath());
  const out = resolve(flags.out ?? prev?.out ?? 'wgtrain-out');
  mkdirSync(out, { recursive: true });
  const mode = (flags.mode ?? prev?.mode ?? 'finetune') as RunPlan['mode'];
  if (mode !== 'finetune' && mode !== 'features') throw new UserError(`--mode must be finetune or features, got '${flags.mode}'`);
  const valSplit = fraction('--val-split', flags.valSplit, prev?.valSplit ?? 0.2);
  const budget = positiveInt('--memory-budget', flags.memoryBudget, 2048) * 2 ** 20;

  const gpu = await openGpu(flags);
  const t0 = performance.now();
  const loaded = await loadOnnx(gpu, modelPath, warn);
  if (prev && loaded.hash !== prev.modelHash) throw new UserError(`--resume: '${modelPath}' is not the model the run started from (its contents changed); restore it or start a new run`);
  const model = loaded.model;
  const sizes = parseSizes(flags.size, prev?.sizes?.[0] ?? loaded.preprocessing.size);
  if (prev && flags.size === undefined) sizes.splice(0, sizes.length, ...prev.sizes);
  const prep = loaded.preprocessing;
  const data = await openData(dataDir, out, { valSplit, seed, manifest: resumeDir ? join(resumeDir, 'split.json') : null }, warn);
  const classes = [...data.dataset.classes];
  status.log(`${isDemo ? 'demo: ' : ''}model ${modelPath} (${model.family}, ${plural(model.numParameters(), 'parameter')}${model.hasBatchNorm ? '' : ', BatchNorm folded away'})`);
  status.log(`data ${dataDir}: ${classes.length} classes, ${data.split.train.length} train / ${data.split.val.length} validation images (split seed ${seed})${data.dataset.skipped.length ? `, ${data.dataset.skipped.length} unreadable skipped` : ''}`);
  model.cutAt('before-last-gemm', classes.length, seed);
  // Every input size must fit the model (a Flatten → dense layer fixes it): try each once.
  for (const sz of sizes) {
    const x = Tensor.zeros(gpu, [1, 3, sz, sz]);
    try {
      model.eval();
      noGrad(() => model.call(ops.constant(x)));
    } catch (e) {
      throw new UserError(`--size ${sz} does not fit this model (${(e as Error).message.split('\n')[0]}); it was made for ${prep.size}×${prep.size}`);
    } finally { releaseTape(); x.dispose(); model.train(); }
  }

  const plan: RunPlan = {
    model: loaded.path, modelHash: loaded.hash, data: dataDir, out, mode, epochs, freezeEpochs, baseLr, lrMult,
    batch: batchFlag, sizes, unfreeze, valSplit, seed, classes, preprocessing: { ...prep, size: sizes.at(-1)! },
    augment: prev?.augment ?? { ...(loaded.augment ?? {}) },
  };
  if (flags.minScale !== undefined) {
    const v = Number(flags.minScale);
    if (!(v > 0 && v <= 1)) throw new UserError(`--min-scale must be in (0, 1], got '${flags.minScale}'`);
    plan.augment.scale = [v, 1];
  }
  // --no-augment: the whole image, unflipped (the eval view, at the training size).
  if (flags.augment === false) plan.augment = { scale: [1, 1], ratio: [1, 1], flipP: 0 };
  const report = mode === 'features'
    ? await runFeatures(gpu, model, loaded.hash, plan, data, status, flags)
    : await runFinetune(gpu, model, plan, data, status, flags, budget, resumeBytes, resumeMeta);
  if (report.interrupted) {
    status.log(`interrupted: ${report.history.length} epochs are in ${join(out, 'checkpoint.safetensors')}; continue with: wgtrain finetune --resume ${out}`);
    model.dispose(); gpu.destroy();
    process.exit(130);
  }
  await writeCurves(out, report.history, report.eval ? { confusion: report.eval.confusion, classes } : undefined);

  // The fine-tuned model, with what it needs to be used.
  const size = sizes.at(-1)!;
  const onnx = await exportOnnx(gpu, model, {
    sampleShape: [3, size, size],
    metadata: {
      'wgtrain.classes': JSON.stringify(classes),
      'wgtrain.preprocessing': JSON.stringify({ ...prep, size }),
      'wgtrain.base_model': loaded.path,
      'wgtrain.augment': JSON.stringify(plan.augment),
    },
  });
  await writeFileAtomic(join(out, 'model.onnx'), onnx);
  const summary = {
    out, model: modelPath, data: dataDir, mode, classes, epochs: report.history.length,
    valAccuracy: report.eval?.accuracy ?? null, valLoss: report.eval?.loss ?? null,
    history: report.history, seconds: (performance.now() - t0) / 1000, ...report.extra,
  };
  if (report.eval) await writeJson(join(out, 'metrics.json'), { ...classReport(report.eval, classes), epochs: report.history.length, seconds: summary.seconds });
  status.log(`validation accuracy ${report.eval ? `${(100 * report.eval.accuracy).toFixed(1)}%` : 'n/a'}; wrote ${join(out, 'model.onnx')} in ${summary.seconds.toFixed(0)} s`);
  if (flags.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  model.dispose();
  gpu.destroy();
}

/** Learning curves, history and (when given) the confusion matrix, as SVG + PNG + CSV/JSON. */
async function writeCurves(out: string, history: readonly EpochRecord[], ev?: { confusion: number[][]; classes: readonly string[] }) {
  const c = learningCurves(history);
  const files: [string, string][] = [['curves', c.combined], ['loss', c.loss], ['accuracy', c.accuracy]];
  if (ev) files.push(['confusion', confusionMatrixSvg(ev.confusion, ev.classes)]);
  for (const [name, svg] of files) {
    await writeFileAtomic(join(out, `${name}.svg`), svg);
    await writeFileAtomic(join(out, `${name}.png`), await sharp(Buffer.from(svg)).png().toBuffer());
  }
  await writeJson(join(out, 'history.json'), history);
  await writeFileAtomic(join(out, 'history.csv'), historyCsv(history));
}

interface RunReport { history: EpochRecord[]; eval: EvalResult | null; extra: Record<string, unknown>; interrupted?: boolean }

async function runFinetune(
  gpu: Gpu, model: OnnxModule, plan: RunPlan, data: Awaited<ReturnType<typeof openData>>, status: StatusLine,
  flags: FinetuneFlags, budget: number, resumeBytes: Uint8Array | null, resumeMeta: WgtrainMeta | null,
): Promise<RunReport> {
  const { out, classes, seed, sizes } = plan;
  const learner = new Learner(gpu, model, {
    numClasses: classes.length, replay: flags.replay !== false,
    onProgress: (p) => status.update(progressText(p)), onTune: tuneProgress(gpu, status),
  });
  const trace = startTrace(gpu, learner, flags);
  let resume: { stage: 'head' | 'unfrozen'; epoch: number } | undefined;
  if (resumeBytes && resumeMeta) {
    loadCheckpoint(gpu, resumeBytes, model, learner.optimizer);
    learner.history.push(...resumeMeta.history);
    const st = resumeMeta.progress.stage === 'unfrozen' ? 'unfrozen' : 'head';
    resume = { stage: st, epoch: resumeMeta.progress.epoch };
    status.log(`resuming ${st} stage after epoch ${resume.epoch} (${resumeMeta.history.length} epochs done)`);
  }
  // Batch sizes: fixed, or planned per stage from the adapter's memory (frozen base → larger).
  let headBatch: number, fullBatch: number;
  const extra: Record<string, unknown> = {};
  if (plan.batch === 'auto') {
    const s = sizes.at(-1)!;
    const snapshot = model.parameters().map((p) => p.trainable);
    model.parameters().forEach((p) => { p.trainable = false; });
    model.layerGroups().at(-1)!.forEach((m) => m.setTrainable(true));
    const head = await planBatch(learner, [3, s, s], { budgetBytes: budget });
    model.parameters().forEach((p) => { p.trainable = true; });
    const full = await planBatch(learner, [3, s, s], { budgetBytes: budget });
    model.parameters().forEach((p, i) => { p.trainable = snapshot[i]!; });
    headBatch = head.batch; fullBatch = full.batch;
    extra.batchPlan = { head, unfrozen: full };
    status.log(`batch auto (budget ${(budget / 2 ** 20).toFixed(0)} MiB): frozen base ${headBatch} (${(head.perImageBytes / 2 ** 20).toFixed(1)} MiB/image), unfrozen ${fullBatch} (${(full.perImageBytes / 2 ** 20).toFixed(1)} MiB/image)`);
  } else headBatch = fullBatch = plan.batch;
  const trainAt = (batch: number) => progressiveSource(
    sizes.map((sz) => loaderSource(data.dataset, data.split.train, { ...plan.preprocessing, size: sz }, { batch, train: true, seed, augment: plan.augment })),
    plan.epochs,
  );
  const val = loaderSource(data.dataset, data.split.val, plan.preprocessing, { batch: Math.max(fullBatch, 32), train: false, seed });
  learner.opts.onEpochEnd = async (r, l) => {
    status.log(`${r.stage.padEnd(8)} epoch ${r.epoch}/${r.epochs}  train loss ${r.trainLoss.toFixed(4)} acc ${(100 * r.trainAcc).toFixed(1)}%  val loss ${r.valLoss?.toFixed(4) ?? '-'} acc ${r.valAcc !== undefined ? (100 * r.valAcc).toFixed(1) : '-'}%  ${(r.ms / 1000).toFixed(1)} s`);
    const stageDone = r.epoch === r.epochs;
    const done = stageDone && (r.stage === 'unfrozen' || plan.epochs === 0);
    // Progress names the stage to continue: after the head stage's last epoch, the unfrozen one at 0.
    const progress = stageDone && r.stage === 'head' ? { stage: 'unfrozen' as const, epoch: 0, done } : { stage: r.stage as 'head' | 'unfrozen', epoch: r.epoch, done };
    const bytes = await saveCheckpoint(l.model, l.optimizer, {
      model: { source: plan.model, hash: plan.modelHash, family: model.family }, classes: plan.classes,
      preprocessing: plan.preprocessing, progress, plan: plan as unknown as Record<string, unknown>, history: l.history, split: data.split.manifest,
    });
    await writeFileAtomic(join(out, 'checkpoint.safetensors'), bytes);
    await writeCurves(out, l.history);
  };
  const onSig = () => { learner.stopRequested = true; status.log('stopping after this step (checkpoint kept; resume with --resume)…'); };
  process.once('SIGINT', onSig);
  const hist = await learner.fineTune(plan.epochs, trainAt(fullBatch), val, {
    baseLr: plan.baseLr, freezeEpochs: plan.freezeEpochs, lrMult: plan.lrMult, unfreezeGroups: plan.unfreeze,
    resume, headTrain: headBatch !== fullBatch ? trainAt(headBatch) : undefined,
  });
  process.off('SIGINT', onSig);
  const interrupted = learner.interrupted;
  const ev = val.length && !interrupted ? await learner.evaluate(val) : null;
  await writeTrace(trace, flags, status, { command: 'finetune', model: plan.model, data: plan.data });
  learner.dispose();
  return { history: [...(resumeMeta?.history ?? []), ...hist], eval: ev, extra, interrupted };
}

// ---- feature extraction -------------------------------------------------------------------------

/** The new head alone, as a trainable model over cached features ([N, D, 1, 1] batches, flattened). */
class HeadOnly extends Module implements Grouped {
  constructor(readonly w: Parameter, readonly b: Parameter | null) { super(); }
  forward(x: Variable): Variable { return ops.linear(ops.flatten(x), this.w, this.b); }
  override namedParameters(): [string, Parameter][] { return [[this.w.name, this.w], ...(this.b ? [[this.b.name, this.b] as [string, Parameter]] : [])]; }
  layerGroups(): Module[][] { return [[this]]; }
}

async function extract(gpu: Gpu, model: OnnxModule, src: BatchSource, status: StatusLine, what: string): Promise<{ x: Float32Array; labels: Uint32Array; dim: number }> {
  const xs: Float32Array[] = [], ls: Uint32Array[] = [];
  let dim = 0, i = 0;
  model.eval();
  for await (const b of src.batches(0)) {
    const xt = Tensor.from(gpu, b.x, [...b.shape]);
    const f = noGrad(() => model.runTo(ops.constant(xt), model.headInput));
    const v = await f.read();
    dim = v.length / b.labels.length;
    xs.push(v); ls.push(b.labels);
    releaseTape(); xt.dispose();
    status.update(`extracting ${what} features ${bar(++i, src.length)}`);
  }
  model.train();
  const n = ls.reduce((s, l) => s + l.length, 0);
  const x = new Float32Array(n * dim), labels = new Uint32Array(n);
  let o = 0;
  xs.forEach((v, k) => { x.set(v, o * dim); labels.set(ls[k]!, o); o += ls[k]!.length; });
  return { x, labels, dim };
}

function featureSource(f: { x: Float32Array; labels: Uint32Array; dim: number }, batch: number, shuffle: boolean, seed: number): BatchSource {
  const n = f.labels.length;
  return {
    length: Math.ceil(n / batch),
    async *batches(epoch: number): AsyncIterable<Batch> {
      const order = Array.from({ length: n }, (_, i) => i);
      if (shuffle) { let s = (seed * 2654435761 + epoch) >>> 0; for (let i = n - 1; i > 0; i--) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; const j = s % (i + 1); [order[i], order[j]] = [order[j]!, order[i]!]; } }
      for (let s = 0; s < n; s += batch) {
        const idx = order.slice(s, s + batch);
        const x = new Float32Array(idx.length * f.dim);
        idx.forEach((j, k) => x.set(f.x.subarray(j * f.dim, (j + 1) * f.dim), k * f.dim));
        // NOTE: features are [N, D]; the Batch type's 4-D shape is [N, D, 1, 1] (the head reshapes).
        yield { x, shape: [idx.length, f.dim, 1, 1], labels: Uint32Array.from(idx, (j) => f.labels[j]!) };
      }
    },
  };
}

async function runFeatures(gpu: Gpu, model: OnnxModule, modelHash: string, plan: RunPlan, data: Awaited<ReturnType<typeof openData>>, status: StatusLine, flags: FinetuneFlags): Promise<RunReport> {
  const size = plan.sizes.at(-1)!;
  const prep = { ...plan.preprocessing, size };
  // The cache key: everything that changes what the frozen base computes for an image.
  const key = createHash('sha256').update(JSON.stringify({ modelHash, cut: model.headInput, size, prep, split: data.split.manifest, transform: 'eval' })).digest('hex').slice(0, 16);
  const cacheDir = join(plan.out, 'feature-cache');
  mkdirSync(cacheDir, { recursive: true });
  const file = join(cacheDir, `${key}.safetensors`);
  let train: { x: Float32Array; labels: Uint32Array; dim: number }, val: typeof train;
  const t0 = performance.now();
  let extractMs = 0, cached = false;
  if (existsSync(file)) {
    const { tensors } = decodeSafetensors(new Uint8Array(readFileSync(file)));
    const get = (n: string) => tensors.get(n)!;
    const dim = get('train.x').shape[1]!;
    train = { x: get('train.x').data, labels: Uint32Array.from(get('train.y').data), dim };
    val = { x: get('val.x').data, labels: Uint32Array.from(get('val.y').data), dim };
    cached = true;
    status.log(`features: cache hit ${file}`);
  } else {
    // Stale entries (another model, size, preprocessing or split) are removed.
    for (const f of readdirSync(cacheDir)) if (f.endsWith('.safetensors')) rmSync(join(cacheDir, f));
    const bs = plan.batch === 'auto' ? 64 : plan.batch;
    train = await extract(gpu, model, loaderSource(data.dataset, data.split.train, prep, { batch: bs, train: false, seed: plan.seed }), status, 'train');
    val = await extract(gpu, model, loaderSource(data.dataset, data.split.val, prep, { batch: bs, train: false, seed: plan.seed }), status, 'validation');
    extractMs = performance.now() - t0;
    await writeFileAtomic(file, encodeSafetensors([
      { name: 'train.x', shape: [train.labels.length, train.dim], data: train.x },
      { name: 'train.y', shape: [train.labels.length], data: Float32Array.from(train.labels) },
      { name: 'val.x', shape: [val.labels.length, val.dim], data: val.x },
      { name: 'val.y', shape: [val.labels.length], data: Float32Array.from(val.labels) },
    ], { key, model: modelHash, size: String(size) }));
    status.log(`features: extracted ${train.labels.length + val.labels.length} images through the frozen base in ${(extractMs / 1000).toFixed(1)} s → ${file}`);
  }
  const last = model.activeLayers().at(-1)!;
  const w = last.params.get(last.node.inputs[1]!)!, b = last.node.inputs[2] ? last.params.get(last.node.inputs[2])! : null;
  const learner = new Learner(gpu, new HeadOnly(w, b), {
    numClasses: plan.classes.length, replay: flags.replay !== false,
    onProgress: (p) => status.update(`head epoch ${p.epoch}/${p.epochs} ${bar(p.step, p.steps)} loss ${p.loss.toFixed(4)}`),
    onTune: tuneProgress(gpu, status),
    onEpochEnd: (r) => status.log(`features epoch ${r.epoch}/${r.epochs}  train loss ${r.trainLoss.toFixed(4)} acc ${(100 * r.trainAcc).toFixed(1)}%  val loss ${r.valLoss?.toFixed(4)} acc ${(100 * (r.valAcc ?? 0)).toFixed(1)}%  ${(r.ms).toFixed(0)} ms`),
  });
  const trace = startTrace(gpu, learner, flags);
  const bs = plan.batch === 'auto' ? 64 : plan.batch;
  const epochs = Math.max(1, plan.epochs + plan.freezeEpochs);
  const hist = await learner.fit(epochs, featureSource(train, bs, true, plan.seed), featureSource(val, 256, false, plan.seed), { lr: plan.baseLr * 5, stage: 'features' });
  const ev = await learner.evaluate(featureSource(val, 256, false, plan.seed));
  const epochMs = hist.reduce((s, h) => s + h.ms, 0) / hist.length;
  if (!cached) status.log(`features: one head epoch ${epochMs.toFixed(0)} ms vs ${(extractMs).toFixed(0)} ms for one pass of the base (${(extractMs / epochMs).toFixed(0)}× faster per epoch)`);
  await writeTrace(trace, flags, status, { command: 'finetune --mode features', model: plan.model, data: plan.data });
  learner.dispose();
  return { history: hist, eval: ev, extra: { featureCache: { file, key, hit: cached, extractMs, headEpochMs: epochMs } } };
}

/** Per-class precision/recall from a confusion matrix. */
export function classReport(ev: EvalResult, classes: readonly string[]) {
  const K = classes.length;
  const perClass = classes.map((name, k) => {
    const tp = ev.confusion[k]![k]!;
    const actual = ev.confusion[k]!.reduce((a, b) => a + b, 0);
    const predicted = ev.confusion.reduce((s, row) => s + row[k]!, 0);
    const precision = predicted ? tp / predicted : 0, recall = actual ? tp / actual : 0;
    return { class: name, support: actual, precision, recall, f1: precision + recall ? (2 * precision * recall) / (precision + recall) : 0 };
  });
  const pairs: { actual: string; predicted: string; count: number }[] = [];
  for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) if (i !== j && ev.confusion[i]![j]! > 0) pairs.push({ actual: classes[i]!, predicted: classes[j]!, count: ev.confusion[i]![j]! });
  pairs.sort((a, b) => b.count - a.count);
  return { accuracy: ev.accuracy, loss: ev.loss, n: ev.n, classes, perClass, confusion: ev.confusion, mostConfused: pairs.slice(0, 5) };
}

// ---- --trace FILE ---------------------------------------------------------------------------------

/** With --trace: a recorder that sees the learner's steps (the first --trace-steps of each stage, default 3). */
export function startTrace(gpu: Gpu, learner: Learner, flags: { trace?: string; traceSteps?: string }, stage?: string): TraceRecorder | null {
  if (!flags.trace) return null;
  const steps = flags.traceSteps === 'all' ? Infinity : positiveInt('--trace-steps', flags.traceSteps, 3);
  const trace = new TraceRecorder(gpu, { stepsPerStage: steps, stage });
  learner.opts.observer = trace.attach(learner);
  return trace;
}

/** Collects the GPU times and writes the Chrome trace-event JSON. */
export async function writeTrace(trace: TraceRecorder | null, flags: { trace?: string }, status: StatusLine, meta: Record<string, unknown>) {
  if (!trace || !flags.trace) return;
  await trace.finish();
  const file = resolve(flags.trace);
  await writeFileAtomic(file, JSON.stringify(trace.toChromeTrace(meta)));
  status.log(`trace: ${trace.steps.length} steps, ${trace.dispatches} dispatches (GPU time: ${trace.timing}) → ${file} (open it in https://ui.perfetto.dev or chrome://tracing)`);
}
