// Traces of training steps: every kernel dispatch with its layer, shapes, FLOPs, bytes and GPU time,
// nested under the step's phases, written as Chrome trace-event JSON (open it in Perfetto or
// chrome://tracing).
//
//   stage ─▶ step ─▶ data | forward | backward | optimizer ─▶ one slice per dispatch
//
// How each dispatch finds its layer (no cooperation needed from the kernels):
//   forward    autograd ops launch their kernels synchronously and report themselves to `traceOps`
//              right AFTER launching, so the dispatches since the previous report belong to the op
//              being reported. The op's Parameter inputs name the layer (`layer1.0.conv1.weight` →
//              `layer1.0.conv1`); an op without parameters (ReLU, max-pool, residual add) belongs to
//              the parameterised layer before it, the loss to `loss`.
//   backward   each recorded op's tape node gets its backward closure wrapped: dispatches inside
//              belong to that op (with which inputs needed a gradient); dispatches between closures
//              are gradient sums of a value with several consumers (a residual branch), the one
//              before the first closure seeds dL/dL = 1.
//   optimizer  the optimizer updates its trainable parameters in group order; each update binds the
//              parameter first, so the bound bytes say when one parameter's dispatches end.
//   replay     a replayed step runs no JavaScript: its dispatches are matched by position to the
//              captured step they replay (recorded while `gpu.capturing`).
//
// Time: kernels are laid end to end on one track with their GPU time (timestamp queries, where the
// adapter has them; Dawn quantises these, 65.5 µs steps on lavapipe), the data phase with its wall
// time. A replayed dispatch is not timed by the adapter: it shows its captured twin's time, marked
// `estimated`. Without timestamps every kernel is drawn 1 µs long and `gpuMs` is null.
//
// Use: `const trace = new TraceRecorder(gpu, { stepsPerStage: 3 }); learner.opts.observer =
// trace.attach(learner);` … train … `await trace.finish(); JSON.stringify(trace.toChromeTrace())`.
// The Learner reports steps and phases through `StepObserver` (LearnerOptions.observer);
// `tracedTrainStep` runs one step the same way for `wgtrain explain` and the tests.

import type { DispatchInfo, Gpu } from '../gpu/device.js';
import { Tensor } from '../gpu/tensor.js';
import * as ops from '../autograd/ops.js';
import { backward, traceOps, type OpTrace, type Variable } from '../autograd/variable.js';
import { convFlops, convGeometry, type Conv2dOptions } from '../kernels/conv2d.js';
import { labelsTensor } from '../kernels/softmax.js';
import { Parameter, type Module } from '../nn/module.js';
import type { Optimizer } from '../optim/optimizer.js';

export type StepPhase = 'data' | 'forward' | 'backward' | 'optimizer';
export const STEP_PHASES: readonly StepPhase[] = ['data', 'forward', 'backward', 'optimizer'];

/** What a step is (all optional: a step begun by its first phase gets the recorder's defaults). */
export interface StepInfo {
  stage?: string;
  epoch?: number;
  step?: number;
  /** Milliseconds the training loop waited for this batch (the data loader). */
  waitMs?: number;
}

/** How the Learner reports a training step: its start, then each phase wrapped around its work. */
export interface StepObserver {
  beginStep(info: StepInfo): void;
  /** Runs fn (the phase's work) and returns its result. */
  phase<T>(phase: StepPhase, fn: () => T): T;
}

/** What a trace needs to see (a Learner has all three). */
export interface TraceTarget { readonly gpu: Gpu; readonly model: Module; readonly optimizer: Optimizer }

export interface TraceOptions {
  /** Steps recorded per stage (default: all). Later steps run untraced at no cost. */
  stepsPerStage?: number;
  /** Per-dispatch GPU time from timestamp queries, where the adapter has them (default true). */
  timing?: boolean;
  /** Stage of steps begun without one (e.g. 'lr-find'). Default 'train'. */
  stage?: string;
}

/** One dispatch as the trace records it. */
export interface TracedKernel {
  /** Kernel name with version, e.g. 'conv2d.fwd.v2'. */
  name: string;
  phase: StepPhase;
  /** Layer it ran for (`layer1.0.conv1`, `loss`, `(input)`). */
  layer: string;
  /** Autograd op ('conv2d', 'relu', …), 'gradSum' / 'seed' in the backward, 'adam' / 'sgd' in the optimizer. */
  op: string;
  /** Parameters the op reads (forward, backward) or updates (optimizer). */
  params: string[];
  /** The op's input shapes and output shape (optimizer: the parameter's). */
  inputs: number[][];
  output: number[];
  workgroups: [number, number, number];
  /** Useful floating-point operations (2 per multiply-add) of convolutions and matmuls; 0 elsewhere. */
  flops: number;
  /** Bytes of the storage ranges the dispatch binds: an upper bound on its traffic (pool buffers round up). */
  bytes: number;
  /** GPU time (ms), or null when not timed. */
  gpuMs: number | null;
  /** gpuMs was copied from the captured step this replay repeats. */
  estimated: boolean;
  replayed: boolean;
  /** Backward: which of the op's inputs needed a gradient. */
  needs?: boolean[];
  /** Optimizer: the parameter's group and its LR at this step. */
  group?: number;
  lr?: number;
}

export interface TracedPhase { phase: StepPhase; wallMs: number; kernels: TracedKernel[] }

/** A layer whose parameters are all frozen in a step: what its backward and update did not launch. */
export interface FrozenLayer { layer: string; params: string[]; skipped: string }

export interface TracedStep {
  index: number;
  stage: string;
  epoch?: number;
  step?: number;
  waitMs: number;
  /** Shape of the forward's input ([N, C, H, W]). */
  input: number[] | null;
  phases: TracedPhase[];
  frozen: FrozenLayer[];
  trainableParams: number;
  frozenParams: number;
  /** This step captured the training step that later steps replay. */
  captured: boolean;
  replayed: boolean;
}

// ---- internal records -----------------------------------------------------------------------

interface OpRec {
  index: number;
  op: string;
  layer: string;
  params: string[];
  frozen: boolean;
  inputs: number[][];
  output: number[];
  /** The op's output Variable while the step runs (for the backward closure); dropped after. */
  out: Variable | null;
  /** Useful FLOPs of one pass (forward; each of dX, dW), when the op is a conv or a matmul. */
  passFlops: number;
  /** Bias-gradient FLOPs (the reduction Σ dY), for conv/linear with a bias. */
  biasFlops: number;
}

interface KernelRec extends TracedKernel {
  /** Op that launched it (null: data, optimizer, seed). */
  opRef: OpRec | null;
  /** The captured dispatch a replay repeats. */
  twin: KernelRec | null;
}

type LivePhase = TracedPhase & { kernels: KernelRec[] };
type LiveStep = Omit<TracedStep, 'phases'> & { phases: LivePhase[] };

interface OptSlot { name: string; layer: string; group: number; lr: number; shape: number[]; bytesLeft: number }

/** Layer name of a parameter: its state_dict name without the trailing weight/bias. */
export function layerOfParam(name: string): string {
  return name.replace(/[._](weight|bias)$/, '') || name;
}

export class TraceRecorder implements StepObserver {
  readonly steps: TracedStep[] = [];
  /** How GPU times were obtained: 'gpu-timestamp', or why not. */
  timing: 'gpu-timestamp' | 'not available' | 'off' | 'mismatch' = 'off';

  /** The model and optimizer whose steps are traced (`attach`). */
  target: TraceTarget | null = null;
  private readonly prevOnDispatch: ((d: DispatchInfo) => void) | null;
  private cur: LiveStep | null = null;
  private stepOpen = false;
  private fresh = false;
  private curPhase: LivePhase | null = null;
  private ops: OpRec[] = [];
  private pendingFwd: KernelRec[] = [];
  private lastLayer = '(input)';
  private bwOp: OpRec | null = null;
  private bwNeeds: boolean[] | null = null;
  private lastBwOp: OpRec | null = null;
  private optQueue: OptSlot[] = [];
  private captureOf: KernelRec[] = [];
  private capture: KernelRec[] | null = null;
  /** The step that captured `capture` (its input shape and frozen layers hold for its replays). */
  private captureStep: LiveStep | null = null;
  private replayIndex = 0;
  private paramNames = new Map<Parameter, string>();
  private readonly perStage = new Map<string, number>();
  /** Every dispatch seen while we had timing on, in order: its record (null: not part of a traced step). */
  private timed: { rec: KernelRec | null; name: string; replayed: boolean }[] = [];
  private ownsTiming = false;
  private everTimed = false;
  private finished = false;

  constructor(readonly gpu: Gpu, readonly opts: TraceOptions = {}) {
    this.prevOnDispatch = this.gpu.onDispatch;
    this.gpu.onDispatch = (d) => { this.prevOnDispatch?.(d); this.onDispatch(d); };
    if (opts.timing === false) this.timing = 'off';
    else this.timing = this.gpu.hasTimestamps ? 'gpu-timestamp' : 'not available';
  }

  /** Traces the steps of this model and optimizer (a Learner) from now on; returns this. */
  attach(target: TraceTarget): this {
    if (target.gpu !== this.gpu) throw new Error('TraceRecorder.attach: the model lives on another device');
    this.target = target;
    return this;
  }

  // ---- the observer interface ---------------------------------------------------------------

  beginStep(info: StepInfo = {}) {
    this.closeStep();
    const stage = info.stage ?? this.opts.stage ?? 'train';
    const n = (this.perStage.get(stage) ?? 0) + 1;
    this.perStage.set(stage, n);
    this.stepOpen = true;
    this.fresh = true;
    const record = n <= (this.opts.stepsPerStage ?? Infinity) && !this.finished;
    const target = this.target;
    if (record && !target) throw new Error('TraceRecorder: attach(learner) before tracing steps');
    this.setTiming(record);
    if (!record) return;
    // Names and groups of parameters (re-read every step: a new head or re-grouping changes them).
    const named = target!.model.namedParameters();
    this.paramNames = new Map(named.map(([n, p]) => [p, n]));
    const params = named.map(([, p]) => p);
    const trainable = params.filter((p) => p.trainable).reduce((s, p) => s + p.size, 0);
    this.cur = {
      index: this.steps.length, stage, epoch: info.epoch, step: info.step ?? n, waitMs: info.waitMs ?? 0, input: null,
      phases: [], frozen: [], trainableParams: trainable, frozenParams: params.reduce((s, p) => s + p.size, 0) - trainable,
      captured: false, replayed: false,
    };
    this.steps.push(this.cur);
    this.ops = []; this.pendingFwd = []; this.lastLayer = '(input)'; this.lastBwOp = null; this.captureOf = []; this.replayIndex = 0;
  }

  phase<T>(phase: StepPhase, fn: () => T): T {
    // A step that reports no beginStep (lr-find's loop) starts with its data phase.
    if (!this.stepOpen || (phase === 'data' && !this.fresh)) this.beginStep({});
    this.fresh = false;
    const step = this.cur;
    if (!step) return fn();
    const rec: LivePhase = { phase, wallMs: 0, kernels: [] };
    step.phases.push(rec);
    this.curPhase = rec;
    const t0 = performance.now();
    try {
      switch (phase) {
        case 'forward': return traceOps((t) => this.onOp(t), fn);
        case 'optimizer': this.optQueue = this.optimizerSlots(); return fn();
        default: return fn();
      }
    } finally {
      rec.wallMs = performance.now() - t0;
      this.curPhase = null;
      if (phase === 'forward') this.endForward();
      if (phase === 'backward') { this.bwOp = null; this.lastBwOp = null; }
    }
  }

  /**
   * Ends the trace: the last step is closed, GPU times are collected, the dispatch observer and the
   * timing state are restored. Call once, after the last traced step's results were read back.
   */
  async finish(): Promise<void> {
    if (this.finished) return;
    this.closeStep();
    this.finished = true;
    this.setTiming(false);
    this.gpu.onDispatch = this.prevOnDispatch;
    if (this.everTimed) this.assignTimes(await this.gpu.takeTimings());
    for (const s of this.steps) {
      for (const p of s.phases) {
        for (const k of p.kernels as KernelRec[]) {
          if (k.gpuMs === null && k.twin && k.twin.gpuMs !== null) { k.gpuMs = k.twin.gpuMs; k.estimated = true; }
        }
      }
    }
  }

  // ---- dispatches ------------------------------------------------------------------------------

  private onDispatch(d: DispatchInfo) {
    let rec: KernelRec | null = null;
    const step = this.cur;
    if (step && this.curPhase) rec = this.attribute(d, this.curPhase.phase);
    else if (step && d.replayed) rec = this.fromCapture(d);
    if (rec) {
      let ph = this.curPhase;
      if (!ph) {
        // A replay runs outside the phase wrappers: its dispatches join their twin's phase.
        ph = step!.phases.at(-1) ?? null;
        if (!ph || ph.phase !== rec.phase) { ph = { phase: rec.phase, wallMs: 0, kernels: [] }; step!.phases.push(ph); }
      }
      ph.kernels.push(rec);
      if (d.replayed) step!.replayed = true;
      else if (this.gpu.capturing) { this.captureOf.push(rec); step!.captured = true; }
    } else if (!step && this.gpu.capturing) {
      this.capture = null; // a capture we did not see: its replays cannot be matched
    }
    if (this.ownsTiming && this.gpu.timing) this.timed.push({ rec, name: d.name, replayed: d.replayed });
  }

  private blank(d: DispatchInfo, phase: StepPhase): KernelRec {
    return {
      name: d.name, phase, layer: '', op: '', params: [], inputs: [], output: [],
      workgroups: [d.workgroups[0], d.workgroups[1], d.workgroups[2]], flops: 0,
      bytes: d.bindingBytes.reduce((a, b) => a + b, 0), gpuMs: null, estimated: false, replayed: d.replayed,
      opRef: null, twin: null,
    };
  }

  private attribute(d: DispatchInfo, phase: StepPhase): KernelRec {
    const k = this.blank(d, phase);
    switch (phase) {
      case 'data':
        k.layer = '(data)'; k.op = 'upload';
        break;
      case 'forward':
        this.pendingFwd.push(k); // the op reports itself after its kernels ran (onOp)
        break;
      case 'backward': {
        const op = this.bwOp ?? this.lastBwOp;
        if (op) {
          this.fromOp(k, op);
          if (this.bwOp) k.needs = [...(this.bwNeeds ?? [])];
          else k.op = 'gradSum'; // dL/dv summed over v's consumers (a residual branch and its block)
        } else { k.layer = 'loss'; k.op = 'seed'; k.output = [1]; }
        break;
      }
      case 'optimizer': {
        const slot = this.optQueue[0];
        if (slot) {
          k.layer = slot.layer; k.params = [slot.name]; k.inputs = [slot.shape]; k.output = slot.shape;
          k.group = slot.group; k.lr = slot.lr;
          // NOTE: an update binds its parameter (or a window of it) first; the windows add up to the parameter.
          slot.bytesLeft -= d.bindingBytes[0] ?? slot.bytesLeft;
          if (slot.bytesLeft <= 0) this.optQueue.shift();
        } else k.layer = '(optimizer)';
        k.op = this.target!.optimizer.kind === 'sgd' ? 'sgd' : 'adam';
        break;
      }
      default: phase satisfies never;
    }
    return k;
  }

  private fromOp(k: KernelRec, op: OpRec) {
    k.opRef = op; k.layer = op.layer; k.op = op.op; k.params = op.params; k.inputs = op.inputs; k.output = op.output;
  }

  private fromCapture(d: DispatchInfo): KernelRec | null {
    const twin = this.capture?.[this.replayIndex++];
    const k = this.blank(d, twin?.phase ?? 'forward');
    if (!twin || twin.name !== d.name) {
      this.capture = null;
      k.layer = '(replay)'; k.op = '?';
      return k;
    }
    Object.assign(k, {
      layer: twin.layer, op: twin.op, params: twin.params, inputs: twin.inputs, output: twin.output,
      bytes: twin.bytes, needs: twin.needs, group: twin.group, opRef: twin.opRef, twin,
    });
    // The optimizer's LR changes every step; the replay rewrote it into the same dispatch.
    if (twin.group !== undefined) k.lr = this.target!.optimizer.groups[twin.group]?.lr;
    return k;
  }

  // ---- ops ---------------------------------------------------------------------------------

  private onOp(t: OpTrace) {
    const params: string[] = [];
    let trainable = false;
    for (const v of t.inputs) {
      if (v instanceof Parameter) { params.push(this.paramNames.get(v) ?? v.name); trainable ||= v.trainable; }
    }
    const layer = params.length ? layerOfParam(params[0]!) : t.op === 'crossEntropy' ? 'loss' : this.lastLayer;
    if (params.length) this.lastLayer = layer;
    const op: OpRec = {
      index: this.ops.length, op: t.op, layer, params, frozen: params.length > 0 && !trainable,
      inputs: t.inputs.map((v) => [...v.shape]), output: [...t.output.shape], out: t.output, passFlops: 0, biasFlops: 0,
    };
    if (this.cur && !this.cur.input && t.inputs[0]) this.cur.input = [...t.inputs[0].shape];
    setFlops(op, t);
    this.ops.push(op);
    for (const k of this.pendingFwd) this.fromOp(k, op);
    this.pendingFwd = [];
  }

  /** After the forward: wrap each recorded op's backward closure, note the frozen layers. */
  private endForward() {
    for (const k of this.pendingFwd) { k.layer = this.lastLayer; k.op = '?'; }
    this.pendingFwd = [];
    for (const op of this.ops) {
      const node = op.out?.node;
      if (!node) continue;
      const inner = node.backward;
      node.backward = (dOut, needs) => {
        this.bwOp = op; this.bwNeeds = [...needs];
        try { return inner(dOut, needs); } finally { this.lastBwOp = op; this.bwOp = null; }
      };
    }
    const frozen = new Map<string, FrozenLayer>();
    for (const op of this.ops) {
      if (!op.frozen || frozen.has(op.layer)) continue;
      const onTape = op.out?.node != null;
      frozen.set(op.layer, {
        layer: op.layer, params: op.params,
        skipped: onTape ? 'weight and bias gradients, optimizer update' : 'whole backward (nothing below needs a gradient), optimizer update',
      });
    }
    if (this.cur) this.cur.frozen = [...frozen.values()];
  }

  private optimizerSlots(): OptSlot[] {
    return this.target!.optimizer.groups.flatMap((g, gi) => g.params
      .filter(([, p]) => p.trainable && p.grad)
      .map(([name, p]) => ({ name, layer: layerOfParam(name), group: gi, lr: g.lr, shape: [...p.shape], bytesLeft: p.size * 4 })));
  }

  private closeStep() {
    const step = this.cur;
    if (step) {
      if (this.captureOf.length) { this.capture = this.captureOf; this.captureStep = step; }
      if (step.replayed && this.captureStep && this.captureStep !== step) {
        step.input ??= this.captureStep.input;
        if (!step.frozen.length) step.frozen = this.captureStep.frozen;
      }
      // FLOPs of a pass are split evenly among the dispatches that computed it (stride phases, batch chunks).
      const byPass = new Map<string, KernelRec[]>();
      for (const p of step.phases) {
        for (const k of p.kernels) {
          const pass = k.opRef ? passOf(k) : null;
          if (!pass) continue;
          const key = `${k.opRef!.index}/${p.phase}/${pass}`;
          byPass.set(key, [...(byPass.get(key) ?? []), k]);
        }
      }
      for (const [key, ks] of byPass) {
        const op = ks[0]!.opRef!, pass = key.split('/')[2]!;
        const total = pass === 'bias' ? op.biasFlops : pass === 'dxdw' ? op.passFlops * ((ks[0]!.needs?.[0] ? 1 : 0) + (ks[0]!.needs?.[1] ? 1 : 0)) : op.passFlops;
        for (const k of ks) k.flops = total / ks.length;
      }
      for (const op of this.ops) op.out = null; // release the step's Variables
    }
    this.cur = null;
    this.curPhase = null;
    this.stepOpen = false;
  }

  // ---- GPU time --------------------------------------------------------------------------------

  private setTiming(on: boolean) {
    if (this.timing !== 'gpu-timestamp' && on) return;
    if (on && !this.ownsTiming) {
      if (this.gpu.timing) return; // someone else times this device: leave their timings alone
      this.ownsTiming = this.gpu.setTiming(true);
      this.everTimed ||= this.ownsTiming;
    } else if (!on && this.ownsTiming) {
      this.gpu.setTiming(false);
      this.ownsTiming = false;
    }
  }

  /** GPU times arrive in dispatch order; replays are timed only if the device times them. */
  private assignTimes(times: { name: string; ms: number }[]) {
    let q = this.timed;
    if (times.length !== q.length) q = q.filter((e) => !e.replayed);
    if (times.length !== q.length || q.some((e, i) => e.name !== times[i]!.name)) { this.timing = 'mismatch'; return; }
    q.forEach((e, i) => { if (e.rec) e.rec.gpuMs = times[i]!.ms; });
    this.timed = [];
  }

  // ---- output ----------------------------------------------------------------------------------

  /** Dispatches recorded so far (all steps). */
  get dispatches(): number { return this.steps.reduce((a, s) => a + s.phases.reduce((b, p) => b + p.kernels.length, 0), 0); }

  /** The trace as Chrome trace-event JSON (an object; JSON.stringify it to write the file). */
  toChromeTrace(meta: Record<string, unknown> = {}): ChromeTrace {
    return chromeTrace(this.steps, { adapter: this.gpu.adapterName, timing: this.timing, ...meta });
  }
}

// ---- FLOPs -------------------------------------------------------------------------------------

function setFlops(op: OpRec, t: OpTrace) {
  if (t.op === 'conv2d') {
    const g = convGeometry(t.inputs[0]!.shape, t.inputs[1]!.shape, t.attrs as Conv2dOptions);
    op.passFlops = convFlops(g);
    op.biasFlops = t.inputs[2] ? g.N * g.K * g.P * g.Q : 0;
  } else if (t.op === 'linear') {
    const [N, C] = t.inputs[0]!.shape as [number, number], K = t.inputs[1]!.shape[0]!;
    op.passFlops = 2 * N * C * K;
    op.biasFlops = t.inputs[2] ? N * K : 0;
  }
}

/** Which pass of a conv/linear a kernel computes ('fwd', 'dx', 'dw', 'dxdw', 'bias'), or null. */
function passOf(k: KernelRec): string | null {
  const op = k.opRef!.op;
  if (op === 'conv2d') {
    if (k.name.startsWith('conv2d.fwd')) return 'fwd';
    if (k.name.startsWith('conv2d.dx')) return 'dx';
    if (k.name.startsWith('conv2d.dw.sum')) return null;
    if (k.name.startsWith('conv2d.dw')) return 'dw';
    if (k.name.startsWith('conv2d.db')) return 'bias';
    return null;
  }
  if (op === 'linear') {
    // NOTE: dX = dY·W and dW = dYᵀ·X are both matmuls of the forward's size; the trace cannot tell
    // them apart by name, so the backward's matmuls share both passes' FLOPs.
    if (k.name.startsWith('matmul')) return k.phase === 'forward' ? 'fwd' : 'dxdw';
    if (k.name.startsWith('sumTo')) return 'bias';
  }
  return null;
}

// ---- Chrome trace-event format -------------------------------------------------------------------

/** A trace-event: complete slices ('X'), instants ('i') and metadata ('M'). Times in µs. */
export interface TraceEvent {
  name: string;
  cat?: string;
  ph: 'X' | 'i' | 'M';
  ts: number;
  dur?: number;
  pid: number;
  tid: number;
  s?: 't';
  args?: Record<string, unknown>;
}

export interface ChromeTrace { traceEvents: TraceEvent[]; displayTimeUnit: 'ms'; otherData: Record<string, unknown> }

const PID = 1, TID = 1;
const DEPTH: Record<string, number> = { stage: 0, step: 1, phase: 2, kernel: 3, frozen: 4 };
/** Duration drawn for a kernel without a GPU time (ns). */
const UNTIMED_NS = 1000;

/**
 * Lays the steps out on one track: kernels end to end (GPU time), phases around their kernels
 * (the data phase: its wall time), steps around their phases, stages around their steps. Integer
 * nanoseconds throughout, so a parent's span contains its children's exactly.
 */
export function chromeTrace(steps: readonly TracedStep[], meta: Record<string, unknown> = {}): ChromeTrace {
  const ev: TraceEvent[] = [
    { name: 'process_name', ph: 'M', ts: 0, pid: PID, tid: TID, args: { name: 'wgtrain' } },
    { name: 'thread_name', ph: 'M', ts: 0, pid: PID, tid: TID, args: { name: 'GPU queue (kernels end to end)' } },
  ];
  const us = (ns: number) => ns / 1000;
  const slice = (name: string, cat: string, t0: number, t1: number, args: Record<string, unknown>) =>
    ev.push({ name, cat, ph: 'X', ts: us(t0), dur: us(t1 - t0), pid: PID, tid: TID, args });
  let clock = 0;
  let stageStart = 0, stageSteps = 0;
  steps.forEach((s, i) => {
    stageSteps++;
    const t0 = clock;
    for (const p of s.phases) {
      const p0 = clock;
      if (p.phase === 'data') clock += Math.round((p.wallMs + s.waitMs) * 1e6);
      // Frozen layers are marked where their backward would have run (the backward walks layers in reverse).
      const marks = p.phase === 'backward' ? [...s.frozen].reverse() : [];
      for (const k of p.kernels) {
        // NOTE: at least 1 ns, so that no two siblings start at the same instant (timestamps are
        // quantised: many short kernels read 0 ms).
        const dur = k.gpuMs === null ? UNTIMED_NS : Math.max(1, Math.round(k.gpuMs * 1e6));
        slice(k.name, 'kernel', clock, clock + dur, kernelArgs(k));
        clock += dur;
      }
      for (const m of marks) {
        // 1 ns apart, after the last kernel and before the phase ends: inside the backward, in no kernel.
        ev.push({ name: `frozen: ${m.layer}`, cat: 'frozen', ph: 'i', s: 't', ts: us(clock), pid: PID, tid: TID, args: { ...m } });
        clock += 1;
      }
      if (p.phase !== 'data' && p.kernels.length === 0) clock += Math.round(p.wallMs * 1e6);
      slice(p.phase, 'phase', p0, clock, { kernels: p.kernels.length, wallMs: round3(p.wallMs), ...(p.phase === 'data' ? { waitMs: round3(s.waitMs) } : {}) });
    }
    slice(`${s.stage} step ${s.step ?? s.index + 1}`, 'step', t0, clock, {
      stage: s.stage, epoch: s.epoch, step: s.step, input: s.input, dispatches: s.phases.reduce((a, p) => a + p.kernels.length, 0),
      trainableParams: s.trainableParams, frozenParams: s.frozenParams, frozenLayers: s.frozen.map((f) => f.layer),
      captured: s.captured, replayed: s.replayed,
    });
    const next = steps[i + 1];
    if (!next || next.stage !== s.stage) {
      slice(s.stage, 'stage', stageStart, clock, { steps: stageSteps });
      stageStart = clock; stageSteps = 0;
    }
  });
  // By time; at equal times parents before children (a phase with one kernel spans exactly it).
  const depth = (e: TraceEvent) => (e.ph === 'M' ? -1 : DEPTH[e.cat ?? ''] ?? 5);
  ev.sort((a, b) => depth(a) < 0 || depth(b) < 0 ? depth(a) - depth(b) : a.ts - b.ts || depth(a) - depth(b));
  return { traceEvents: ev, displayTimeUnit: 'ms', otherData: { producer: 'wgtrain', layout: 'kernels end to end on their GPU time', ...meta } };
}

function kernelArgs(k: TracedKernel): Record<string, unknown> {
  return {
    layer: k.layer, op: k.op, phase: k.phase, params: k.params, inputs: k.inputs, output: k.output,
    workgroups: k.workgroups, flops: k.flops, bytes: k.bytes,
    gpuMs: k.gpuMs === null ? null : round3(k.gpuMs * 1000) / 1000,
    ...(k.estimated ? { estimated: true } : {}), ...(k.replayed ? { replayed: true } : {}),
    ...(k.needs ? { needs: k.needs } : {}), ...(k.lr !== undefined ? { group: k.group, lr: k.lr } : {}),
  };
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;

// ---- summaries (explain, tests) ------------------------------------------------------------------

/** Dispatch counts by kernel name over a step. */
export function kernelCounts(step: TracedStep): Map<string, number> {
  const out = new Map<string, number>();
  for (const p of step.phases) for (const k of p.kernels) out.set(k.name, (out.get(k.name) ?? 0) + 1);
  return out;
}

export interface LayerKernels { layer: string; phases: Record<StepPhase, Map<string, number>> }

/** Dispatch counts per layer (in the order layers first ran) and phase. */
export function layerKernels(step: TracedStep): LayerKernels[] {
  const out = new Map<string, LayerKernels>();
  const get = (layer: string) => {
    let l = out.get(layer);
    if (!l) out.set(layer, (l = { layer, phases: { data: new Map(), forward: new Map(), backward: new Map(), optimizer: new Map() } }));
    return l;
  };
  for (const p of step.phases) {
    for (const k of p.kernels) {
      const m = get(k.layer).phases[p.phase];
      m.set(k.name, (m.get(k.name) ?? 0) + 1);
    }
  }
  return [...out.values()];
}

// ---- one traced step ------------------------------------------------------------------------------

/** What a traced step needs: a Learner's model, optimizer and class count. */
export interface StepTarget extends TraceTarget { readonly opts: { readonly numClasses: number; readonly labelSmoothing?: number } }

/**
 * One training step, eagerly, with its phases reported to `obs` — the same work as
 * `Learner.trainStep` without replay: upload the batch → forward (records the tape) → mean
 * cross-entropy → backward → optimizer step → drop gradients. Returns the loss.
 */
export async function tracedTrainStep(
  t: StepTarget, obs: StepObserver, batch: { x: Float32Array; shape: readonly [number, number, number, number]; labels: Uint32Array }, info: StepInfo = {},
): Promise<number> {
  const { gpu, model, optimizer } = t;
  obs.beginStep(info);
  const { x, y } = obs.phase('data', () => ({
    x: Tensor.from(gpu, batch.x, [...batch.shape]),
    y: labelsTensor(gpu, batch.labels, t.opts.numClasses),
  }));
  const { loss, correct } = obs.phase('forward', () => ops.crossEntropy(model.call(ops.constant(x)), y, t.opts.labelSmoothing ?? 0));
  obs.phase('backward', () => backward(loss));
  obs.phase('optimizer', () => { optimizer.step(); optimizer.zeroGrad(); });
  const v = (await loss.read())[0]!;
  loss.dispose(); correct.dispose(); x.dispose(); y.dispose();
  return v;
}
