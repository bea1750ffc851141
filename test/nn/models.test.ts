// VGG16 and ResNet34: torchvision's parameter counts and state_dict names, layer groups, fastai
// freezing semantics, head replacement, and a frozen-base training step that launches no backward
// work for the base.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Tensor, type Gpu } from '../../src/gpu/index.js';
import * as ops from '../../src/autograd/ops.js';
import { backward } from '../../src/autograd/variable.js';
import { labelsTensor } from '../../src/kernels/softmax.js';
import { freeze, freezeTo, groupParameters, unfreeze } from '../../src/nn/groups.js';
import { replaceHead } from '../../src/nn/models/head.js';
import { resnet34, type ResNet } from '../../src/nn/models/resnet34.js';
import { vgg16, type VGG } from '../../src/nn/models/vgg16.js';
import { device } from '../helpers.js';

let gpu: Gpu;
let vgg: VGG;
let res: ResNet;
beforeAll(async () => {
  gpu = await device();
  // init: false — names and shapes only (no 138M-value random fill on the CPU).
  vgg = vgg16(gpu, { init: false });
  res = resnet34(gpu, { init: false });
});
afterAll(() => { vgg?.dispose(); res?.dispose(); });

/** torchvision's vgg16().state_dict() keys, written out by hand from its module list. */
const VGG16_KEYS = [
  ...[0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28].flatMap((i) => [`features.${i}.weight`, `features.${i}.bias`]),
  ...[0, 3, 6].flatMap((i) => [`classifier.${i}.weight`, `classifier.${i}.bias`]),
];

/** torchvision's resnet34().state_dict() keys, in order. */
function resnet34Keys(): string[] {
  const bn = (p: string) => ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked'].map((s) => `${p}.${s}`);
  const keys = ['conv1.weight', ...bn('bn1')];
  [3, 4, 6, 3].forEach((n, li) => {
    for (let b = 0; b < n; b++) {
      const p = `layer${li + 1}.${b}`;
      keys.push(`${p}.conv1.weight`, ...bn(`${p}.bn1`), `${p}.conv2.weight`, ...bn(`${p}.bn2`));
      if (b === 0 && li > 0) keys.push(`${p}.downsample.0.weight`, ...bn(`${p}.downsample.1`));
    }
  });
  keys.push('fc.weight', 'fc.bias');
  return keys;
}

describe('torchvision structure', () => {
  it('VGG16: 138,357,544 parameters, state_dict names and shapes', () => {
    expect(vgg.numParameters()).toBe(138_357_544);
    expect(vgg.stateDict().map(([n]) => n)).toEqual(VGG16_KEYS);
    const shapes = Object.fromEntries(vgg.stateDict().map(([n, t]) => [n, t.shape]));
    expect(shapes['features.0.weight']).toEqual([64, 3, 3, 3]);
    expect(shapes['classifier.0.weight']).toEqual([4096, 25088]);
    expect(shapes['classifier.6.bias']).toEqual([1000]);
  });

  it('ResNet34: 21,797,672 parameters, 218 state_dict entries with torchvision names', () => {
    expect(res.numParameters()).toBe(21_797_672);
    const names = res.stateDict().map(([n]) => n);
    expect(names).toEqual(resnet34Keys());
    expect(names).toHaveLength(218);
    const shapes = Object.fromEntries(res.stateDict().map(([n, t]) => [n, t.shape]));
    expect(shapes['layer3.1.conv2.weight']).toEqual([256, 256, 3, 3]);
    expect(shapes['layer2.0.downsample.0.weight']).toEqual([128, 64, 1, 1]);
    expect(shapes['layer2.0.downsample.1.running_mean']).toEqual([128]);
    expect(shapes['fc.weight']).toEqual([1000, 512]);
  });

  it('default layer groups: ResNet stem+layer1+layer2 | layer3+layer4 | head; VGG features | head', () => {
    const rg = groupParameters(res).map((g) => g.map(([n]) => n));
    expect(rg).toHaveLength(3);
    expect(rg[0]![0]).toBe('conv1.weight');
    expect(rg[0]!.at(-1)).toMatch(/^layer2\./);
    expect(rg[1]![0]).toMatch(/^layer3\.0\./);
    expect(rg[1]!.at(-1)).toMatch(/^layer4\./);
    expect(rg[2]).toEqual(['fc.weight', 'fc.bias']);
    const vg = groupParameters(vgg).map((g) => g.map(([n]) => n));
    expect(vg).toEqual([VGG16_KEYS.slice(0, 26), VGG16_KEYS.slice(26)]);
  });

  it('freeze / freezeTo(n) / unfreeze follow fastai (negative n counts from the end)', () => {
    const trainable = () => groupParameters(res).map((g) => g.every(([, p]) => p.trainable) ? 'T' : g.some(([, p]) => p.trainable) ? '?' : 'F').join('');
    freeze(res); expect(trainable()).toBe('FFT');
    freezeTo(res, 1); expect(trainable()).toBe('FTT');
    freezeTo(res, -2); expect(trainable()).toBe('FTT');
    unfreeze(res); expect(trainable()).toBe('TTT');
    expect(() => freezeTo(res, 4)).toThrow(/3 layer groups/);
  });

  it('replaceHead swaps the final Linear for the target classes and keeps every other name', () => {
    const before = res.stateDict().map(([n]) => n);
    replaceHead(gpu, res, 5);
    expect(res.stateDict().map(([n]) => n)).toEqual(before);
    expect(Object.fromEntries(res.stateDict().map(([n, t]) => [n, t.shape]))['fc.weight']).toEqual([5, 512]);
    expect(res.numParameters()).toBe(21_797_672 - 995 * 513);
    replaceHead(gpu, vgg, 5);
    expect(Object.fromEntries(vgg.stateDict().map(([n, t]) => [n, t.shape]))['classifier.6.weight']).toEqual([5, 4096]);
    expect(() => replaceHead(gpu, vgg, 1)).toThrow(/at least 2 classes/);
  });
});

describe('frozen base', () => {
  it('a ResNet34 step with the base frozen launches no conv/BN backward kernel; unfrozen it launches them all', async () => {
    const net = resnet34(gpu, { numClasses: 3 });
    const x = Tensor.from(gpu, new Float32Array(2 * 3 * 32 * 32).map((_, i) => Math.sin(i)), [2, 3, 32, 32]);
    const labels = labelsTensor(gpu, Uint32Array.from([0, 2]), 3);
    const stepKernels = () => {
      gpu.dispatchesByName.clear();
      const { loss, correct } = ops.crossEntropy(net.call(ops.constant(x)), labels);
      backward(loss);
      loss.dispose(); correct.dispose();
      for (const p of net.parameters()) p.zeroGrad();
      const count = (re: RegExp) => [...gpu.dispatchesByName].filter(([k]) => re.test(k)).reduce((s, [, n]) => s + n, 0);
      return { dw: count(/^conv2d\.dw\.v/), dx: count(/^conv2d\.dx\./), bn: count(/^batchnorm\.bwd/), mm: count(/^matmul/), all: count(/./) };
    };
    freeze(net);
    const frozen = stepKernels();
    unfreeze(net);
    const open = stepKernels();
    console.log(`ResNet34 32×32 batch 2 dispatches: frozen base ${JSON.stringify(frozen)}; unfrozen ${JSON.stringify(open)}`);
    expect(frozen.dw).toBe(0); expect(frozen.dx).toBe(0); expect(frozen.bn).toBe(0);
    expect(open.dw).toBe(36);            // every conv's weight gradient
    // Every conv but the stem's (its input is the image) computes dX: 29 stride-1 convs with one
    // dispatch each, 6 stride-2 convs (3 first-block conv1s, 3 downsamples) with one per stride phase.
    expect(open.dx).toBe(29 + 6 * 4);
    expect(open.bn).toBe(36);
    expect(frozen.all).toBeLessThan(open.all / 2);
    net.dispose(); x.dispose(); labels.dispose();
  });
});
