// torchvision's vgg16 (configuration "D", no BatchNorm), exact structure and parameter names:
//   features.{0,2,5,7,10,12,14,17,19,21,24,26,28}.{weight,bias}   13 conv3×3 (pad 1) + ReLU, 5 max-pools
//   avgpool: AdaptiveAvgPool2d(7)
//   classifier.{0,3,6}.{weight,bias}   Linear(25088, 4096) ReLU Dropout Linear(4096, 4096) ReLU Dropout Linear(4096, classes)
// 138,357,544 parameters with 1000 classes. Layer groups (fastai): features | classifier.

import type { Gpu } from '../../gpu/device.js';
import type { Variable } from '../../autograd/variable.js';
import { flatten } from '../../autograd/ops.js';
import { AdaptiveAvgPool2d, Conv2d, Dropout, Linear, MaxPool2d, ReLU, Sequential, type InitOptions } from '../layers.js';
import { Module } from '../module.js';
import { Rng } from '../../util/rng.js';
import type { Grouped } from '../groups.js';

const CFG_D = [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M', 512, 512, 512, 'M'] as const;

export class VGG extends Module implements Grouped {
  readonly features: Sequential;
  readonly avgpool: AdaptiveAvgPool2d;
  readonly classifier: Sequential;

  constructor(gpu: Gpu, numClasses = 1000, o: InitOptions & { dropout?: number } = {}) {
    super();
    // NOTE: one generator for the whole model, so no two layers start from the same numbers.
    o = { ...o, rng: o.rng ?? new Rng(0) };
    const f = new Sequential();
    let c = 3;
    for (const v of CFG_D) {
      if (v === 'M') f.push(new MaxPool2d(2, 2));
      else { f.push(new Conv2d(gpu, c, v, 3, { padding: 1, ...o })); f.push(new ReLU()); c = v; }
    }
    this.features = this.child('features', f);
    this.avgpool = this.child('avgpool', new AdaptiveAvgPool2d(7));
    const p = o.dropout ?? 0.5;
    this.classifier = this.child('classifier', new Sequential(
      new Linear(gpu, 512 * 7 * 7, 4096, o), new ReLU(), new Dropout(p, 1),
      new Linear(gpu, 4096, 4096, o), new ReLU(), new Dropout(p, 2),
      new Linear(gpu, 4096, numClasses, o),
    ));
  }

  forward(x: Variable): Variable {
    return this.classifier.call(flatten(this.avgpool.call(this.features.call(x))));
  }

  layerGroups(): Module[][] { return [[this.features, this.avgpool], [this.classifier]]; }
}

export function vgg16(gpu: Gpu, o: InitOptions & { numClasses?: number } = {}): VGG {
  return new VGG(gpu, o.numClasses ?? 1000, o);
}
