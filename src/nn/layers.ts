// Layers, PyTorch-shaped: the same constructor arguments, parameter names and default inits as
// torch.nn, so a torchvision state_dict maps onto them name for name.

import type { Gpu } from '../gpu/device.js';
import { Tensor } from '../gpu/tensor.js';
import * as ops from '../autograd/ops.js';
import type { Variable } from '../autograd/variable.js';
import type { Conv2dOptions, Pair, Padding } from '../kernels/conv2d.js';
import type { PoolPair, PoolPadding } from '../kernels/pool.js';
import { Rng } from '../util/rng.js';
import { Module, type Parameter } from './module.js';

// ---- fusion -------------------------------------------------------------------------------------
//
// A convolution or a Linear followed by a ReLU runs as one kernel (the ReLU in the kernel's
// epilogue), and so does a BatchNorm that uses its running statistics followed by a ReLU: one
// dispatch and one pass over the activation fewer per pair. Modules fuse the pairs they own and whose
// intermediate nobody else can see: Sequential (a Conv2d, Linear or BatchNorm2d directly followed by
// a ReLU), ResNet's blocks, and ONNX graphs (onnx/import.ts: only when the pre-ReLU value has no
// other reader). The autograd op stays one op whose attrs say `activation: 'relu'`, and ONNX export
// writes the two nodes back. BatchNorm with batch statistics (training) is not fused.
// NOTE: only plain Conv2d / Linear / BatchNorm2d / ReLU modules fuse: a subclass that overrides
// forward (or call) runs as written.

let fusion = true;

/** Turns fusion on or off for every module (tests, `explain`, benchmarks); returns the previous setting. */
export function setFusion(on: boolean): boolean {
  const prev = fusion;
  fusion = on;
  return prev;
}

/** Whether modules fuse Conv→ReLU, Linear→ReLU and BatchNorm(running statistics)→ReLU (default true). */
export function fusionEnabled(): boolean { return fusion; }

/** Runs fn with fusion set to `on`, then restores the previous setting. */
export function withFusion<T>(on: boolean, fn: () => T): T {
  const prev = setFusion(on);
  try { return fn(); } finally { setFusion(prev); }
}

const plain = (m: Module, cls: { prototype: Module }) => m.forward === cls.prototype.forward && m.call === Module.prototype.call;

/** Whether relu(m(x)) may run as m's fused kernel now (`relu`: the ReLU module that would follow, if any). */
function fusesRelu(m: Module, relu?: Module): boolean {
  if (!fusion || (relu && !(relu instanceof ReLU && plain(relu, ReLU)))) return false;
  if (m instanceof Conv2d) return plain(m, Conv2d);
  if (m instanceof Linear) return plain(m, Linear);
  // NOTE: with batch statistics the kernel is the training one; BN+ReLU fusion is inference only.
  if (m instanceof BatchNorm2d) return plain(m, BatchNorm2d) && m.stats === 'running';
  return false;
}

/**
 * relu(m(x)): one fused kernel when fusion is on and m is a plain Conv2d or Linear, or a plain
 * BatchNorm2d using its running statistics; otherwise m, then `relu` (the ReLU module that follows m,
 * or the op).
 */
export function callWithRelu(m: Module, x: Variable, relu?: Module): Variable {
  if (fusesRelu(m, relu)) return (m as Conv2d | Linear | BatchNorm2d).forwardRelu(x);
  const h = m.call(x);
  return relu ? relu.call(h) : ops.relu(h);
}

/** How new parameters are filled: a seeded PyTorch-default init, or left empty (weights to be loaded). */
export interface InitOptions { rng?: Rng; init?: boolean }

/**
 * PyTorch's default for Conv/Linear: kaiming_uniform(a=√5) → U(−1/√fan_in, 1/√fan_in) for the weight,
 * and the same bound for the bias.
 */
function uniformInit(gpu: Gpu, shape: number[], fanIn: number, o: InitOptions): Tensor {
  if (o.init === false) return Tensor.empty(gpu, shape);
  const bound = 1 / Math.sqrt(fanIn);
  const rng = o.rng ?? new Rng(0);
  return Tensor.from(gpu, rng.array(shape.reduce((a, b) => a * b, 1), -bound, bound), shape);
}

export class Conv2d extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter | null;
  readonly opts: Conv2dOptions;

  constructor(gpu: Gpu, readonly inChannels: number, readonly outChannels: number, readonly kernelSize: Pair,
    o: { stride?: Pair; padding?: Padding; dilation?: Pair; groups?: number; bias?: boolean } & InitOptions = {}) {
    super();
    const [R, S] = typeof kernelSize === 'number' ? [kernelSize, kernelSize] : kernelSize;
    const groups = o.groups ?? 1;
    const fanIn = (inChannels / groups) * R * S;
    this.weight = this.param('weight', uniformInit(gpu, [outChannels, inChannels / groups, R, S], fanIn, o));
    this.bias = o.bias === false ? null : this.param('bias', uniformInit(gpu, [outChannels], fanIn, o));
    this.opts = { stride: o.stride, padding: o.padding, dilation: o.dilation, groups };
  }

  forward(x: Variable): Variable { return ops.conv2d(x, this.weight, this.bias, this.opts); }
  /** relu(forward(x)) in one kernel (see `callWithRelu`, which decides when to use it). */
  forwardRelu(x: Variable): Variable { return ops.conv2dRelu(x, this.weight, this.bias, this.opts); }
}

export class Linear extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter | null;

  constructor(gpu: Gpu, readonly inFeatures: number, readonly outFeatures: number, o: { bias?: boolean } & InitOptions = {}) {
    super();
    this.weight = this.param('weight', uniformInit(gpu, [outFeatures, inFeatures], inFeatures, o));
    this.bias = o.bias === false ? null : this.param('bias', uniformInit(gpu, [outFeatures], inFeatures, o));
  }

  forward(x: Variable): Variable { return ops.linear(x, this.weight, this.bias); }
  /** relu(forward(x)) in one kernel (the matmul's epilogue). */
  forwardRelu(x: Variable): Variable { return ops.linear(x, this.weight, this.bias, 'relu'); }
}

export class ReLU extends Module {
  forward(x: Variable): Variable { return ops.relu(x); }
}

export class MaxPool2d extends Module {
  constructor(readonly kernel: PoolPair, readonly stride?: PoolPair, readonly padding: PoolPadding = 0,
    readonly o: { dilation?: PoolPair; ceilMode?: boolean } = {}) { super(); }
  forward(x: Variable): Variable {
    return ops.maxPool2d(x, { kernel: this.kernel, stride: this.stride, padding: this.padding, ...this.o });
  }
}

export class AvgPool2d extends Module {
  constructor(readonly kernel: PoolPair, readonly stride?: PoolPair, readonly padding: PoolPadding = 0,
    readonly o: { ceilMode?: boolean; countIncludePad?: boolean } = {}) { super(); }
  forward(x: Variable): Variable {
    return ops.avgPool2d(x, { kernel: this.kernel, stride: this.stride, padding: this.padding, ...this.o });
  }
}

export class AdaptiveAvgPool2d extends Module {
  constructor(readonly outputSize: PoolPair) { super(); }
  forward(x: Variable): Variable {
    const [h, w] = typeof this.outputSize === 'number' ? [this.outputSize, this.outputSize] : this.outputSize;
    // NOTE: a 1×1 output is a global average; its kernel is the faster one.
    return h === 1 && w === 1 ? ops.globalAvgPool(x) : ops.adaptiveAvgPool2d(x, [h, w]);
  }
}

/**
 * Which statistics a BatchNorm normalises with while the model is in training mode:
 *   'auto'    batch statistics when its γ/β are trainable, running ones when they are frozen
 *             (a frozen BatchNorm is frozen all the way: its statistics do not drift either);
 *   'batch'   always batch statistics (and running-stat updates), PyTorch's train() behaviour;
 *   'running' always the running statistics (frozen statistics, trainable or not).
 * In eval mode every BatchNorm uses its running statistics.
 */
export type BnPolicy = 'auto' | 'batch' | 'running';

export class BatchNorm2d extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter;
  runningMean: Tensor;
  runningVar: Tensor;
  policy: BnPolicy = 'auto';

  constructor(gpu: Gpu, readonly numFeatures: number, readonly o: { eps?: number; momentum?: number; init?: boolean } = {}) {
    super();
    const ones = () => Tensor.from(gpu, new Float32Array(numFeatures).fill(1), [numFeatures]);
    const zeros = () => Tensor.zeros(gpu, [numFeatures]);
    this.weight = this.param('weight', ones());
    this.bias = this.param('bias', zeros());
    this.runningMean = this.buffer('running_mean', zeros());
    this.runningVar = this.buffer('running_var', ones());
    // torchvision's state_dict lists it; kept so names (and counts) match. Stored as f32.
    this.buffer('num_batches_tracked', Tensor.zeros(gpu, [1]));
  }

  get eps(): number { return this.o.eps ?? 1e-5; }

  /** The statistics this layer uses now, given its policy, mode and trainable flags. */
  get stats(): 'batch' | 'running' {
    if (!this.training) return 'running';
    if (this.policy === 'auto') return this.weight.trainable || this.bias.trainable ? 'batch' : 'running';
    return this.policy;
  }

  override setBuffer(name: string, t: Tensor) {
    super.setBuffer(name, t);
    if (name === 'running_mean') this.runningMean = t;
    if (name === 'running_var') this.runningVar = t;
  }

  forward(x: Variable): Variable { return this.run(x, false); }
  /** relu(forward(x)): one kernel with running statistics, two ops with batch statistics. */
  forwardRelu(x: Variable): Variable { return this.run(x, true); }

  private run(x: Variable, relu: boolean): Variable {
    return ops.batchNorm(x, {
      gamma: this.weight, beta: this.bias, runningMean: this.runningMean, runningVar: this.runningVar,
      eps: this.eps, momentum: this.o.momentum ?? 0.1, stats: this.stats, relu,
    });
  }
}

export class Dropout extends Module {
  private rng: Rng;
  constructor(readonly p = 0.5, seed = 0) { super(); this.rng = new Rng(seed); }
  /** Restarts the mask sequence (the Learner does this per epoch, so a resumed run draws the same masks). */
  reseed(seed: number) { this.rng = new Rng(seed); }
  forward(x: Variable): Variable {
    if (!this.training || this.p === 0) return x;
    // A seed generator, not a seed: a replayed (captured) step draws a new mask each time.
    return ops.dropout(x, this.p, () => Math.floor(this.rng.next() * 2 ** 32));
  }
}

export class Flatten extends Module {
  forward(x: Variable): Variable { return ops.flatten(x); }
}

export class Identity extends Module {
  forward(x: Variable): Variable { return x; }
}

/** Children named '0', '1', … in order, as torch.nn.Sequential. */
export class Sequential extends Module {
  private readonly layers: Module[] = [];
  constructor(...layers: Module[]) {
    super();
    layers.forEach((m) => this.push(m));
  }
  push(m: Module): this {
    this.child(String(this.layers.length), m);
    this.layers.push(m);
    return this;
  }
  get length(): number { return this.layers.length; }
  at(i: number): Module {
    const m = this.layers[i < 0 ? this.layers.length + i : i];
    if (!m) throw new Error(`Sequential: no layer ${i}`);
    return m;
  }
  /** Replaces layer i (e.g. the last Linear of a classifier). */
  set(i: number, m: Module) {
    const k = i < 0 ? this.layers.length + i : i;
    this.layers[k] = m;
    this.setChild(String(k), m);
  }
  forward(x: Variable): Variable {
    let h = x;
    for (let i = 0; i < this.layers.length; i++) {
      const m = this.layers[i]!, next = this.layers[i + 1];
      // A Conv2d / Linear / BatchNorm2d directly followed by a ReLU: nothing outside sees the value between them.
      if (next && fusesRelu(m, next)) { h = callWithRelu(m, h, next); i++; continue; }
      h = m.call(h);
    }
    return h;
  }
}

/**
 * ResNet's basic residual block (torchvision names): out = relu(bn2(conv2(relu(bn1(conv1(x))))) + id),
 * id = downsample(x) when the shape changes (1×1 conv stride s + BN), x otherwise.
 */
export class BasicBlock extends Module {
  readonly conv1: Conv2d; readonly bn1: BatchNorm2d; readonly conv2: Conv2d; readonly bn2: BatchNorm2d;
  readonly downsample: Sequential | null;

  constructor(gpu: Gpu, inplanes: number, planes: number, stride = 1, o: InitOptions = {}) {
    super();
    this.conv1 = this.child('conv1', new Conv2d(gpu, inplanes, planes, 3, { stride, padding: 1, bias: false, ...o }));
    this.bn1 = this.child('bn1', new BatchNorm2d(gpu, planes));
    this.child('relu', new ReLU());
    this.conv2 = this.child('conv2', new Conv2d(gpu, planes, planes, 3, { padding: 1, bias: false, ...o }));
    this.bn2 = this.child('bn2', new BatchNorm2d(gpu, planes));
    this.downsample = stride !== 1 || inplanes !== planes
      ? this.child('downsample', new Sequential(new Conv2d(gpu, inplanes, planes, 1, { stride, bias: false, ...o }), new BatchNorm2d(gpu, planes)))
      : null;
  }

  forward(x: Variable): Variable {
    const h = callWithRelu(this.bn1, this.conv1.call(x));
    const y = this.bn2.call(this.conv2.call(h));
    const id = this.downsample ? this.downsample.call(x) : x;
    return ops.relu(ops.add(y, id));
  }
}
