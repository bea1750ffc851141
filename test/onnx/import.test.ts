// The importer against ONNX data: every backend node test the normalizer accepts runs through the
// trainable module and matches the reference outputs; the real models (MNIST CNNs, an MLP with
// BatchNorm, a torch-exported ResNet34) match their reference outputs; the imported graphs train;
// cutAt attaches new heads; torchvision names and layer groups for a recognised ResNet34.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { Tensor, type Gpu } from '../../src/gpu/index.js';
import * as ops from '../../src/autograd/ops.js';
import { noGrad, releaseTape } from '../../src/autograd/variable.js';
import { decodeModel, OnnxError, type OnnxTensor } from '../../src/onnx/reader.js';
import { importModel, type OnnxModule } from '../../src/onnx/import.js';
import { hasOnnxData, listBackendTests, loadTestDataSets, onnxDataDir } from '../../src/onnx/testdata.js';
import { freeze, groupParameters } from '../../src/nn/groups.js';
import { Learner, type Batch } from '../../src/train/learner.js';
import { device, errors, Rng } from '../helpers.js';

const HAVE = hasOnnxData();
if (!HAVE) console.warn(`ONNX test data not found at ${onnxDataDir()}: importer tests against it are skipped (set WGTRAIN_ONNX_DATA)`);

let gpu: Gpu;
beforeAll(async () => { gpu = await device(); });

const load = (path: string) => decodeModel(new Uint8Array(readFileSync(path)));
const f32 = (t: OnnxTensor) => Float32Array.from(t.data as ArrayLike<number>);

async function run(m: OnnxModule, input: OnnxTensor): Promise<Float32Array> {
  m.eval();
  const x = Tensor.from(gpu, f32(input), input.dims);
  const y = noGrad(() => m.call(ops.constant(x)));
  const out = await y.read();
  releaseTape();
  x.dispose();
  return out;
}

/** Max |a − b| / (atol + rtol·|b|) ≤ 1 over all elements (the ONNX runner's criterion). */
function closeEnough(a: ArrayLike<number>, b: ArrayLike<number>, rtol = 1e-3, atol = 1e-5): number {
  let worst = 0;
  for (let i = 0; i < b.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / (atol + rtol * Math.abs(b[i]!)));
  return worst;
}

describe.skipIf(!HAVE)('backend node tests through the importer', () => {
  for (const suite of ['node', 'node_opset11', 'node_opset9']) {
    it(`${suite}: every float test the normalizer accepts matches its reference output`, async () => {
      let ran = 0, refused = 0;
      const failures: string[] = [];
      for (const t of listBackendTests(join(onnxDataDir(), suite))) {
        let sets, model;
        try { sets = loadTestDataSets(t.dir); model = load(t.modelPath); } catch (e) {
          if (e instanceof OnnxError) { refused++; continue; }   // e.g. int8 test data
          throw e;
        }
        const set = sets[0];
        if (!set || set.outputs.length !== 1 || !set.inputs.length) { refused++; continue; }
        const first = model.graph.inputs[0]!;
        if (set.inputs.some((x) => x.dataType !== 1 && x.dataType !== 11 && x.dataType !== 10) && set.inputs[0]!.dataType !== 1) { refused++; continue; }
        const bind = new Map<string, OnnxTensor>(model.graph.inputs.slice(1).map((v, i) => [v.name, set.inputs[i + 1]!]));
        let m: OnnxModule;
        try {
          m = importModel(gpu, model, { bindInputs: bind, inputShapes: { [first.name]: set.inputs[0]!.dims } });
        } catch (e) {
          if (e instanceof OnnxError) { refused++; if (process.env.WG_VERBOSE) console.log(`refused ${t.name}: ${e.message.slice(0, 160)}`); continue; }
          throw e;
        }
        try {
          const got = await run(m, set.inputs[0]!);
          const want = f32(set.outputs[0]!);
          const w = got.length === want.length ? closeEnough(got, want) : Infinity;
          if (!(w <= 1)) failures.push(`${t.name}: ${got.length === want.length ? `max err ratio ${w.toFixed(2)} (max rel ${errors(got, want).maxRel.toExponential(2)})` : `${got.length} values, want ${want.length}`}`);
          ran++;
        } catch (e) {
          if (e instanceof OnnxError) { refused++; if (process.env.WG_VERBOSE) console.log(`refused at run ${t.name}: ${e.message.slice(0, 160)}`); } else failures.push(`${t.name}: ${(e as Error).message.split('\n')[0]}`);
        } finally {
          m.dispose();
        }
      }
      console.log(`${suite}: ${ran} ran, ${refused} refused with an OnnxError, ${failures.length} failed${failures.length ? `:\n  ${failures.join('\n  ')}` : ''}`);
      expect(failures).toEqual([]);
      expect(ran).toBeGreaterThan(suite === 'node' ? 100 : 15);
    }, 600_000);
  }
});

describe.skipIf(!HAVE)('real models', () => {
  it('mnist-8 (CNTK, IR 3) matches its three official test sets', async () => {
    const m = importModel(gpu, load(join(onnxDataDir(), 'real/mnist-8/model.onnx')));
    for (const set of loadTestDataSets(join(onnxDataDir(), 'real/mnist-8'))) {
      const got = await run(m, set.inputs[0]!);
      expect(closeEnough(got, f32(set.outputs[0]!))).toBeLessThanOrEqual(1);
    }
    m.dispose();
  });

  for (const name of ['cnn_mnist_pytorch1.1', 'mnist_mlp_bn_pytorch1.7']) {
    it(`${name} matches its reference output`, async () => {
      const dir = join(onnxDataDir(), 'real', name);
      const m = importModel(gpu, load(join(dir, 'model.onnx')));
      const set = loadTestDataSets(dir)[0]!;
      const got = await run(m, set.inputs[0]!);
      const e = closeEnough(got, f32(set.outputs[0]!));
      console.log(`${name}: max err ratio ${e.toFixed(3)}`);
      expect(e).toBeLessThanOrEqual(1);
      m.dispose();
    });
  }

  it('resnet34_torchstyle: detected as ResNet34, matches onnxruntime, torchvision names, 3 layer groups', async () => {
    const dir = join(onnxDataDir(), 'resnet34_torchstyle');
    const model = load(join(dir, 'model.onnx'));
    const m = importModel(gpu, model);
    expect(m.family).toBe('resnet34');
    expect(m.hasBatchNorm).toBe(false);
    const set = loadTestDataSets(dir)[0]!;
    const got = await run(m, set.inputs[0]!);
    const want = f32(set.outputs[0]!);
    const e = errors(got, want, 1e-4);
    console.log(`resnet34_torchstyle vs onnxruntime: max abs ${e.maxAbs.toExponential(2)}, max rel ${e.maxRel.toExponential(2)}`);
    expect(closeEnough(got, want, 1e-3, 1e-4)).toBeLessThanOrEqual(1);
    expect(m.namedParameters().map(([n]) => n)).toContain('fc.weight');
    expect(m.namedParameters()[0]![0]).toMatch(/^onnx::Conv_\d+$/);
    m.dispose();
    const tv = importModel(gpu, model, { names: 'torchvision' });
    const names = tv.namedParameters().map(([n]) => n);
    expect(names.slice(0, 2)).toEqual(['conv1.weight', 'conv1.bias']);
    expect(names).toContain('layer3.1.conv2.weight');
    expect(names).toContain('layer2.0.downsample.0.weight');
    expect(names.slice(-2)).toEqual(['fc.weight', 'fc.bias']);
    const groups = groupParameters(tv).map((g) => g.map(([n]) => n));
    expect(groups).toHaveLength(3);
    expect(groups[0]!.at(-1)).toMatch(/^layer2\./);
    expect(groups[1]![0]).toMatch(/^layer3\.0\.conv1/);
    expect(groups[2]).toEqual(['fc.weight', 'fc.bias']);
    // Cut before the last Gemm and attach a 5-class head.
    tv.cutAt('before-last-gemm', 5, 1);
    expect(tv.numOutputs).toBe(5);
    expect(tv.namedParameters().slice(-2).map(([n, p]) => [n, p.shape])).toEqual([['fc.weight', [5, 512]], ['fc.bias', [5]]]);
    const y = await run(tv, { ...set.inputs[0]! });
    expect(y.length).toBe(5);
    tv.dispose();
  }, 300_000);
});

describe.skipIf(!HAVE)('imported graphs train', () => {
  it('resnet34_torchstyle with a new head, base frozen: a few steps lower the loss; the base stays bit-identical', async () => {
    const m = importModel(gpu, load(join(onnxDataDir(), 'resnet34_torchstyle/model.onnx')), { names: 'torchvision' });
    m.cutAt('before-last-gemm', 2, 3);
    freeze(m);
    const sample = (await Promise.all(m.stateDict().filter(([n]) => /^(conv1|layer3\.1\.conv2|layer4\.2\.conv2)\./.test(n)).map(async ([n, t]) => [n, Array.from(await t.read())] as const)));
    const rng = new Rng(8);
    const x = new Float32Array(4 * 3 * 64 * 64);
    const labels = Uint32Array.from([0, 1, 0, 1]);
    for (let i = 0; i < 4; i++) for (let j = 0; j < 3 * 64 * 64; j++) x[i * 3 * 64 * 64 + j] = rng.next() + (labels[i]! ? 0.5 * Math.sin(j / 50) : 0);
    const src = { length: 1, async *batches(): AsyncIterable<Batch> { yield { x, shape: [4, 3, 64, 64], labels }; } };
    const learner = new Learner(gpu, m, { numClasses: 2 });
    const hist = await learner.fit(6, src, null, { lr: 2e-3, schedule: 'constant' });
    console.log(`resnet34 head: loss ${hist.map((h) => h.trainLoss.toFixed(4)).join(' → ')}`);
    expect(hist.at(-1)!.trainLoss).toBeLessThan(hist[0]!.trainLoss);
    for (const [n, v] of sample) expect(Array.from(await m.stateDict().find(([k]) => k === n)![1].read()), n).toEqual(v);
    learner.dispose(); m.dispose();
  }, 300_000);

  it('mnist-8 cut before its last dense layer, new 3-class head, base frozen: loss falls, base bit-identical', async () => {
    const m = importModel(gpu, load(join(onnxDataDir(), 'real/mnist-8/model.onnx')));
    m.cutAt('before-last-gemm', 3, 7);
    freeze(m);
    const base = await Promise.all(m.stateDict().slice(0, -2).map(async ([n, t]) => [n, Array.from(await t.read())] as const));
    const rng = new Rng(5);
    const items = Array.from({ length: 24 }, (_, i) => {
      const x = rng.array(28 * 28, 0, 40);
      for (let j = 0; j < 100; j++) x[(i % 3) * 200 + j + 100]! += 200;   // a class-specific bright band
      return { x, label: i % 3 };
    });
    const src = {
      length: 3,
      async *batches(): AsyncIterable<Batch> {
        for (let s = 0; s < 24; s += 8) {
          const x = new Float32Array(8 * 784);
          items.slice(s, s + 8).forEach((it, i) => x.set(it.x, i * 784));
          yield { x, shape: [8, 1, 28, 28], labels: Uint32Array.from(items.slice(s, s + 8), (it) => it.label) };
        }
      },
    };
    const learner = new Learner(gpu, m, { numClasses: 3 });
    const hist = await learner.fit(6, src, null, { lr: 3e-3, schedule: 'constant' });
    console.log(`mnist-8 head: loss ${hist.map((h) => h.trainLoss.toFixed(3)).join(' → ')}`);
    expect(hist.at(-1)!.trainLoss).toBeLessThan(hist[0]!.trainLoss * 0.7);
    for (const [n, v] of base) expect(Array.from(await m.stateDict().find(([k]) => k === n)![1].read()), n).toEqual(v);
    learner.dispose(); m.dispose();
  });
});
