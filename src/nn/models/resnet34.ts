// torchvision's resnet34, exact structure and parameter names:
//   conv1 (7×7/2, pad 3, no bias) bn1 relu maxpool(3, 2, pad 1)
//   layer1: 3 × BasicBlock(64)   layer2: 4 × BasicBlock(128, first stride 2 + downsample)
//   layer3: 6 × BasicBlock(256)  layer4: 3 × BasicBlock(512)
//   avgpool: AdaptiveAvgPool2d(1), fc: Linear(512, classes)
// Names: layer3.1.conv2.weight, layer2.0.downsample.0.weight, layer2.0.downsample.1.running_mean, fc.bias.
// 21,797,672 parameters with 1000 classes. Layer groups (fastai): stem+layer1+layer2 | layer3+layer4 | head.

import type { Gpu } from '../../gpu/device.js';
import type { Variable } from '../../autograd/variable.js';
import { flatten } from '../../autograd/ops.js';
import { AdaptiveAvgPool2d, BasicBlock, BatchNorm2d, callWithRelu, Conv2d, Linear, MaxPool2d, ReLU, Sequential, type InitOptions } from '../layers.js';
import { Module } from '../module.js';
import { Rng } from '../../util/rng.js';
import type { Grouped } from '../groups.js';

export class ResNet extends Module implements Grouped {
  readonly conv1: Conv2d; readonly bn1: BatchNorm2d; readonly relu: ReLU; readonly maxpool: MaxPool2d;
  readonly layer1: Sequential; readonly layer2: Sequential; readonly layer3: Sequential; readonly layer4: Sequential;
  readonly avgpool: AdaptiveAvgPool2d;
  fc: Module;

  constructor(gpu: Gpu, blocks: readonly [number, number, number, number], numClasses = 1000, o: InitOptions = {}) {
    super();
    // NOTE: one generator for the whole model, so no two layers start from the same numbers.
    o = { ...o, rng: o.rng ?? new Rng(0) };
    this.conv1 = this.child('conv1', new Conv2d(gpu, 3, 64, 7, { stride: 2, padding: 3, bias: false, ...o }));
    this.bn1 = this.child('bn1', new BatchNorm2d(gpu, 64));
    this.relu = this.child('relu', new ReLU());
    this.maxpool = this.child('maxpool', new MaxPool2d(3, 2, 1));
    let inplanes = 64;
    const stage = (planes: number, n: number, stride: number) => {
      const s = new Sequential();
      for (let i = 0; i < n; i++) { s.push(new BasicBlock(gpu, inplanes, planes, i === 0 ? stride : 1, o)); inplanes = planes; }
      return s;
    };
    this.layer1 = this.child('layer1', stage(64, blocks[0], 1));
    this.layer2 = this.child('layer2', stage(128, blocks[1], 2));
    this.layer3 = this.child('layer3', stage(256, blocks[2], 2));
    this.layer4 = this.child('layer4', stage(512, blocks[3], 2));
    this.avgpool = this.child('avgpool', new AdaptiveAvgPool2d(1));
    this.fc = this.child('fc', new Linear(gpu, 512, numClasses, o));
  }

  forward(x: Variable): Variable {
    // bn1 + relu: one fused kernel when bn1 uses its running statistics (eval, or a frozen BN).
    let h = this.maxpool.call(callWithRelu(this.bn1, this.conv1.call(x), this.relu));
    h = this.layer4.call(this.layer3.call(this.layer2.call(this.layer1.call(h))));
    return this.fc.call(flatten(this.avgpool.call(h)));
  }

  layerGroups(): Module[][] {
    return [[this.conv1, this.bn1, this.layer1, this.layer2], [this.layer3, this.layer4], [this.fc]];
  }
}

export function resnet34(gpu: Gpu, o: InitOptions & { numClasses?: number } = {}): ResNet {
  return new ResNet(gpu, [3, 4, 6, 3], o.numClasses ?? 1000, o);
}
