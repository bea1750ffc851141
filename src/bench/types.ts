// The benchmark's vocabulary: what a kernel case is, and the shape of the report it produces.
// The report is the JSON that `wgtrain bench --json FILE` writes and `--compare FILE` reads back, so
// every field here is part of a file format: add fields, don't rename them (bump SCHEMA if you must).

import type { Gpu } from '../gpu/device.js';
import type { TimingMethod } from '../gpu/timing.js';
import type { Tensor } from '../gpu/tensor.js';

export const SCHEMA = 'wgtrain-bench/1';

/** The kernel families of the suite (issue: every one of these must be covered, even by --quick). */
export const FAMILIES = [
  'matmul', 'conv2d.fwd', 'conv2d.dx', 'conv2d.dw', 'pool.fwd', 'pool.bwd',
  'batchnorm.fwd', 'batchnorm.bwd', 'relu.fwd', 'relu.bwd', 'softmax-xent.fwd', 'softmax-xent.bwd', 'adam',
] as const;
export type Family = (typeof FAMILIES)[number];

/** Outcome of comparing one run's outputs with the float64 CPU reference. */
export interface Validation {
  ok: boolean;
  /** max |gpu − ref| / max |ref|: the error relative to the output's scale (Infinity for NaN/Inf outputs; null in JSON). */
  err: number;
  tol: number;
  /** What was compared (the reference runs on a slice of big problems: "n=0, k∈{0,21,42,63}"). */
  what: string;
}

/** A case set up on a device: inputs uploaded, CPU copies kept for the reference. */
export interface CaseInstance {
  /** Launches the kernel(s) once and returns the outputs (the caller disposes them). */
  run(): Tensor[];
  /** Checks the outputs of the first run against the CPU reference. */
  validate(outputs: Tensor[]): Promise<Validation>;
  /** Which kernel version / tile the launcher picked for this shape (shown in the table). */
  variant: string;
  /** The CPU copies of the inputs, by name (x, w, b, dY, A, B, …): peers are fed the same numbers. */
  inputs: Readonly<Record<string, Float32Array>>;
  dispose(): void;
}

/** One benchmark workload: a kernel family at one shape taken from a real layer. */
export interface BenchCase {
  /** Stable across runs (what --compare matches on, what --filter tests): 'conv2d.fwd/vgg16.features.2'. */
  id: string;
  family: Family;
  /** Where the shape comes from: 'VGG16 features.2 (×1)'. */
  source: string;
  /** Human-readable shape: 'x[1,64,56,56] w[64,64,3,3] s1 p1'. */
  shape: string;
  /** Floating-point operations of one launch (2 per multiply-add); 0 for data-movement kernels. */
  flops: number;
  /** Minimum bytes one launch must move: each input read once, each output written once. */
  bytes: number;
  setup(gpu: Gpu): CaseInstance;
}

/** The two measured ceilings of the roofline. */
export interface Roofline {
  /** Best GFLOP/s of the tuned matmul probe (the attainable compute peak on this adapter). */
  peakGflops: number;
  /** e.g. 'matmul 1024³ v2 16×4 (best of 3 tiles)'. */
  peakProbe: string;
  /** GB/s (bytes read + written) of a vec4 copy kernel. */
  copyGBs: number;
  copyProbe: string;
}

export type { TimingMethod };

export interface KernelResult {
  id: string;
  family: Family;
  source: string;
  shape: string;
  variant: string;
  /** Kernels (name.version) one launch dispatched, as the runtime saw them: what actually ran. */
  kernels: string[];
  flops: number;
  bytes: number;
  validation: Validation;
  /** Median milliseconds per launch; null when the case was not timed (failed validation or error). */
  ms: number | null;
  /** Fastest sample, ms per launch. */
  msMin: number | null;
  /** Median of the wall-clock (queue-drain) samples, whatever `ms` was measured with. */
  wallMs: number | null;
  samples: number;
  /** Launches per sample (small kernels are repeated so a sample is long enough to time). */
  reps: number;
  gflops: number | null;
  gbs: number | null;
  /** Achieved / attainable (min(peak, intensity × bandwidth)), in percent. */
  roofPct: number | null;
  bound: 'compute' | 'memory';
  /** Autotuned classes the launch used: the winner, the heuristic default and every candidate's ms (null: rejected). */
  tuning?: TuneChoice[];
  error?: string;
}

export interface TuneChoice { key: string; pick: string; default: string; ms: Record<string, number | null> }

export interface E2eResult {
  /** 'e2e/resnet34@64/b4/frozen' */
  id: string;
  model: string;
  size: number;
  batch: number;
  frozen: boolean;
  msPerStep: number | null;
  imgPerSec: number | null;
  /** Peak bytes of GPU buffers held by the pool during the case (weights included), MiB. */
  peakMiB: number | null;
  /** Dispatches one (replayed) step launches. */
  dispatches: number | null;
  steps: number;
  error?: string;
}

export interface BenchReport {
  schema: typeof SCHEMA;
  wgtrainVersion: string;
  date: string;
  adapter: string;
  features: string[];
  quick: boolean;
  timing: TimingMethod;
  /** Storage precision of the matmul/conv cases (absent in reports from before f16: f32). */
  precision?: 'f32' | 'f16';
  /** The autotuner's mode during the run (absent in reports from before autotuning). */
  tuning?: 'auto' | 'cached' | 'off';
  roofline: Roofline;
  kernels: KernelResult[];
  e2e: E2eResult[];
  /** Seconds the whole run took. */
  seconds: number;
}
