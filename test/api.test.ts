// The README's library example, run against the package entry point (src/index.ts).
import { expect, it } from 'vitest';
import { getGpu, Tensor, kernels, reference } from '../src/index.js';

it('README example: conv2d + relu through the public API matches the reference', async () => {
  const gpu = await getGpu();
  const xs = Float32Array.from({ length: 2 * 3 * 32 * 32 }, (_, i) => Math.sin(i * 0.37));
  const x = Tensor.from(gpu, xs, [2, 3, 32, 32]);
  const w = Tensor.from(gpu, new Float32Array(8 * 3 * 3 * 3).fill(0.01), [8, 3, 3, 3]);
  const y = kernels.relu(kernels.conv2d(x, w, undefined, { padding: 1 }));
  expect(y.shape).toEqual([2, 8, 32, 32]);
  const want = reference.reluRef(reference.conv2dRef(xs, [2, 3, 32, 32], new Float32Array(8 * 27).fill(0.01), [8, 3, 3, 3], null, { padding: 1 }).y);
  const got = await y.read();
  let worst = 0;
  for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
  expect(worst).toBeLessThan(1e-5);
  [x, w, y].forEach((t) => t.dispose());
});

it('README example: import the demo model, cut, fine-tune briefly on the demo data, export', async () => {
  const { readFileSync } = await import('node:fs');
  const { getGpu, onnx, train, node, data } = await import('../src/index.js');
  const gpu = await getGpu();
  const model = onnx.importModel(gpu, onnx.decodeModel(readFileSync('weights/fashion5-source-cnn.onnx')));
  model.cutAt('before-last-gemm', 5);
  const ds = await node.openImageFolder('examples/fashion5');
  const split = data.stratifiedSplit(ds.items, { valFraction: 0.2, seed: 42, classes: ds.classes });
  const prep = { ...data.defaultPreprocessing(28), resizeRatio: 1 };
  // (the README trains on everything; the test on a few batches per class)
  const sub = (items: typeof split.train, n: number) => ds.classes.flatMap((_, k) => items.filter((i) => i.label === k).slice(0, n));
  const loader = (items: typeof split.train, t: boolean) => {
    const l = new data.DataLoader(ds, items, { batchSize: 32, preprocessing: prep, transform: t ? 'train' : 'eval', dropLast: t });
    return { get length() { return l.length; }, batches: (e: number) => l.batches(e) };
  };
  const learner = new train.Learner(gpu, model, { numClasses: 5 });
  await learner.fineTune(2, loader(sub(split.train, 64), true), loader(sub(split.val, 20), false), { baseLr: 1e-2, freezeEpochs: 1 });
  const last = learner.history.at(-1)!;
  expect(last.stage).toBe('unfrozen');
  expect(last.lrs).toHaveLength(3);
  expect(last.valAcc!).toBeGreaterThan(0.3);
  const bytes = await onnx.exportOnnx(gpu, model, { sampleShape: [3, 28, 28] });
  expect(onnx.decodeModel(bytes).graph.nodes.length).toBeGreaterThan(10);
  learner.dispose(); model.dispose();
}, 120_000);
