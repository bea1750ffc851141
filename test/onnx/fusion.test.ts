// Fusion and ONNX: an exported file is the same with fusion on or off (a fused op is written as its
// two nodes), and an imported graph runs Conv→Relu and BatchNormalization(inference)→Relu as one
// kernel only where the pre-ReLU value has no other reader: not a graph output, a second consumer,
// runTo's target, or a cutAt cut point.

import { beforeAll, describe, expect, it } from 'vitest';
import { Tensor, type Gpu } from '../../src/gpu/index.js';
import * as ops from '../../src/autograd/ops.js';
import { noGrad, releaseTape, type Variable } from '../../src/autograd/variable.js';
import { BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential, withFusion } from '../../src/nn/layers.js';
import { Module } from '../../src/nn/module.js';
import { decodeModel } from '../../src/onnx/reader.js';
import { importModel, type OnnxModule } from '../../src/onnx/import.js';
import { exportOnnx } from '../../src/onnx/export.js';
import { device, Rng } from '../helpers.js';

let gpu: Gpu;
beforeAll(async () => { gpu = await device(); });

const bits = (a: Float32Array) => Array.from(a, (v) => v + 0);

/** Output of f (no grad) with the forward ReLU passes and all dispatches it launched. */
async function measure(f: () => Variable) {
  const before = new Map(gpu.dispatchesByName), d0 = gpu.dispatchCount;
  const y = noGrad(f);
  const relu = [...gpu.dispatchesByName].filter(([k]) => k.startsWith('relu.') && !k.startsWith('relu.bwd')).reduce((s, [k, v]) => s + v - (before.get(k) ?? 0), 0);
  const all = gpu.dispatchCount - d0;
  const out = await y.read();
  releaseTape();
  return { out, relu, all };
}

function vggish(rng: Rng) {
  const net = new Sequential(
    new Conv2d(gpu, 3, 8, 3, { padding: 1, rng }), new ReLU(),
    new Conv2d(gpu, 8, 8, 3, { padding: 1, rng }), new ReLU(),
    new MaxPool2d(2, 2),
    new Conv2d(gpu, 8, 8, 3, { padding: 1, bias: false, rng }), new BatchNorm2d(gpu, 8), new ReLU(),
    new Flatten(), new Linear(gpu, 8 * 4 * 4, 6, { rng }), new ReLU(), new Linear(gpu, 6, 3, { rng }),
  );
  const bn = net.at(6) as BatchNorm2d;
  bn.runningMean.write(rng.array(8, -0.2, 0.2));
  bn.runningVar.write(rng.array(8, 0.5, 1.5));
  return net;
}

const opsOf = (bytes: Uint8Array) => decodeModel(bytes).graph.nodes.map((n) => n.opType);

describe('ONNX export with fusion', () => {
  it('the file is byte-identical with fusion on and off: fused ops are written as Conv + Relu, BatchNormalization + Relu', async () => {
    const net = vggish(new Rng(1));
    const on = await exportOnnx(gpu, net, { sampleShape: [3, 8, 8] });
    const off = await withFusion(false, () => exportOnnx(gpu, net, { sampleShape: [3, 8, 8] }));
    expect(opsOf(on)).toEqual(['Conv', 'Relu', 'Conv', 'Relu', 'MaxPool', 'Conv', 'BatchNormalization', 'Relu', 'Flatten', 'Gemm', 'Relu', 'Gemm']);
    expect(Buffer.from(on).equals(Buffer.from(off))).toBe(true);
    net.dispose();
  });
});

describe('fusion in imported graphs', () => {
  it('Conv→Relu, Gemm→Relu and BatchNormalization→Relu run fused: one ReLU pass fewer per pair, identical output', async () => {
    const net = vggish(new Rng(2));
    const m = importModel(gpu, decodeModel(await exportOnnx(gpu, net, { sampleShape: [3, 8, 8] })));
    m.eval();
    const x = Tensor.from(gpu, new Rng(3).array(2 * 3 * 8 * 8), [2, 3, 8, 8]);
    const fused = await measure(() => m.call(ops.constant(x)));
    const plain = await withFusion(false, () => measure(() => m.call(ops.constant(x))));
    console.log(`imported VGG-style graph, eval dispatches: fused ${fused.all} (relu ${fused.relu}), unfused ${plain.all} (relu ${plain.relu})`);
    expect(fused.relu).toBe(0);
    expect(fused.all).toBe(plain.all - plain.relu);
    expect(plain.relu).toBeGreaterThanOrEqual(4);
    expect(bits(fused.out)).toEqual(bits(plain.out));
    // The original module gives the same numbers (same kernels).
    const direct = await measure(() => net.eval().call(ops.constant(x)));
    expect(bits(direct.out)).toEqual(bits(fused.out));
    // In training with BatchNorm trainable ('auto' → batch statistics) the BatchNormalization→Relu pair
    // does not fuse; the Conv→Relu and Gemm→Relu pairs do.
    m.train();
    const train = await measure(() => m.call(ops.constant(x)));
    expect(train.relu).toBe(plain.relu / 4);
    m.dispose(); net.dispose(); x.dispose();
  });

  it('no fusion where the pre-ReLU value is read elsewhere: a second consumer, runTo\'s target, a cut point, a graph output', async () => {
    // y = relu(c) + c: the Conv's output has two readers.
    class TwoReaders extends Module {
      readonly conv = this.child('conv', new Conv2d(gpu, 3, 4, 3, { padding: 1, rng: new Rng(4) }));
      readonly conv2 = this.child('conv2', new Conv2d(gpu, 4, 4, 1, { rng: new Rng(5) }));
      forward(x: Variable) {
        const c = this.conv.call(x);
        return ops.relu(this.conv2.call(ops.add(ops.relu(c), c)));
      }
    }
    const net = new TwoReaders();
    const bytes = await exportOnnx(gpu, net, { sampleShape: [3, 5, 5] });
    expect(opsOf(bytes)).toEqual(['Conv', 'Relu', 'Add', 'Conv', 'Relu']);
    const load = () => { const m = importModel(gpu, decodeModel(bytes)); m.eval(); return m; };
    const m = load();
    const x = Tensor.from(gpu, new Rng(6).array(3 * 5 * 5), [1, 3, 5, 5]);
    const run = (mm: OnnxModule, target?: string) => measure(() => (target ? mm.runTo(ops.constant(x), target) : mm.call(ops.constant(x))));
    const fused = await run(m), plain = await withFusion(false, () => run(m));
    expect([fused.relu, plain.relu]).toEqual([plain.relu / 2, plain.relu]);   // only the last Conv→Relu fused
    expect(bits(fused.out)).toEqual(bits(plain.out));

    // runTo a pre-ReLU value (feature extraction): the Conv's own output, negative values included.
    const conv2Out = m.graph.nodes[3]!.outputs[0]!;
    const feat = await run(m, conv2Out), featPlain = await withFusion(false, () => run(m, conv2Out));
    expect(bits(feat.out)).toEqual(bits(featPlain.out));
    expect(feat.out.some((v) => v < 0)).toBe(true);

    // cutAt the second Conv: its output feeds the new head, not the Relu; the cut model's logits
    // equal the unfused ones.
    const cut = load().cutAt(m.graph.nodes[3]!.name, 3, 1);
    const a = await run(cut), b = await withFusion(false, () => run(cut));
    expect(bits(a.out)).toEqual(bits(b.out));
    const feats = await run(cut, cut.headInput);
    expect(feats.out.some((v) => v < 0)).toBe(true);

    // A graph whose output is the Conv's (a model ending in Conv, then Relu as a dead branch is not
    // exported, so drive it through `output`): the module's output value is never fused away.
    const m2 = load();
    m2.output = conv2Out;
    const o = await run(m2);
    expect(bits(o.out)).toEqual(bits(featPlain.out));
    m.dispose(); cut.dispose(); m2.dispose(); net.dispose(); x.dispose();
  });
});
