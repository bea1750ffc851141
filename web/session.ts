// The worker's state: the GPU, the chosen model and images, and the run (a Learner and its plan).
// It does in the browser what `wgtrain finetune` does in Node (src/cli/finetune.ts), with the same
// engine and the same files: the checkpoint it writes carries the CLI's RunPlan, so a run started
// here resumes in Node (`wgtrain finetune --resume DIR`) and one started in Node resumes here.
//
//   loadModel      ONNX bytes → OnnxModule (importer), preprocessing from its metadata
//   loadData       files → ImageFolder (BrowserDecoder), class counts
//   split          stratified, seeded (optionally the first K images per class)
//   lrFind         fastai's LR finder on the cut model; weights restored afterwards
//   train          new head (cutAt) → Learner.fineTune: head stage, then unfrozen; checkpoint per epoch
//   resume         from the latest checkpoint (this session's, IndexedDB's, or an imported one)
//   pause/continue a gate in front of the batch source: the step loop waits, GPU state stays as it is
//   stop           Learner.stopRequested: the epoch in progress is dropped (resume redoes it)

import { getGpu, GpuError, type Gpu } from '../src/gpu/device.js';
import { Tensor } from '../src/gpu/tensor.js';
import * as ops from '../src/autograd/ops.js';
import { noGrad, releaseTape } from '../src/autograd/variable.js';
import { decodeModel, OnnxError, type OnnxModel } from '../src/onnx/reader.js';
import { importModel, type OnnxModule } from '../src/onnx/import.js';
import { exportOnnx } from '../src/onnx/export.js';
import { groupParameters } from '../src/nn/groups.js';
import { Learner, type BatchSource, type EpochRecord, type EvalResult, type FineTuneOptions } from '../src/train/learner.js';
import { lrFind } from '../src/train/lrfind.js';
import { planBatch } from '../src/train/memory.js';
import { confusionMatrixSvg, lrFindPlot } from '../src/train/plots.js';
import { checkpointMeta, loadCheckpoint, saveCheckpoint, type WgtrainMeta } from '../src/train/checkpoint.js';
import { BrowserDecoder, openBrowserFolder, type RelativeFile } from '../src/data/browser.js';
import { ImageCache } from '../src/data/cache.js';
import { DataError } from '../src/data/errors.js';
import type { ImageFolder, LabeledItem } from '../src/data/folder.js';
import { checkPreprocessing, defaultPreprocessing, type Preprocessing } from '../src/data/preprocessing.js';
import { resolveSplit, serializeManifest, stratifiedSplit, type Split, type SplitManifest } from '../src/data/split.js';
import { transformImage, type TrainAugment } from '../src/data/transforms.js';
// NOTE: type-only: the CLI module itself imports Node's fs and sharp, which a browser never loads.
import type { RunPlan } from '../src/cli/finetune.js';
import { loaderSource, progressiveSource } from '../src/train/sources.js';
import type { DataInfo, Event, LrFindInfo, ModelInfo, Prediction, RunSettings, RunState, SavedRunInfo, SplitInfo } from './protocol.js';
import { avoidTiledConv, enableTuning } from './adapter.js';
import { hasIndexedDb, store, type SavedData, type SavedModel } from './store.js';

/** Paths the plan records for the bundled demo: the CLI's own, relative to the package root. */
export const DEMO_MODEL_PLAN_PATH = 'weights/fashion5-source-cnn.onnx';
export const DEMO_DATA_PLAN_PATH = 'examples/fashion5';
/** Where the static site serves them (build-web.mjs). */
const DEMO_MODEL_URL = 'demo/fashion5-source-cnn.onnx';
const DEMO_DATA_URL = 'demo/fashion5';

/** A user error: shown as it is, no stack. */
export class UserError extends Error { override name = 'UserError'; }

/** First 16 hex digits of the SHA-256 (what the CLI's loadOnnx records as the model hash). */
async function sha256Hex16(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
  return Array.from(d.slice(0, 8), (b) => b.toString(16).padStart(2, '0')).join('');
}

async function fetchBytes(url: string): Promise<Uint8Array> {
  const r = await fetch(new URL(url, self.location.href));
  if (!r.ok) throw new UserError(`could not load ${url} (HTTP ${r.status}): is the site built with the demo (node scripts/build-web.mjs)?`);
  return new Uint8Array(await r.arrayBuffer());
}

/** The bundled demo images: one listing and one blob (see build-web.mjs), as relative files. */
async function demoFiles(): Promise<RelativeFile[]> {
  const listing = JSON.parse(new TextDecoder().decode(await fetchBytes(`${DEMO_DATA_URL}.json`))) as { files: { path: string; offset: number; length: number }[] };
  const blob = new Blob([(await fetchBytes(`${DEMO_DATA_URL}.bin`)) as Uint8Array<ArrayBuffer>]);
  return listing.files.map((f) => [f.path, blob.slice(f.offset, f.offset + f.length)] as const);
}

/** A pause switch the batch source waits on before handing out each batch. */
class Gate {
  private waiting: (() => void)[] = [];
  closed = false;
  close() { this.closed = true; }
  open() { this.closed = false; for (const w of this.waiting.splice(0)) w(); }
  wait(): Promise<void> { return this.closed ? new Promise((r) => this.waiting.push(r)) : Promise.resolve(); }
}

function gated(src: BatchSource, gate: Gate): BatchSource {
  return {
    get length() { return src.length; },
    async *batches(epoch: number) {
      for await (const b of src.batches(epoch)) { await gate.wait(); yield b; }
    },
  };
}

interface SourceModel { name: string; demo: boolean; bytes: Uint8Array; hash: string; onnx: OnnxModel; preprocessing: Preprocessing; guessed: boolean; classes: string[] | null; augment: Partial<TrainAugment> | null; saved: SavedModel }
interface SourceData { folder: ImageFolder; root: string; demo: boolean; files: readonly RelativeFile[]; saved: SavedData }

interface Run {
  plan: RunPlan;
  /** The run's split (the checkpoint's manifest on resume), independent of the form's current one. */
  split: Split;
  learner: Learner | null;
  gate: Gate;
  status: RunState['status'];
  history: EpochRecord[];
  checkpoint: Uint8Array | null;
  progress: RunState['progress'];
  eval: RunState['eval'];
  origin: RunState['origin'];
  pauseAtEpochEnd: boolean;
}

export class Session {
  private gpu: Gpu | null = null;
  private source: SourceModel | null = null;
  private data: SourceData | null = null;
  private split: Split | null = null;
  private perClass = 0;
  /** The model on the GPU: the source as imported, or cut and re-headed for a run. */
  private model: OnnxModule | null = null;
  private run: Run | null = null;
  private cache = new ImageCache(256 * 2 ** 20);
  private busy: string | null = null;
  pauseAtEpochEnd = false;

  constructor(private readonly emit: (e: Event) => void) {}

  private log(text: string, level: 'info' | 'warning' = 'info') { this.emit({ event: 'log', level, text }); }

  async init(): Promise<{ adapter: string; features: string[] }> {
    try {
      this.gpu = await getGpu();
    } catch (e) {
      throw e instanceof GpuError ? e : new GpuError((e as Error).message);
    }
    await enableTuning(this.gpu, (t) => this.log(t));
    if (avoidTiledConv(this.gpu)) this.log(`${this.gpu.adapterName}: using the naive (v1) convolution kernels (the tiled ones do not compile on this software adapter)`);
    return { adapter: this.gpu.adapterName, features: [...this.gpu.features].sort() };
  }

  private requireGpu(): Gpu {
    if (!this.gpu) throw new GpuError('WebGPU is not initialised');
    return this.gpu;
  }

  /** Runs a GPU-using operation; refuses a second one while training holds the GPU. */
  private async exclusive<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.busy) throw new UserError(`cannot ${what} while ${this.busy}${this.busy === 'training' ? ': pause is not enough, stop the run first' : ''}`);
    this.busy = what;
    try { return await fn(); } finally { this.busy = null; }
  }

  // ---- model ------------------------------------------------------------------------------------

  async loadModel(m: { demo: true } | { demo?: false; name: string; bytes: ArrayBuffer }): Promise<ModelInfo> {
    return this.exclusive('load a model', async () => {
      const bytes = m.demo ? await fetchBytes(DEMO_MODEL_URL) : new Uint8Array(m.bytes);
      const name = m.demo ? 'fashion5-source-cnn.onnx (demo)' : m.name;
      return this.setModel(name, bytes, m.demo === true, m.demo ? { demo: true, name } : { demo: false, name, bytes: new Blob([bytes as Uint8Array<ArrayBuffer>]) });
    });
  }

  private async setModel(name: string, bytes: Uint8Array, demo: boolean, saved: SavedModel): Promise<ModelInfo> {
    const gpu = this.requireGpu();
    const onnx = decodeModel(bytes);
    const hash = await sha256Hex16(bytes);
    const model = this.importFresh(gpu, onnx);
    const meta = onnx.metadata;
    let preprocessing: Preprocessing, guessed = false;
    if (meta['wgtrain.preprocessing']) {
      try { preprocessing = checkPreprocessing(JSON.parse(meta['wgtrain.preprocessing'])); } catch { throw new UserError(`'${name}' has unreadable wgtrain.preprocessing metadata`); }
    } else {
      const dims = model.graph.inputs[0]!.shape;
      preprocessing = defaultPreprocessing(dims && typeof dims[2] === 'number' ? dims[2] : 224);
      guessed = true;
      this.log(`'${name}' carries no preprocessing: using ${preprocessing.size}×${preprocessing.size}, ImageNet mean/std (torchvision's)`, 'warning');
    }
    const parse = <T>(k: string): T | null => { try { return meta[k] ? JSON.parse(meta[k]) as T : null; } catch { return null; } };
    this.dropRun();
    this.model?.dispose();
    this.model = model;
    this.source = { name, demo, bytes, hash, onnx, preprocessing, guessed, classes: parse<string[]>('wgtrain.classes'), augment: parse<Partial<TrainAugment>>('wgtrain.augment'), saved };
    return this.modelInfo();
  }

  /** Imports the source graph anew (every run starts from the pretrained weights). */
  private importFresh(gpu: Gpu, onnx?: OnnxModel): OnnxModule {
    const o = onnx ?? decodeModel(this.source!.bytes);
    let model = importModel(gpu, o);
    if (model.family !== 'other') {
      // Recognised torchvision graphs get torchvision's parameter names (as the CLI).
      model.dispose();
      model = importModel(gpu, onnx ?? decodeModel(this.source!.bytes), { names: 'torchvision' });
    }
    return model;
  }

  private modelInfo(): ModelInfo {
    const s = this.source!, m = this.model!;
    const opCount: Record<string, number> = {};
    for (const n of m.graph.nodes) opCount[n.onnxOp] = (opCount[n.onnxOp] ?? 0) + 1;
    const dims = (v: { name: string; shape: (number | string)[] | null }) => `${v.name} [${v.shape?.map((d, i) => (i === 0 && typeof d !== 'number' ? 'N' : String(d))).join(', ') ?? '?'}]`;
    return {
      name: s.name, hash: s.hash, bytes: s.bytes.byteLength, demo: s.demo, family: m.family, params: m.numParameters(),
      io: `${m.graph.inputs.map(dims).join(', ')} → ${m.graph.outputs.map(dims).join(', ')}`,
      ops: Object.entries(opCount).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', '),
      groups: groupParameters(m).map((g) => g.reduce((t, [, p]) => t + p.size, 0)),
      classes: s.classes, preprocessing: s.preprocessing, preprocessingGuessed: s.guessed,
    };
  }

  // ---- data -------------------------------------------------------------------------------------

  async loadData(d: { demo: true } | { demo?: false; root: string; files: [string, Blob][] }): Promise<DataInfo> {
    return this.exclusive('load images', async () => {
      const files = d.demo ? await demoFiles() : d.files;
      const root = d.demo ? 'fashion5 (demo)' : d.root;
      return this.setData(files, root, d.demo === true, d.demo ? { demo: true } : { demo: false, root, files: d.files });
    });
  }

  private async setData(files: readonly RelativeFile[], root: string, demo: boolean, saved: SavedData): Promise<DataInfo> {
    if (files.length === 0) throw new UserError('no files: pick or drop a folder with one subfolder of images per class');
    const warn = (s: string) => this.log(s, 'warning');
    // NOTE: the demo's files are known good: skip the per-file header check (a decode each here).
    const folder = await openBrowserFolder(files, root, { onWarning: warn, verify: demo ? 'none' : 'header' });
    this.dropRun();
    this.cache = new ImageCache(256 * 2 ** 20);
    this.data = { folder, root, demo, files, saved };
    this.split = null;
    return this.dataInfo();
  }

  private dataInfo(): DataInfo {
    const d = this.data!;
    return { root: d.root, demo: d.demo, classes: [...d.folder.classes], counts: d.folder.classCounts(), skipped: [...d.folder.skipped] };
  }

  /** The stratified split; with perClass > 0 only the first perClass images (path order) of each class. */
  makeSplit(valSplit: number, seed: number, perClass: number): SplitInfo {
    const d = this.data;
    if (!d) throw new UserError('choose images first (the demo dataset, or a folder with one subfolder per class)');
    if (!(valSplit >= 0 && valSplit < 1)) throw new UserError(`validation fraction must be in [0, 1), got ${valSplit}`);
    let items = d.folder.items;
    if (perClass > 0) {
      const seen = d.folder.classes.map(() => 0);
      items = items.filter((it) => seen[it.label]!++ < perClass);
    }
    this.split = stratifiedSplit(items, { valFraction: valSplit, seed, classes: d.folder.classes });
    this.perClass = perClass;
    return this.splitInfo();
  }

  private splitInfo(): SplitInfo {
    const s = this.split!, K = this.data!.folder.classes.length;
    const count = (items: readonly LabeledItem[]) => { const c = new Array<number>(K).fill(0); for (const it of items) c[it.label]!++; return c; };
    return { train: count(s.train), val: count(s.val), seed: s.manifest.seed, valSplit: s.manifest.valFraction, perClass: this.perClass };
  }

  // ---- plan and model for a run -----------------------------------------------------------------

  private requireSource(): { src: SourceModel; data: SourceData } {
    if (!this.source) throw new UserError('choose a model first (the demo model, or an .onnx file)');
    if (!this.data) throw new UserError('choose images first (the demo dataset, or a folder with one subfolder per class)');
    return { src: this.source, data: this.data };
  }

  /** The CLI's RunPlan for the form's settings (what the checkpoint carries). */
  private planFor(s: RunSettings): RunPlan {
    const { src, data } = this.requireSource();
    const split = this.makeSplitIfNeeded(s);
    const prep = src.preprocessing;
    for (const [k, v] of [['epochs', s.epochs], ['freeze epochs', s.freezeEpochs]] as const) {
      if (!(Number.isInteger(v) && v >= 0)) throw new UserError(`${k} must be an integer ≥ 0, got ${v}`);
    }
    if (s.epochs + s.freezeEpochs < 1) throw new UserError('nothing to train: set epochs or freeze epochs to 1 or more');
    if (!(Number.isInteger(s.batch) && s.batch >= 1)) throw new UserError(`batch must be a positive integer, got ${s.batch}`);
    if (!(s.lr > 0 && s.lr < 10)) throw new UserError(`learning rate must be in (0, 10), got ${s.lr}`);
    return {
      // NOTE: a browser has no paths. The demo records the CLI's own relative paths (a resume from the
      // package root finds them); a picked model or folder records its name: pass --model/--data then.
      model: src.demo ? DEMO_MODEL_PLAN_PATH : src.name, modelHash: src.hash,
      data: data.demo ? DEMO_DATA_PLAN_PATH : data.root, out: 'wgtrain-out',
      mode: 'finetune', epochs: s.epochs, freezeEpochs: s.freezeEpochs, baseLr: s.lr, lrMult: s.lrMult,
      batch: s.batch, sizes: [prep.size], unfreeze: s.unfreeze, valSplit: split.manifest.valFraction, seed: split.manifest.seed,
      classes: [...data.folder.classes], preprocessing: { ...prep }, augment: { ...(src.augment ?? {}) },
    };
  }

  private makeSplitIfNeeded(s: RunSettings): Split {
    const m = this.split?.manifest;
    if (!this.split || m!.seed !== s.seed || m!.valFraction !== s.valSplit || this.perClass !== s.perClass) this.makeSplit(s.valSplit, s.seed, s.perClass);
    return this.split!;
  }

  /** The pretrained model with a new head for `plan.classes` (CLI: cutAt before the last Gemm). */
  private cutModel(plan: RunPlan): OnnxModule {
    const gpu = this.requireGpu();
    this.model?.dispose();
    this.model = null;
    const model = this.importFresh(gpu);
    model.cutAt('before-last-gemm', plan.classes.length, plan.seed);
    this.model = model;
    return model;
  }

  // ---- LR finder --------------------------------------------------------------------------------

  async lrFind(s: RunSettings, numIt: number): Promise<LrFindInfo> {
    return this.exclusive('run the LR finder', async () => {
      const t0 = performance.now();
      const plan = this.planFor(s);
      this.dropRun();
      const model = this.cutModel(plan);
      const learner = new Learner(this.requireGpu(), model, { numClasses: plan.classes.length, replay: true });
      try {
        const train = loaderSource(this.data!.folder, this.split!.train, plan.preprocessing, { batch: s.batch, train: true, seed: plan.seed, augment: plan.augment, cache: this.cache });
        if (train.length === 0) throw new UserError('the training split yields no batch: use more images or a smaller batch');
        const r = await lrFind(learner, train, { numIt });
        return { svg: lrFindPlot(r), suggestions: r.suggestions, iterations: r.iterations, ms: performance.now() - t0 };
      } finally { learner.dispose(); }
    });
  }

  // ---- training ---------------------------------------------------------------------------------

  state(): RunState {
    const r = this.run;
    if (!r) return { status: 'idle', history: [], classes: [], progress: null, totalEpochs: 0, eval: null, origin: null, settings: null };
    const p = r.plan;
    return {
      status: r.status, history: [...r.history], classes: [...p.classes], progress: r.progress,
      totalEpochs: p.freezeEpochs + p.epochs, eval: r.eval, origin: r.origin,
      settings: { epochs: p.epochs, freezeEpochs: p.freezeEpochs, lr: p.baseLr, lrMult: p.lrMult, batch: p.batch, valSplit: p.valSplit, seed: p.seed, unfreeze: p.unfreeze },
    };
  }

  private emitState() { this.emit({ event: 'state', state: this.state() }); }

  private dropRun() {
    if (this.run?.status === 'training' || this.run?.status === 'paused') throw new UserError('a run is in progress: stop it first');
    this.run?.learner?.dispose();
    this.run = null;
  }

  /** Starts a new run from the pretrained model. Resolves when it ends (finished or stopped). */
  async train(s: RunSettings): Promise<RunState> {
    return this.exclusive('training', async () => {
      const plan = this.planFor(s);
      this.dropRun();
      this.cutModel(plan);
      if (hasIndexedDb()) {
        try { await store.saveSource({ model: this.source!.saved, data: this.data!.saved }); } catch (e) { this.log(`could not save the run in IndexedDB (${(e as Error).message}); a reload will not resume it`, 'warning'); }
      }
      return this.fineTune(plan, this.split!, null, 'new');
    });
  }

  /** Continues the run from its latest checkpoint. */
  async resume(): Promise<RunState> {
    return this.exclusive('training', async () => {
      const r = this.run;
      if (!r?.checkpoint) throw new UserError('no checkpoint to resume from: start a run, import a checkpoint, or restore a saved run');
      if (r.status === 'done') throw new UserError('that run is finished; start a new one');
      if (r.status === 'training' || r.status === 'paused') throw new UserError('the run is already going');
      const meta = checkpointMeta(r.checkpoint);
      const origin = r.origin;
      r.learner?.dispose();
      this.run = null;
      this.cutModel(r.plan);
      return this.fineTune(r.plan, r.split, { bytes: r.checkpoint, meta }, origin);
    });
  }

  /** The CLI's runFinetune, in a worker: same stages, same checkpoints, same plan. */
  private async fineTune(plan: RunPlan, split: Split, from: { bytes: Uint8Array; meta: WgtrainMeta } | null, origin: RunState['origin']): Promise<RunState> {
    const gpu = this.requireGpu();
    const model = this.model!;
    const data = this.data!;
    let last = 0, lastImages = 0;
    const learner = new Learner(gpu, model, {
      numClasses: plan.classes.length, replay: true,
      onTune: (key, i, total) => { if (i === 0) this.log(`autotuning ${total} kernel shape class${total === 1 ? '' : 'es'} new to this adapter (once; kept in IndexedDB)`); },
      onProgress: (p) => {
        // Images per second over the last progress interval.
        const now = performance.now(), dn = p.step === 1 ? p.images : p.images - lastImages;
        const rate = last && p.step > 1 ? dn / ((now - last) / 1000) : 0;
        last = now; lastImages = p.images;
        this.emit({ event: 'progress', p, imgPerSec: rate });
      },
    });
    const run: Run = {
      plan, split, learner, gate: new Gate(), status: 'training', history: [], checkpoint: from?.bytes ?? null,
      progress: from ? from.meta.progress : null, eval: null, origin, pauseAtEpochEnd: this.pauseAtEpochEnd,
    };
    this.run = run;
    let resume: FineTuneOptions['resume'];
    if (from) {
      loadCheckpoint(gpu, from.bytes, model, learner.optimizer);
      learner.history.push(...from.meta.history);
      run.history.push(...from.meta.history);
      const st = from.meta.progress.stage === 'unfrozen' ? 'unfrozen' : 'head';
      resume = { stage: st, epoch: from.meta.progress.epoch };
      this.log(`resuming the ${st} stage after epoch ${resume.epoch} (${from.meta.history.length} epochs done)`);
    }
    // Batch: fixed, or planned from the memory budget as the CLI's --batch auto (one size for both stages).
    let batch: number;
    if (plan.batch === 'auto') {
      const s = plan.sizes.at(-1)!;
      batch = (await planBatch(learner, [3, s, s], { budgetBytes: 2048 * 2 ** 20 })).batch;
      this.log(`batch auto: ${batch}`);
    } else batch = plan.batch;
    const train = gated(progressiveSource(
      plan.sizes.map((sz) => loaderSource(data.folder, split.train, { ...plan.preprocessing, size: sz }, { batch, train: true, seed: plan.seed, augment: plan.augment, cache: this.cache })),
      plan.epochs,
    ), run.gate);
    if (train.length === 0) throw new UserError(`the training split (${split.train.length} images) yields no batch of ${batch}: use more images or a smaller batch`);
    const val = loaderSource(data.folder, split.val, plan.preprocessing, { batch: Math.max(batch, 32), train: false, seed: plan.seed, cache: this.cache });
    learner.opts.onEpochEnd = async (r, l) => {
      const stageDone = r.epoch === r.epochs;
      const done = stageDone && (r.stage === 'unfrozen' || plan.epochs === 0);
      // As the CLI: after the head stage's last epoch, progress names the unfrozen stage at epoch 0.
      const progress = stageDone && r.stage === 'head' ? { stage: 'unfrozen' as const, epoch: 0, done } : { stage: r.stage as 'head' | 'unfrozen', epoch: r.epoch, done };
      const bytes = await saveCheckpoint(l.model, l.optimizer, {
        model: { source: plan.model, hash: plan.modelHash, family: model.family }, classes: plan.classes,
        preprocessing: plan.preprocessing, progress, plan: plan as unknown as Record<string, unknown>, history: l.history, split: split.manifest,
      });
      run.checkpoint = bytes;
      run.progress = progress;
      run.history.push(r);
      if (hasIndexedDb()) {
        try { await store.saveCheckpoint({ bytes, savedAt: new Date().toISOString() }); } catch (e) { this.log(`could not save the checkpoint in IndexedDB: ${(e as Error).message}`, 'warning'); }
      }
      if (run.pauseAtEpochEnd && !done) { run.gate.close(); run.status = 'paused'; }
      this.emit({ event: 'epoch', record: r, state: this.state() });
    };
    this.emitState();
    try {
      await learner.fineTune(plan.epochs, train, val, {
        baseLr: plan.baseLr, freezeEpochs: plan.freezeEpochs, lrMult: plan.lrMult, unfreezeGroups: plan.unfreeze, resume,
      });
      if (learner.stopRequested) {
        run.status = 'stopped';
        this.log(`stopped: ${run.history.length} epochs are in the checkpoint; Resume continues from there`);
      } else {
        const ev = val.length ? await learner.evaluate(val) : null;
        run.eval = ev ? evalSummary(ev, plan.classes) : null;
        run.status = 'done';
      }
    } catch (e) {
      run.status = run.checkpoint ? 'stopped' : 'idle';
      throw e;
    } finally {
      this.emitState();
    }
    return this.state();
  }

  pause(): RunState {
    const r = this.run;
    if (r?.status === 'training') { r.gate.close(); r.status = 'paused'; this.emitState(); }
    return this.state();
  }

  continue(): RunState {
    const r = this.run;
    if (r?.status === 'paused') { r.status = 'training'; r.gate.open(); this.emitState(); }
    return this.state();
  }

  stop(): RunState {
    const r = this.run;
    if (r && (r.status === 'training' || r.status === 'paused') && r.learner) {
      r.learner.stopRequested = true;
      r.gate.open(); // a paused loop must run on to see the request
    }
    return this.state();
  }

  setPauseAtEpochEnd(on: boolean): boolean {
    this.pauseAtEpochEnd = on;
    if (this.run) this.run.pauseAtEpochEnd = on;
    return on;
  }

  // ---- using the model --------------------------------------------------------------------------

  /** The classes and preprocessing of the model as it is now (fine-tuned, or the source). */
  private current(): { classes: string[]; prep: Preprocessing } {
    const m = this.model;
    if (!m || !this.source) throw new UserError('choose a model first');
    if (this.run) return { classes: this.run.plan.classes, prep: this.run.plan.preprocessing };
    const K = m.numOutputs ?? 0;
    const classes = this.source.classes?.length === K ? this.source.classes : Array.from({ length: K }, (_, i) => `class ${i}`);
    return { classes, prep: this.source.preprocessing };
  }

  /** Logits of the model (eval mode) for a normalised NCHW batch. */
  private async logits(x: Float32Array, shape: readonly [number, number, number, number]): Promise<Float32Array> {
    const gpu = this.requireGpu();
    const model = this.model!;
    const xt = Tensor.from(gpu, x, [...shape]);
    const wasTraining = model.training;
    model.eval();
    try {
      const y = noGrad(() => model.call(ops.constant(xt)));
      return await y.read();
    } finally {
      releaseTape();
      xt.dispose();
      if (wasTraining) model.train();
    }
  }

  async forward(x: Float32Array, shape: [number, number, number, number]): Promise<{ logits: Float32Array; shape: number[] }> {
    return this.exclusive('run the model', async () => {
      if (!this.model) throw new UserError('choose a model first');
      const logits = await this.logits(x, shape);
      return { logits, shape: [shape[0], logits.length / shape[0]] };
    });
  }

  async predict(bytes: ArrayBuffer): Promise<Prediction> {
    return this.exclusive('predict', async () => {
      const t0 = performance.now();
      const { classes, prep } = this.current();
      let img;
      try { img = await new BrowserDecoder().decode(new Uint8Array(bytes)); } catch (e) { throw new UserError(`cannot decode that file as an image (${(e as Error).message})`); }
      const x = transformImage(img, prep, { kind: 'eval' });
      const z = await this.logits(x, [1, 3, prep.size, prep.size]);
      // Softmax in float64 on the CPU: one row, not worth a kernel launch.
      const mx = Math.max(...z);
      const e = Array.from(z, (v) => Math.exp(v - mx));
      const sum = e.reduce((a, b) => a + b, 0);
      return { classes, probs: e.map((v) => v / sum), ms: performance.now() - t0 };
    });
  }

  /** The eval-transformed tensors of dataset images, by relative path (parity tests with Node). */
  async preprocess(paths: string[]): Promise<{ x: Float32Array; shape: number[] }> {
    const d = this.data;
    if (!d) throw new UserError('choose images first');
    const prep = this.current().prep;
    const per = 3 * prep.size * prep.size;
    const x = new Float32Array(paths.length * per);
    for (const [i, p] of paths.entries()) x.set(transformImage(await d.folder.decode(p), prep, { kind: 'eval' }), i * per);
    return { x, shape: [paths.length, 3, prep.size, prep.size] };
  }

  async exportOnnx(): Promise<Uint8Array> {
    return this.exclusive('export the model', async () => {
      const r = this.run;
      if (!r || !this.model) throw new UserError('train (or import a checkpoint) first: there is no fine-tuned model yet');
      const size = r.plan.sizes.at(-1)!;
      return exportOnnx(this.requireGpu(), this.model, {
        sampleShape: [3, size, size],
        metadata: {
          'wgtrain.classes': JSON.stringify(r.plan.classes),
          'wgtrain.preprocessing': JSON.stringify({ ...r.plan.preprocessing, size }),
          'wgtrain.base_model': r.plan.model,
          'wgtrain.augment': JSON.stringify(r.plan.augment),
        },
      });
    });
  }

  checkpoint(): { bytes: Uint8Array; split: string } {
    const r = this.run;
    if (!r?.checkpoint) throw new UserError('no checkpoint yet: one is written after every epoch');
    const meta = checkpointMeta(r.checkpoint);
    return { bytes: r.checkpoint, split: serializeManifest(meta.split as SplitManifest) };
  }

  // ---- checkpoints from elsewhere -----------------------------------------------------------------

  /**
   * Adopts a checkpoint (written here or by the CLI): the model it was trained from must be loaded
   * (matched by hash; the demo is loaded automatically), and the images its split lists must be there
   * (the demo is loaded automatically when no images are). Then Resume continues it, or, if it is
   * finished, its weights are loaded for prediction and export.
   */
  async importCheckpoint(bytes: Uint8Array, origin: 'imported' | 'saved') {
    return this.exclusive('import a checkpoint', async () => {
      let meta: WgtrainMeta;
      try { meta = checkpointMeta(bytes); } catch (e) { throw new UserError((e as Error).message); }
      const plan = meta.plan as unknown as RunPlan;
      if (!plan || !plan.modelHash || !Array.isArray(plan.classes)) throw new UserError('this checkpoint has no run plan (not written by `wgtrain finetune` or this app): it cannot be resumed');
      if (plan.mode === 'features') throw new UserError('this checkpoint is from a feature-extraction run (--mode features), which the browser app does not run');
      if (!this.source || this.source.hash !== plan.modelHash) {
        const demo = await fetchBytes(DEMO_MODEL_URL).catch(() => null);
        if (demo && await sha256Hex16(demo) === plan.modelHash) {
          this.dropRun();
          await this.setModel('fashion5-source-cnn.onnx (demo)', demo, true, { demo: true, name: 'fashion5-source-cnn.onnx (demo)' });
          this.log('loaded the demo model: the checkpoint was trained from it');
        } else {
          throw new UserError(`this checkpoint was trained from '${plan.model}' (hash ${plan.modelHash})${this.source ? `, not from '${this.source.name}' (hash ${this.source.hash})` : ''}: choose that .onnx file first, then import again`);
        }
      }
      if (!this.data) {
        const files = await demoFiles();
        await this.setData(files, 'fashion5 (demo)', true, { demo: true });
        this.log('loaded the demo images for the checkpoint\'s split');
      }
      if (!meta.split) throw new UserError('the checkpoint has no split manifest: it cannot be resumed');
      let split: Split;
      try { split = await resolveSplit(meta.split as SplitManifest, this.data!.folder, 'the checkpoint\'s split'); } catch (e) {
        throw new UserError(`${(e as Error).message}${this.data!.demo ? ' (choose the folder the run was trained on)' : ''}`);
      }
      this.dropRun();
      this.split = split;
      this.perClass = 0;
      const model = this.cutModel(plan);
      const gpu = this.requireGpu();
      loadCheckpoint(gpu, bytes, model, null);
      this.run = {
        plan, split, learner: null, gate: new Gate(), status: meta.progress.done ? 'done' : 'stopped', history: [...meta.history],
        checkpoint: bytes, progress: meta.progress, eval: null, origin, pauseAtEpochEnd: this.pauseAtEpochEnd,
      };
      if (meta.progress.done && split.val.length) {
        // A finished run: show its validation result.
        const learner = new Learner(gpu, model, { numClasses: plan.classes.length, replay: false });
        const val = loaderSource(this.data!.folder, split.val, plan.preprocessing, { batch: 32, train: false, seed: plan.seed, cache: this.cache });
        try { this.run.eval = evalSummary(await learner.evaluate(val), plan.classes); } finally { learner.dispose(); }
      }
      this.emitState();
      return { state: this.state(), model: this.modelInfo(), data: this.dataInfo(), split: this.splitInfo(), resumable: !meta.progress.done };
    });
  }

  async savedRun(): Promise<SavedRunInfo | null> {
    if (!hasIndexedDb()) return null;
    const [src, ck] = await Promise.all([store.source(), store.checkpoint()]);
    if (!src || !ck) return null;
    const meta = checkpointMeta(ck.bytes);
    const plan = meta.plan as unknown as RunPlan;
    return {
      savedAt: ck.savedAt, model: src.model.name, data: src.data.demo ? 'fashion5 (demo)' : src.data.root, classes: meta.classes,
      epochsDone: meta.history.length, totalEpochs: plan.freezeEpochs + plan.epochs, done: meta.progress.done,
    };
  }

  /** Rebuilds the saved run of an earlier visit (model, images, checkpoint) from IndexedDB. */
  async restoreSaved() {
    const [src, ck] = await Promise.all([store.source(), store.checkpoint()]);
    if (!src || !ck) throw new UserError('no saved run in this browser');
    await this.exclusive('restore the saved run', async () => {
      const m = src.model;
      if (m.demo) await this.setModel(m.name, await fetchBytes(DEMO_MODEL_URL), true, m);
      else await this.setModel(m.name, new Uint8Array(await m.bytes.arrayBuffer()), false, m);
      const d = src.data;
      if (d.demo) await this.setData(await demoFiles(), 'fashion5 (demo)', true, d);
      else await this.setData(d.files, d.root, false, d);
    });
    return this.importCheckpoint(ck.bytes, 'saved');
  }

  async discardSaved(): Promise<true> {
    if (hasIndexedDb()) await store.clear();
    return true;
  }
}

function evalSummary(ev: EvalResult, classes: readonly string[]): RunState['eval'] {
  return { loss: ev.loss, accuracy: ev.accuracy, n: ev.n, confusionSvg: confusionMatrixSvg(ev.confusion, classes) };
}

/** Sorts an error into what the page shows: no WebGPU, a user error (one line), or an internal error. */
export function classify(e: unknown): { message: string; kind: 'no-webgpu' | 'user' | 'internal' } {
  const err = e as Error;
  if (err instanceof GpuError && /no WebGPU adapter|not initialised/.test(err.message)) return { kind: 'no-webgpu', message: err.message };
  if (err instanceof UserError || err instanceof DataError || err instanceof OnnxError) return { kind: 'user', message: err.message };
  return { kind: 'internal', message: err?.stack ?? String(e) };
}
