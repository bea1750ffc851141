// A small CNN with every op family a fine-tuned ResNet/VGG uses — conv, BatchNorm, ReLU, max-pool,
// a residual BasicBlock, global average pool, dropout, dense, cross-entropy — and its float64 CPU
// forward built from the reference kernels (the ground truth for the whole-network gradient test).

import type { Gpu } from '../../src/gpu/index.js';
import * as ops from '../../src/autograd/ops.js';
import type { Variable } from '../../src/autograd/variable.js';
import {
  AdaptiveAvgPool2d, BasicBlock, BatchNorm2d, Conv2d, Dropout, Linear, MaxPool2d, ReLU,
} from '../../src/nn/layers.js';
import { Module } from '../../src/nn/module.js';
import type { Grouped } from '../../src/nn/groups.js';
import * as ref from '../../src/kernels/reference.js';
import { Rng } from '../../src/util/rng.js';

export class SmallNet extends Module implements Grouped {
  readonly conv1: Conv2d; readonly bn1: BatchNorm2d; readonly pool: MaxPool2d; readonly block: BasicBlock;
  readonly gap: AdaptiveAvgPool2d; readonly drop: Dropout; readonly fc: Linear;

  constructor(gpu: Gpu, readonly classes = 4, o: { seed?: number; dropout?: number } = {}) {
    super();
    const rng = new Rng(o.seed ?? 1);
    this.conv1 = this.child('conv1', new Conv2d(gpu, 3, 8, 3, { padding: 1, bias: false, rng }));
    this.bn1 = this.child('bn1', new BatchNorm2d(gpu, 8));
    this.child('relu', new ReLU());
    this.pool = this.child('pool', new MaxPool2d(2, 2));
    this.block = this.child('block', new BasicBlock(gpu, 8, 8, 1, { rng }));
    this.gap = this.child('gap', new AdaptiveAvgPool2d(1));
    this.drop = this.child('drop', new Dropout(o.dropout ?? 0, 5));
    this.fc = this.child('fc', new Linear(gpu, 8, classes, { rng }));
  }

  forward(x: Variable): Variable {
    const h = this.pool.call(ops.relu(this.bn1.call(this.conv1.call(x))));
    return this.fc.call(this.drop.call(ops.flatten(this.gap.call(this.block.call(h)))));
  }

  layerGroups(): Module[][] { return [[this.conv1, this.bn1], [this.block], [this.fc]]; }
}

type P = Record<string, Float64Array>;

/** Float64 forward of SmallNet (training-mode BatchNorm, no dropout) → mean cross-entropy. */
export function smallNetLossRef(p: P, x: Float64Array, xShape: number[], labels: ArrayLike<number>, classes: number): number {
  const [N] = xShape as [number];
  const conv = (inp: Float64Array, s: number[], w: string, cin: number, cout: number) =>
    ref.conv2dRef(inp, s, p[w]!, [cout, cin, 3, 3], null, { padding: 1 });
  const bn = (inp: Float64Array, s: number[], name: string) =>
    ref.batchNorm2dTrainRef(inp, s, p[`${name}.weight`]!, p[`${name}.bias`]!, p[`${name}.running_mean`]!, p[`${name}.running_var`]!).y;
  let { y: h, shape } = conv(x, xShape, 'conv1.weight', 3, 8);
  h = ref.reluRef(bn(h, shape, 'bn1'));
  const pooled = ref.maxPool2dRef(h, shape as [number, number, number, number],
    { kernel: [2, 2], stride: [2, 2], dilation: [1, 1], padding: [0, 0, 0, 0], ceilMode: false, countIncludePad: false });
  const id = pooled.y; shape = pooled.shape;
  let b = conv(id, shape, 'block.conv1.weight', 8, 8).y;
  b = ref.reluRef(bn(b, shape, 'block.bn1'));
  b = conv(b, shape, 'block.conv2.weight', 8, 8).y;
  b = bn(b, shape, 'block.bn2');
  b = ref.reluRef(ref.binaryRef('add', b, shape, id, shape).y);
  const g = ref.globalAvgPoolRef(b, shape as [number, number, number, number]);
  const logits = ref.denseRef(g, p['fc.weight']!, p['fc.bias']!, N, 8, classes);
  return ref.softmaxCrossEntropyRef(logits, labels, classes).loss;
}
