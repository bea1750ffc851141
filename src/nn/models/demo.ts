// The demo model: a small VGG-style CNN for 28×28 images (Fashion-MNIST, grayscale replicated to
// RGB), small enough to fine-tune in a minute on a CPU-only machine's software GPU.
//
//   features: [conv3×3 3→16, BN, ReLU, conv3×3 16→16, BN, ReLU, maxpool 2]     28 → 14
//             [conv3×3 16→32, BN, ReLU, conv3×3 32→32, BN, ReLU, maxpool 2]    14 → 7
//             [conv3×3 32→64, BN, ReLU, maxpool 2]                              7 → 3
//   classifier: flatten (576) → Linear 576→64 → ReLU → Dropout 0.25 → Linear 64→classes
//
// Layer groups: the first two conv blocks | the last block and the first dense layer | the head.
// Trained from scratch by wgtrain on Fashion-MNIST classes 0–4 (`npm run demo:pretrain`).

import type { Gpu } from '../../gpu/device.js';
import type { Variable } from '../../autograd/variable.js';
import { BatchNorm2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU, Sequential, type InitOptions } from '../layers.js';
import { Module } from '../module.js';
import type { Grouped } from '../groups.js';
import { Rng } from '../../util/rng.js';

export class DemoCnn extends Module implements Grouped {
  readonly features: Sequential;
  readonly classifier: Sequential;

  constructor(gpu: Gpu, numClasses = 5, o: InitOptions = {}) {
    super();
    o = { ...o, rng: o.rng ?? new Rng(0) };
    const f = new Sequential();
    const conv = (cin: number, cout: number) => { f.push(new Conv2d(gpu, cin, cout, 3, { padding: 1, bias: false, ...o })); f.push(new BatchNorm2d(gpu, cout)); f.push(new ReLU()); };
    conv(3, 16); conv(16, 16); f.push(new MaxPool2d(2, 2));
    conv(16, 32); conv(32, 32); f.push(new MaxPool2d(2, 2));
    conv(32, 64); f.push(new MaxPool2d(2, 2));
    this.features = this.child('features', f);
    this.classifier = this.child('classifier', new Sequential(
      new Flatten(), new Linear(gpu, 64 * 3 * 3, 64, o), new ReLU(), new Dropout(0.25, 3), new Linear(gpu, 64, numClasses, o),
    ));
  }

  forward(x: Variable): Variable { return this.classifier.call(this.features.call(x)); }

  layerGroups(): Module[][] {
    const f = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => this.features.at(from + i));
    return [f(0, 14), [...f(14, 18), this.classifier.at(1)], [this.classifier.at(4)]];
  }
}
