// Export: modules → ONNX (opset 17, IR 8). Round trip (export → import gives identical outputs),
// onnxruntime-node loads the exported file and agrees, metadata survives, and an imported +
// re-headed + trained ResNet34 exports with its names.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { Tensor, type Gpu } from '../../src/gpu/index.js';
import * as ops from '../../src/autograd/ops.js';
import { noGrad, releaseTape } from '../../src/autograd/variable.js';
import type { Module } from '../../src/nn/module.js';
import { decodeModel } from '../../src/onnx/reader.js';
import { importModel } from '../../src/onnx/import.js';
import { exportOnnx } from '../../src/onnx/export.js';
import { hasOnnxData, onnxDataDir } from '../../src/onnx/testdata.js';
import { Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential, AvgPool2d, Dropout, BatchNorm2d } from '../../src/nn/layers.js';
import { device, errors, Rng } from '../helpers.js';
import { SmallNet } from '../nn/smallnet.js';

let gpu: Gpu;
beforeAll(async () => { gpu = await device(); });

async function forward(m: Module, x: Float32Array, shape: number[]): Promise<Float32Array> {
  m.eval();
  const xt = Tensor.from(gpu, x, shape);
  const y = noGrad(() => m.call(ops.constant(xt)));
  const out = await y.read();
  releaseTape(); xt.dispose();
  return out;
}

async function ortRun(bytes: Uint8Array, x: Float32Array, shape: number[]): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(bytes);
  const r = await s.run({ [s.inputNames[0]!]: new ort.Tensor('float32', x, shape) });
  return r[s.outputNames[0]!]!.data as Float32Array;
}

describe('ONNX export', () => {
  it('SmallNet (conv, BN, pool, residual block, GAP, dense) round-trips and onnxruntime agrees', async () => {
    const net = new SmallNet(gpu, 4, { seed: 3, dropout: 0.3 });
    // Give BN non-trivial running statistics.
    for (const [n, t] of net.namedBuffers()) if (n.endsWith('running_mean') || n.endsWith('running_var')) t.write(new Rng(n.length).array(t.size, 0.2, 1.5));
    const bytes = await exportOnnx(gpu, net, { sampleShape: [3, 8, 8], metadata: { 'wgtrain.classes': '["a","b","c","d"]' } });
    const model = decodeModel(bytes);
    expect(model.irVersion).toBe(8);
    expect(model.opsets.get('')).toBe(17);
    expect(model.metadata['wgtrain.classes']).toBe('["a","b","c","d"]');
    expect([...model.graph.initializers.keys()]).toEqual(expect.arrayContaining(['conv1.weight', 'bn1.running_var', 'block.conv2.weight', 'fc.bias']));
    const x = new Rng(4).array(2 * 3 * 8 * 8, -1, 1);
    const want = await forward(net, x, [2, 3, 8, 8]);
    const back = importModel(gpu, model);
    const got = await forward(back, x, [2, 3, 8, 8]);
    expect(Array.from(got)).toEqual(Array.from(want));                 // same kernels, same numbers
    const o = await ortRun(bytes, x, [2, 3, 8, 8]);
    const e = errors(o, want, 1e-5);
    console.log(`SmallNet: onnxruntime vs wgtrain max abs ${e.maxAbs.toExponential(2)} (logits ${Array.from(want.slice(0, 4), (v) => v.toFixed(4)).join(", ")})`);
    expect(want.every(Number.isFinite) && want.some((v) => v !== 0)).toBe(true);
    expect(e.maxAbs).toBeLessThan(1e-4);
    net.dispose(); back.dispose();
  });

  it('a VGG-style Sequential with avg-pool, dropout and flatten exports; batch size is free', async () => {
    const rng = new Rng(8);
    const net = new Sequential(
      new Conv2d(gpu, 3, 6, 3, { padding: [1, 0, 1, 2], stride: 2, rng }), new BatchNorm2d(gpu, 6), new ReLU(),
      new MaxPool2d(2, 2, 0, { ceilMode: true }), new AvgPool2d(2, 1, 1, { countIncludePad: false }),
      new Flatten(), new Dropout(0.5), new Linear(gpu, 6 * 5 * 4, 3, { rng }),
    );
    const bytes = await exportOnnx(gpu, net, { sampleShape: [3, 13, 11] });
    for (const n of [1, 3]) {
      const x = rng.array(n * 3 * 13 * 11, -1, 1);
      const want = await forward(net, x, [n, 3, 13, 11]);
      const o = await ortRun(bytes, x, [n, 3, 13, 11]);
      expect(errors(o, want, 1e-5).maxAbs).toBeLessThan(1e-4);
    }
    net.dispose();
  });

  it.skipIf(!hasOnnxData('resnet34_torchstyle'))('imported ResNet34 with a new 5-class head: export → re-import identical; onnxruntime agrees', async () => {
    const m = importModel(gpu, decodeModel(new Uint8Array(readFileSync(join(onnxDataDir(), 'resnet34_torchstyle/model.onnx')))), { names: 'torchvision' });
    m.cutAt('before-last-gemm', 5, 2);
    const bytes = await exportOnnx(gpu, m, { sampleShape: [3, 64, 64] });
    const back = importModel(gpu, decodeModel(bytes));
    expect(back.namedParameters().map(([n]) => n)).toEqual(m.namedParameters().map(([n]) => n));
    expect(back.family).toBe('resnet34');
    const x = new Rng(1).array(3 * 64 * 64, 0, 1);
    const want = await forward(m, x, [1, 3, 64, 64]);
    expect(Array.from(await forward(back, x, [1, 3, 64, 64]))).toEqual(Array.from(want));
    const o = await ortRun(bytes, x, [1, 3, 64, 64]);
    const e = errors(o, want, 1e-4);
    console.log(`ResNet34 re-headed: onnxruntime vs wgtrain max abs ${e.maxAbs.toExponential(2)}`);
    expect(e.maxAbs).toBeLessThan(1e-3);
    m.dispose(); back.dispose();
  }, 300_000);
});
