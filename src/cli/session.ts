// What the training commands share: loading a model (ONNX file or checkpoint) with its
// preprocessing, opening a dataset with its split, data sources for the Learner, output files.

import { existsSync, readFileSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getGpu, type Gpu } from '../gpu/device.js';
import { TUNE_MODES, type TuneMode } from '../gpu/tune.js';
import { readModel } from '../onnx/reader.js';
import { importModel, type OnnxModule } from '../onnx/import.js';
import { checkPreprocessing, defaultPreprocessing, type Preprocessing } from '../data/preprocessing.js';
import { fileTuneStore, openImageFolder, loadSplitManifest, saveSplitManifest, writeFileAtomic } from '../data/node.js';
import { resolveSplit, stratifiedSplit, type Split } from '../data/split.js';
import type { ImageFolder } from '../data/folder.js';
import type { TrainAugment } from '../data/transforms.js';
import { UserError } from './errors.js';
import { parseLr } from '../optim/lr.js';

/** The repository/package root (two levels above dist/ or src/cli/). */
export function packageRoot(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) { if (existsSync(join(d, 'package.json'))) return d; d = dirname(d); }
  return process.cwd();
}

/**
 * The GPU for a command, with the autotuner set up (gpu/tune.ts): mode from --autotune, else
 * WGTRAIN_AUTOTUNE, else `dflt` (training commands measure new shape classes; one-shot commands
 * only use what is already measured), and the table in the user's cache (data/node.ts defaultTuneFile).
 */
export async function openGpu(flags: { autotune?: string }, dflt: TuneMode = 'auto'): Promise<Gpu> {
  const mode = flags.autotune ?? process.env.WGTRAIN_AUTOTUNE ?? dflt;
  if (!(TUNE_MODES as readonly string[]).includes(mode)) throw new UserError(`--autotune must be one of ${TUNE_MODES.join(', ')}, got '${mode}'`);
  const gpu = await getGpu();
  gpu.tuner.mode = mode as TuneMode;
  if (mode !== 'off') await gpu.tuner.attach(fileTuneStore());
  return gpu;
}

/** Learner.onTune for the status line: the first use of a shape class on this adapter measures its kernel variants. */
export function tuneProgress(gpu: Gpu, status: { update(s: string): void; log(s: string): void }) {
  return (key: string, i: number, total: number) => {
    if (i === 0) status.log(`autotuning ${total} kernel shape class${total === 1 ? '' : 'es'} new to this adapter (once; cached in ${gpu.tuner.storeWhere ?? 'memory'})`);
    status.update(`autotuning ${bar(i, total)} ${key}`);
  };
}

export const DEMO_MODEL = 'weights/fashion5-source-cnn.onnx';
export const DEMO_DATA = 'examples/fashion5';

export function demoModelPath(): string { return join(packageRoot(), DEMO_MODEL); }
export function demoDataPath(): string { return join(packageRoot(), DEMO_DATA); }

export interface LoadedModel {
  model: OnnxModule;
  path: string;
  /** SHA-256 of the file (first 16 hex digits): checkpoints refuse another model. */
  hash: string;
  preprocessing: Preprocessing;
  /** Class names the file carries (wgtrain exports do), if any. */
  classes: string[] | null;
  /** Training augmentation the model's metadata asks for (wgtrain.augment), if any. */
  augment: Partial<TrainAugment> | null;
}

/** Reads an ONNX model for training; preprocessing from its metadata, else the family default. */
export async function loadOnnx(gpu: Gpu, path: string, warn: (s: string) => void): Promise<LoadedModel> {
  if (!existsSync(path)) throw new UserError(`model file '${path}' does not exist: pass --model PATH.onnx (or leave it out for the demo model)`);
  if (statSync(path).isDirectory()) throw new UserError(`'${path}' is a folder: pass the .onnx file inside it`);
  const bytes = readFileSync(path);
  const hash = createHash('sha256').update(bytes).digest('hex').slice(0, 16);
  const onnx = await readModel(path);
  let model = importModel(gpu, onnx);
  if (model.family !== 'other') {
    // Recognised torchvision graphs get torchvision's parameter names.
    model.dispose();
    model = importModel(gpu, onnx, { names: 'torchvision' });
  }
  const meta = onnx.metadata;
  let preprocessing: Preprocessing;
  if (meta['wgtrain.preprocessing']) {
    try { preprocessing = checkPreprocessing(JSON.parse(meta['wgtrain.preprocessing'])); } catch { throw new UserError(`'${path}' has unreadable wgtrain.preprocessing metadata`); }
  } else {
    const dims = model.graph.inputs[0]!.shape;
    const h = dims && typeof dims[2] === 'number' ? dims[2] : 224;
    preprocessing = defaultPreprocessing(h);
    if (model.family === 'other') warn(`'${path}' carries no preprocessing: using ${h}×${h}, ImageNet mean/std (torchvision's)`);
  }
  let classes: string[] | null = null;
  if (meta['wgtrain.classes']) { try { classes = JSON.parse(meta['wgtrain.classes']); } catch { classes = null; } }
  let augment: Partial<TrainAugment> | null = null;
  if (meta['wgtrain.augment']) { try { augment = JSON.parse(meta['wgtrain.augment']); } catch { augment = null; } }
  return { model, path: resolve(path), hash, preprocessing, classes, augment };
}

export interface DataSetup {
  dataset: ImageFolder;
  split: Split;
  manifestPath: string;
}

/** Opens an image folder and makes (or reloads) the stratified split; the manifest is saved in `out`. */
export async function openData(dataDir: string, out: string, o: { valSplit: number; seed: number; manifest?: string | null }, warn: (s: string) => void): Promise<DataSetup> {
  const dataset = await openImageFolder(dataDir, { onWarning: warn });
  const manifestPath = join(out, 'split.json');
  let split: Split;
  if (o.manifest) {
    split = await resolveSplit(await loadSplitManifest(o.manifest), dataset, o.manifest);
    if (split.unlisted?.length) warn(`${split.unlisted.length} images were added to the dataset since the split was made; they are not used`);
  } else {
    split = stratifiedSplit(dataset.items, { valFraction: o.valSplit, seed: o.seed, classes: dataset.classes });
  }
  await saveSplitManifest(manifestPath, split.manifest);
  return { dataset, split, manifestPath };
}

export { loaderSource, progressiveSource } from '../train/sources.js';

/** The training recipe flags `finetune` and `explain` share. */
export interface RecipeFlags {
  model?: string; data?: string; epochs?: string; freezeEpochs?: string; lr?: string;
  unfreeze?: string; batch?: string; seed?: string;
}

export interface Recipe {
  /** No --model and no --data (and not a resume): the demo's recipe applies. */
  isDemo: boolean;
  epochs: number; freezeEpochs: number;
  /** fastai base_lr and lr_mult: head stage slice(baseLr), then slice(baseLr/2/lrMult, baseLr/2). */
  baseLr: number; lrMult: number;
  unfreeze: 'all' | number; batch: number | 'auto'; seed: number;
}

/**
 * Resolves the recipe flags, over `prev` (a resumed run's plan) over the defaults. The demo's
 * recipe: 2 head epochs, 8 unfrozen, base LR 1e-2 (a small from-scratch model likes a larger LR than
 * fastai's 2e-3). `--lr X` is fastai's base_lr; `--lr A:B` is the unfrozen stage's range (head at 2B).
 */
export function resolveRecipe(flags: RecipeFlags, prev?: Omit<Recipe, 'isDemo'>): Recipe {
  const isDemo = !flags.model && !flags.data && !prev;
  let baseLr = prev?.baseLr ?? (isDemo ? 1e-2 : 2e-3), lrMult = prev?.lrMult ?? 100;
  if (flags.lr) {
    let lr;
    try { lr = parseLr(flags.lr); } catch (e) { throw new UserError((e as Error).message); }
    if (typeof lr === 'number') baseLr = lr;
    else if (Array.isArray(lr)) throw new UserError('--lr takes a number or a range A:B');
    else {
      const r = lr as { min?: number; max: number };
      baseLr = 2 * r.max;
      lrMult = r.min !== undefined ? r.max / r.min : 10;
    }
  }
  return {
    isDemo, baseLr, lrMult,
    epochs: positiveInt('--epochs', flags.epochs, prev?.epochs ?? (isDemo ? 8 : 3), 0),
    freezeEpochs: positiveInt('--freeze-epochs', flags.freezeEpochs, prev?.freezeEpochs ?? (isDemo ? 2 : 1), 0),
    unfreeze: flags.unfreeze === undefined ? (prev?.unfreeze ?? 'all') : flags.unfreeze === 'all' ? 'all' : positiveInt('--unfreeze', flags.unfreeze, 1),
    batch: flags.batch === undefined ? (prev?.batch ?? 32) : flags.batch === 'auto' ? 'auto' : positiveInt('--batch', flags.batch, 32),
    seed: positiveInt('--seed', flags.seed, prev?.seed ?? 42, 0),
  };
}

export async function writeJson(file: string, v: unknown) { await writeFileAtomic(file, `${JSON.stringify(v, null, 2)}\n`); }

/** Parses `--size 64,128` into sizes. */
export function parseSizes(s: string | undefined, dflt: number): number[] {
  if (!s) return [dflt];
  const v = s.split(',').map((t) => Number(t.trim()));
  if (!v.length || v.some((x) => !Number.isInteger(x) || x < 8 || x > 1024)) throw new UserError(`--size '${s}' must be one or more image sizes in pixels, e.g. 224 or 64,128`);
  return v;
}

export function positiveInt(name: string, s: string | undefined, dflt: number, min = 1): number {
  if (s === undefined) return dflt;
  const v = Number(s);
  if (!Number.isInteger(v) || v < min) throw new UserError(`${name} must be an integer ≥ ${min}, got '${s}'`);
  return v;
}

export function fraction(name: string, s: string | undefined, dflt: number): number {
  if (s === undefined) return dflt;
  const v = Number(s);
  if (!(v >= 0 && v < 1)) throw new UserError(`${name} must be a number in [0, 1), got '${s}'`);
  return v;
}

/** One line of progress on stderr (rewritten in place on a terminal). */
export class StatusLine {
  private last = 0;
  private readonly tty = process.stderr.isTTY === true;
  constructor(private readonly quiet = false) {}
  update(s: string) {
    if (this.quiet || !this.tty) return;
    const now = performance.now();
    if (now - this.last < 100) return;
    this.last = now;
    process.stderr.write(`\r\x1b[K${s}`);
  }
  log(s: string) {
    if (this.quiet) return;
    process.stderr.write(`${this.tty ? '\r\x1b[K' : ''}${s}\n`);
  }
}

/** A text progress bar: [=====>    ] 12/40. */
export function bar(done: number, total: number, width = 24): string {
  const f = total ? Math.min(1, done / total) : 0;
  const n = Math.round(f * width);
  return `[${'='.repeat(Math.max(0, n - 1))}${n ? '>' : ''}${' '.repeat(width - n)}] ${done}/${total}`;
}
