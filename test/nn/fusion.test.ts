// Modules fuse Conv2d→ReLU and BatchNorm2d (running statistics)→ReLU into one kernel: one dispatch
// fewer per pair, the same outputs and gradients as with fusion off, and no fusion where it would
// change what a module computes (a subclass overriding forward, BatchNorm with batch statistics).

import { beforeAll, describe, expect, it } from 'vitest';
import { Tensor, type Gpu } from '../../src/gpu/index.js';
import * as ops from '../../src/autograd/ops.js';
import { backward, noGrad, releaseTape, type Variable } from '../../src/autograd/variable.js';
import { labelsTensor } from '../../src/kernels/softmax.js';
import {
  BasicBlock, BatchNorm2d, Conv2d, Flatten, fusionEnabled, Linear, MaxPool2d, ReLU, Sequential, setFusion, withFusion,
} from '../../src/nn/layers.js';
import type { Module } from '../../src/nn/module.js';
import { device, Rng } from '../helpers.js';

let gpu: Gpu;
beforeAll(async () => { gpu = await device(); });

/** Forward (no grad): output and dispatches by kernel family (relu, conv, batchnorm, all). */
async function infer(m: Module, x: Tensor) {
  const before = new Map(gpu.dispatchesByName), d0 = gpu.dispatchCount;
  const y = noGrad(() => m.call(ops.constant(x)));
  const count = (prefix: string) => [...gpu.dispatchesByName].filter(([k]) => k.startsWith(prefix)).reduce((s, [k, v]) => s + v - (before.get(k) ?? 0), 0);
  const r = { all: gpu.dispatchCount - d0, relu: count('relu.'), conv: count('conv2d.fwd'), bnFused: count('batchnorm.fwdRelu') };
  const out = await y.read();
  releaseTape();
  return { out, ...r };
}

/** One training step's loss, input gradient… (as arrays) and the parameters' gradients. */
async function trainStep(m: Module, x: Tensor, labels: Tensor) {
  const { loss, correct } = ops.crossEntropy(m.call(ops.constant(x)), labels);
  backward(loss);
  const l = (await loss.read())[0]!;
  loss.dispose(); correct.dispose();
  const grads: Record<string, number[]> = {};
  for (const [n, p] of m.namedParameters()) { grads[n] = Array.from(await p.grad!.read()); p.zeroGrad(); }
  return { loss: l, grads };
}

const bits = (a: Float32Array) => Array.from(a, (v) => v + 0);
// NOTE: `withFusion(false, () => infer(…))` covers the forward (and trainStep's backward): both run
// synchronously before the first await, and the setting is restored when the promise is returned.

describe('fusion in Sequential', () => {
  // VGG-style: conv+ReLU pairs (with bias), a max-pool, conv → BN → ReLU (BN+ReLU fuses in eval), and
  // a classifier with a Linear+ReLU pair.
  const vggish = (rng: Rng) => new Sequential(
    new Conv2d(gpu, 3, 8, 3, { padding: 1, rng }), new ReLU(),
    new Conv2d(gpu, 8, 8, 3, { padding: 1, rng }), new ReLU(),
    new MaxPool2d(2, 2),
    new Conv2d(gpu, 8, 16, 3, { padding: 1, bias: false, rng }), new BatchNorm2d(gpu, 16), new ReLU(),
    new Flatten(), new Linear(gpu, 16 * 4 * 4, 10, { rng }), new ReLU(), new Linear(gpu, 10, 3, { rng }),
  );

  it('eval: one dispatch fewer per Conv→ReLU, Linear→ReLU and BN→ReLU pair, bit-identical output', async () => {
    const net = vggish(new Rng(1));
    const bn = net.at(6) as BatchNorm2d;
    bn.runningMean.write(new Rng(2).array(16, -0.2, 0.2));
    bn.runningVar.write(new Rng(3).array(16, 0.5, 1.5));
    net.eval();
    const x = Tensor.from(gpu, new Rng(4).array(2 * 3 * 8 * 8), [2, 3, 8, 8]);
    expect(fusionEnabled()).toBe(true);
    const fused = await infer(net, x);
    const plain = await withFusion(false, () => infer(net, x));
    expect(fusionEnabled()).toBe(true);
    console.log(`VGG-style Sequential eval dispatches: fused ${fused.all} (relu ${fused.relu}), unfused ${plain.all} (relu ${plain.relu})`);
    expect(fused.relu).toBe(0);
    expect(fused.bnFused).toBe(1);
    expect(fused.conv).toBe(plain.conv);                        // the same convolutions, ReLU in their epilogue
    expect(fused.all).toBe(plain.all - plain.relu);             // 4 pairs (2 conv, 1 BN, 1 Linear +ReLU): 4 ReLU passes fewer
    expect(plain.relu).toBeGreaterThanOrEqual(4);
    expect(bits(fused.out)).toEqual(bits(plain.out));
    net.dispose(); x.dispose();
  });

  it('training: conv+ReLU and Linear+ReLU fuse, BN with batch statistics does not; loss and every gradient identical', async () => {
    const net = vggish(new Rng(5));
    net.train();
    const x = Tensor.from(gpu, new Rng(6).array(2 * 3 * 8 * 8), [2, 3, 8, 8]);
    const labels = labelsTensor(gpu, Uint32Array.from([0, 2]), 3);
    const bn = net.at(6) as BatchNorm2d;
    /** A step from fresh running statistics (a step moves them), with the forward ReLU passes it ran. */
    const step = async (fuse: boolean) => {
      bn.runningMean.write(new Float32Array(16)); bn.runningVar.write(new Float32Array(16).fill(1));
      const before = new Map(gpu.dispatchesByName);
      const r = withFusion(fuse, () => trainStep(net, x, labels));
      const relu = [...gpu.dispatchesByName].filter(([k]) => k.startsWith('relu.') && !k.startsWith('relu.bwd')).reduce((s, [k, v]) => s + v - (before.get(k) ?? 0), 0);
      return { r: await r, relu };
    };
    const fused = await step(true), plain = await step(false);
    // Unfused: four ReLU passes. Fused: only the BN(batch statistics)→ReLU pair's.
    expect(fused.relu).toBeGreaterThan(0);
    expect(fused.relu).toBe(plain.relu / 4);
    const [a, b] = [fused.r, plain.r];
    expect(a.loss).toBe(b.loss);
    for (const n of Object.keys(b.grads)) expect(a.grads[n], n).toEqual(b.grads[n]);
    net.dispose(); x.dispose(); labels.dispose();
  });

  it('a Conv2d subclass that overrides forward, or a ReLU subclass, is run as written', async () => {
    class Doubled extends Conv2d { override forward(x: Variable) { return ops.scale(super.forward(x), 2); } }
    class Clipped extends ReLU { override forward(x: Variable) { return ops.clip(x, 0, 0.1); } }
    const rng = new Rng(7);
    const net = new Sequential(new Doubled(gpu, 3, 4, 3, { padding: 1, rng }), new ReLU(), new Conv2d(gpu, 4, 4, 1, { rng }), new Clipped());
    net.eval();
    const x = Tensor.from(gpu, rng.array(3 * 5 * 5), [1, 3, 5, 5]);
    const fused = await infer(net, x);
    const plain = await withFusion(false, () => infer(net, x));
    expect(fused.all).toBe(plain.all);
    expect(bits(fused.out)).toEqual(bits(plain.out));
    expect(Math.max(...fused.out)).toBeLessThanOrEqual(Math.fround(0.1));
    net.dispose(); x.dispose();
  });
});

describe('fusion in ResNet blocks', () => {
  it('BasicBlock in eval: bn1+relu is one kernel; frozen BN (running statistics) in training too', async () => {
    const rng = new Rng(9);
    const block = new BasicBlock(gpu, 8, 16, 2, { rng });
    for (const [n, t] of block.namedBuffers()) {
      if (n.endsWith('running_mean')) t.write(rng.array(t.size, -0.2, 0.2));
      if (n.endsWith('running_var')) t.write(rng.array(t.size, 0.5, 1.5));
    }
    block.eval();
    const x = Tensor.from(gpu, rng.array(2 * 8 * 9 * 9), [2, 8, 9, 9]);
    const fused = await infer(block, x);
    const plain = await withFusion(false, () => infer(block, x));
    // bn1+relu fused; the block's final relu(bn2(…) + identity) stays a ReLU pass.
    expect([fused.bnFused, fused.relu, plain.relu - fused.relu]).toEqual([1, plain.relu - 1, 1]);
    expect(fused.all).toBe(plain.all - 1);
    expect(bits(fused.out)).toEqual(bits(plain.out));
    // Training with BatchNorm frozen ('running' policy): still fused, gradients identical.
    block.train();
    for (const [, m] of block.namedModules()) if (m instanceof BatchNorm2d) m.policy = 'running';
    const labels = labelsTensor(gpu, Uint32Array.from([1, 0]), 16 * 5 * 5);
    const head = new Sequential(block, new Flatten());
    const a = await trainStep(head, x, labels);
    const b = await withFusion(false, () => trainStep(head, x, labels));
    expect(a.loss).toBe(b.loss);
    for (const n of Object.keys(b.grads)) expect(a.grads[n], n).toEqual(b.grads[n]);
    block.dispose(); x.dispose(); labels.dispose();
  });

  it('setFusion returns the previous setting', () => {
    expect(setFusion(false)).toBe(true);
    expect(fusionEnabled()).toBe(false);
    expect(setFusion(true)).toBe(false);
  });
});
