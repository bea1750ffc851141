// Optimizers over parameter groups: SGD (momentum, Nesterov, weight decay), Adam, AdamW.
//
// Each group has its own LR (discriminative LRs: lr.ts), weight decay, betas / momentum. The GPU
// update kernels (kernels/optim.ts) take these as uniforms, so one pipeline serves every group.
// State (momentum buffer, Adam's m and v and step count) is keyed by parameter *name*: it survives
// freeze/unfreeze and re-grouping, which index-keyed state does not (finetune-semantics.md).
// Frozen parameters (trainable = false) get no state and no update.

import type { Gpu } from '../gpu/device.js';
import { Tensor } from '../gpu/tensor.js';
import { adamStep, sgdStep, type AdamStepOptions, type SgdStepOptions } from '../kernels/optim.js';
import type { Parameter } from '../nn/module.js';
import type { Schedule } from './schedule.js';

export type OptimizerKind = 'sgd' | 'adam' | 'adamw';

export interface ParamGroup {
  name: string;
  params: [string, Parameter][];
  lr: number;
  weightDecay?: number;
  /** Adam β1, β2. */
  betas?: [number, number];
  eps?: number;
  /** SGD momentum (β1 plays this role under a one-cycle schedule). */
  momentum?: number;
  nesterov?: boolean;
  dampening?: number;
}

export interface ParamState {
  /** Updates applied to this parameter so far. */
  step: number;
  /** SGD momentum buffer, or Adam's first moment. */
  m?: Tensor;
  /** Adam's second moment. */
  v?: Tensor;
}

export interface OptimizerOptions {
  weightDecay?: number;
  betas?: [number, number];
  eps?: number;
  momentum?: number;
  nesterov?: boolean;
}

export class Optimizer {
  readonly state = new Map<string, ParamState>();
  /** Bumped whenever state tensors are replaced or dropped (captured steps bound the old ones). */
  stateVersion = 0;
  /** Base LR of each group (what a schedule multiplies). */
  private baseLr: number[];

  constructor(readonly kind: OptimizerKind, readonly groups: ParamGroup[], defaults: OptimizerOptions = {}) {
    for (const g of groups) {
      g.weightDecay ??= defaults.weightDecay ?? (kind === 'adamw' ? 0.01 : 0);
      g.betas ??= defaults.betas ?? [0.9, 0.999];
      g.eps ??= defaults.eps ?? (kind === 'sgd' ? 0 : 1e-8);
      g.momentum ??= defaults.momentum ?? 0;
      g.nesterov ??= defaults.nesterov ?? false;
      g.dampening ??= 0;
    }
    const names = groups.flatMap((g) => g.params.map(([n]) => n));
    const dup = names.find((n, i) => names.indexOf(n) !== i);
    if (dup) throw new Error(`parameter '${dup}' is in more than one group`);
    this.baseLr = groups.map((g) => g.lr);
  }

  /** Sets each group's LR (a list, one per group) and keeps them as the new base LRs. */
  setLr(lrs: readonly number[]) {
    if (lrs.length !== this.groups.length) throw new Error(`setLr: ${lrs.length} LRs for ${this.groups.length} groups`);
    this.groups.forEach((g, i) => { g.lr = lrs[i]!; });
    this.baseLr = [...lrs];
  }

  /**
   * Applies a schedule at `pos` (fraction of training done): each group's LR is its base LR scaled
   * by schedule(pos).lr / schedule peak (`peak`), preserving the ratios between groups; β1 (Adam)
   * or momentum (SGD) follows schedule(pos).mom when the schedule gives one.
   */
  applySchedule(schedule: Schedule, pos: number, peak: number) {
    const v = schedule(pos);
    this.groups.forEach((g, i) => {
      g.lr = this.baseLr[i]! * (v.lr / peak);
      if (v.mom !== undefined) {
        if (this.kind === 'sgd') g.momentum = v.mom;
        else g.betas = [v.mom, g.betas![1]];
      }
    });
  }

  /** One update of every trainable parameter that has a gradient. */
  step() {
    for (const g of this.groups) {
      for (const [name, p] of g.params) {
        if (!p.trainable || !p.grad) continue;
        let st = this.state.get(name);
        if (!st) this.state.set(name, (st = { step: 0 }));
        st.step++;
        this.update(g, p, st);
      }
    }
  }

  private update(g: ParamGroup, p: Parameter, st: ParamState) {
    const gpu: Gpu = p.data.gpu;
    if (this.kind === 'sgd') {
      const mom = g.momentum! !== 0;
      if (mom && !st.m) gpu.outsideCapture(() => { st.m = Tensor.empty(gpu, p.shape); });
      const opts = (s: ParamState): SgdStepOptions => ({
        lr: g.lr, momentum: g.momentum, dampening: g.dampening, weightDecay: g.weightDecay, nesterov: g.nesterov, firstStep: s.step === 1,
      });
      const rewrite = sgdStep(p.data, p.grad!, mom ? st.m! : null, opts(st));
      if (gpu.capturing) gpu.onReplay(() => { st.step++; rewrite(opts(st)); });
      return;
    }
    // NOTE: state is created by the first step; when that step is being captured, its zero-fill must
    // run once, not on every replay.
    if (!st.m) gpu.outsideCapture(() => { st.m = Tensor.zeros(gpu, p.shape); st.v = Tensor.zeros(gpu, p.shape); });
    const opts = (s: ParamState): AdamStepOptions => ({
      lr: g.lr, beta1: g.betas![0], beta2: g.betas![1], eps: g.eps, weightDecay: g.weightDecay,
      decoupled: this.kind === 'adamw', step: s.step,
    });
    const rewrite = adamStep(p.data, p.grad!, st.m!, st.v!, opts(st));
    // NOTE: a replayed step re-binds the same buffers; only the step count and LR change.
    if (gpu.capturing) gpu.onReplay(() => { st.step++; rewrite(opts(st)); });
  }

  /** Drops every parameter's gradient. */
  zeroGrad() {
    for (const g of this.groups) for (const [, p] of g.params) p.zeroGrad();
  }

  /** Optimizer state as named tensors (`<param>.m`, `<param>.v`) plus step counts, for checkpoints. */
  stateTensors(): { tensors: [string, Tensor][]; steps: Record<string, number> } {
    const tensors: [string, Tensor][] = [];
    const steps: Record<string, number> = {};
    for (const [name, st] of this.state) {
      steps[name] = st.step;
      if (st.m) tensors.push([`${name}.m`, st.m]);
      if (st.v) tensors.push([`${name}.v`, st.v]);
    }
    return { tensors, steps };
  }

  /**
   * Loads state saved by `stateTensors` (a checkpoint, or another optimizer over the same model with
   * different groups): matched by parameter name; state for names this optimizer doesn't hold is
   * ignored. Tensors are copied, so the source can be released.
   */
  loadState(saved: { tensors: [string, Tensor][]; steps: Record<string, number> }) {
    this.stateVersion++;
    const byName = new Map(saved.tensors);
    const known = new Map(this.groups.flatMap((g) => g.params));
    for (const [name, step] of Object.entries(saved.steps)) {
      const p = known.get(name);
      if (!p) continue;
      const copy = (t: Tensor | undefined) => {
        if (!t) return undefined;
        if (t.size !== p.size) throw new Error(`optimizer state for '${name}' has ${t.size} values, the parameter ${p.size}`);
        const c = Tensor.empty(p.data.gpu, p.shape);
        p.data.gpu.copy(t.buffer, 0, c.buffer, 0, t.size * 4);
        return c;
      };
      const old = this.state.get(name);
      old?.m?.dispose(); old?.v?.dispose();
      this.state.set(name, { step, m: copy(byName.get(`${name}.m`)), v: copy(byName.get(`${name}.v`)) });
    }
  }

  dispose() {
    this.stateVersion++;
    for (const st of this.state.values()) { st.m?.dispose(); st.v?.dispose(); }
    this.state.clear();
  }
}
