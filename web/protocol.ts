// The messages between the page (app.ts, main thread) and the training worker (worker.ts).
//
//   page → worker   { id, req }                    one Request; the worker answers once
//   worker → page   { id, ok: true, result }       or { id, ok: false, error }
//   worker → page   { event }                      unsolicited: progress, epoch records, logs, state
//
// Training runs in the worker so the page stays responsive; everything crossing the boundary is
// plain data (structured clone), with ArrayBuffers transferred where they are large.

import type { EpochRecord, Progress } from '../src/train/learner.js';
import type { Preprocessing } from '../src/data/preprocessing.js';

/** What the page shows about a loaded model. */
export interface ModelInfo {
  name: string;
  /** SHA-256 of the file, first 16 hex digits (as the CLI computes it: checkpoints refuse another model). */
  hash: string;
  bytes: number;
  demo: boolean;
  family: string;
  params: number;
  /** e.g. 'input [N, 3, 28, 28] → logits [N, 5]'. */
  io: string;
  ops: string;
  groups: number[];
  /** Class names the file carries (wgtrain exports do), if any. */
  classes: string[] | null;
  preprocessing: Preprocessing;
  /** Set when the preprocessing is a guess (the file carries none). */
  preprocessingGuessed: boolean;
}

export interface DataInfo {
  root: string;
  demo: boolean;
  classes: string[];
  /** Readable images per class. */
  counts: number[];
  skipped: { path: string; reason: string }[];
}

export interface SplitInfo {
  train: number[];
  val: number[];
  seed: number;
  valSplit: number;
  /** Images per class used (0: all). */
  perClass: number;
}

/** The user's choices for a run (the app's form). */
export interface RunSettings {
  epochs: number;
  freezeEpochs: number;
  /** fastai base_lr: the head stage trains at it, the unfrozen stage at slice(lr/2/lrMult, lr/2). */
  lr: number;
  lrMult: number;
  batch: number;
  valSplit: number;
  seed: number;
  /** Images per class to use (first in path order); 0: all. */
  perClass: number;
  unfreeze: 'all' | number;
}

export interface LrFindInfo {
  svg: string;
  suggestions: { valley: number; slide: number; minimum: number; steep: number };
  iterations: number;
  ms: number;
}

export type RunStatus = 'idle' | 'training' | 'paused' | 'stopped' | 'done';

/** Where a run stands; sent after every change. */
export interface RunState {
  status: RunStatus;
  history: EpochRecord[];
  classes: string[];
  /** The latest checkpoint's progress, if any ('unfrozen' epoch 0: the head stage is done). */
  progress: { stage: string; epoch: number; done: boolean } | null;
  /** Epochs of the whole run (head + unfrozen). */
  totalEpochs: number;
  /** Final validation result after a finished run. */
  eval: { loss: number; accuracy: number; n: number; confusionSvg: string } | null;
  /** Where the run came from: a fresh start, the saved run of the last visit, or an imported checkpoint. */
  origin: 'new' | 'saved' | 'imported' | null;
  /** The run's settings (from its plan), so a restored or imported run shows what it trains with. */
  settings: (Omit<RunSettings, 'batch' | 'perClass'> & { batch: number | 'auto' }) | null;
}

export interface Prediction {
  classes: string[];
  probs: number[];
  ms: number;
}

/** A run saved in IndexedDB by an earlier visit. */
export interface SavedRunInfo {
  savedAt: string;
  model: string;
  data: string;
  classes: string[];
  epochsDone: number;
  totalEpochs: number;
  done: boolean;
}

export interface WorkerError {
  message: string;
  /** 'no-webgpu': the browser has no usable WebGPU adapter (the page explains how to get one). */
  kind: 'no-webgpu' | 'user' | 'internal';
}

export type Request =
  | { op: 'init' }
  | { op: 'loadModel'; demo: true }
  | { op: 'loadModel'; demo?: false; name: string; bytes: ArrayBuffer }
  | { op: 'loadData'; demo: true }
  | { op: 'loadData'; demo?: false; root: string; files: [string, Blob][] }
  | { op: 'split'; valSplit: number; seed: number; perClass: number }
  | { op: 'lrFind'; settings: RunSettings; numIt: number }
  | { op: 'train'; settings: RunSettings }
  | { op: 'resume' }
  | { op: 'pause' }
  | { op: 'continue' }
  | { op: 'stop' }
  | { op: 'pauseAtEpochEnd'; on: boolean }
  | { op: 'predict'; bytes: ArrayBuffer }
  | { op: 'forward'; x: Float32Array; shape: [number, number, number, number] }
  | { op: 'preprocess'; paths: string[] }
  | { op: 'exportOnnx' }
  | { op: 'checkpoint' }
  | { op: 'importCheckpoint'; bytes: ArrayBuffer; name: string }
  | { op: 'savedRun' }
  | { op: 'restoreSaved' }
  | { op: 'discardSaved' };

/** The result type of each request. */
export interface Results {
  init: { adapter: string; features: string[] };
  loadModel: ModelInfo;
  loadData: DataInfo;
  split: SplitInfo;
  lrFind: LrFindInfo;
  train: RunState;
  resume: RunState;
  pause: RunState;
  continue: RunState;
  stop: RunState;
  pauseAtEpochEnd: boolean;
  predict: Prediction;
  forward: { logits: Float32Array; shape: number[] };
  preprocess: { x: Float32Array; shape: number[] };
  exportOnnx: { bytes: ArrayBuffer };
  checkpoint: { bytes: ArrayBuffer; split: string };
  importCheckpoint: { state: RunState; model: ModelInfo; data: DataInfo; split: SplitInfo; resumable: boolean };
  savedRun: SavedRunInfo | null;
  restoreSaved: { state: RunState; model: ModelInfo; data: DataInfo; split: SplitInfo; resumable: boolean };
  discardSaved: true;
}

export type Op = Request['op'];

export type Event =
  | { event: 'progress'; p: Progress; imgPerSec: number }
  | { event: 'epoch'; record: EpochRecord; state: RunState }
  | { event: 'state'; state: RunState }
  | { event: 'log'; level: 'info' | 'warning'; text: string };

export type Reply =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: WorkerError };
