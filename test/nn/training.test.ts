// Training-step behaviour of autograd + nn + optim on a small CNN: whole-network gradients against
// a float64 reference, overfitting one batch, freezing (bit-identical frozen weights, frozen BN
// statistics, no weight-grad kernels), per-group LRs, stable memory, and capture/replay == eager.

import { beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../../src/gpu/index.js';
import { Tensor } from '../../src/gpu/index.js';
import { backward } from '../../src/autograd/variable.js';
import * as ops from '../../src/autograd/ops.js';
import { CapturedStep } from '../../src/autograd/capture.js';
import { labelsTensor } from '../../src/kernels/softmax.js';
import { freezeTo, groupParameters } from '../../src/nn/groups.js';
import { Optimizer, type OptimizerKind } from '../../src/optim/optimizer.js';
import { device, gradcheck, Rng } from '../helpers.js';
import { SmallNet, smallNetLossRef } from './smallnet.js';

const N = 4, CLASSES = 4, HW = 8;
const xShape = [N, 3, HW, HW];
let gpu: Gpu;
beforeAll(async () => { gpu = await device(); });

function batch(seed: number) {
  const rng = new Rng(seed);
  const x = rng.array(N * 3 * HW * HW, -1, 1);
  const labels = Uint32Array.from({ length: N }, (_, i) => (i + seed) % CLASSES);
  return { x, labels };
}

/** One eager training step; returns the loss tensor (caller reads/disposes). */
function step(net: SmallNet, opt: Optimizer | null, x: Tensor, labels: Tensor): { loss: Tensor; correct: Tensor } {
  const logits = net.call(ops.constant(x));
  const { loss, correct } = ops.crossEntropy(logits, labels);
  backward(loss);
  if (opt) { opt.step(); opt.zeroGrad(); }
  return { loss: loss.data, correct };
}

function optimizerFor(net: SmallNet, kind: OptimizerKind, lrs: number[], o = {}) {
  const groups = groupParameters(net).map((params, i) => ({ name: `g${i}`, params, lr: lrs[i] ?? lrs[0]! }));
  return new Optimizer(kind, groups, o);
}

async function readParams(net: SmallNet): Promise<Record<string, Float32Array>> {
  const out: Record<string, Float32Array> = {};
  for (const [n, t] of net.stateDict()) out[n] = await t.read();
  return out;
}

describe('whole-network gradients', () => {
  it('conv, BN, ReLU, max-pool, residual add, GAP, dense, cross-entropy vs float64 finite differences', async () => {
    const net = new SmallNet(gpu, CLASSES, { seed: 3 });
    const { x, labels } = batch(11);
    const xt = Tensor.from(gpu, x, xShape), lt = labelsTensor(gpu, labels, CLASSES);
    const { loss } = step(net, null, xt, lt);
    const params = await readParams(net);
    const p64: Record<string, Float64Array> = {};
    for (const [n, v] of Object.entries(params)) p64[n] = Float64Array.from(v);
    // Running stats were updated by the forward; the reference only needs their shapes.
    const lossRef = smallNetLossRef(p64, Float64Array.from(x), xShape, labels, CLASSES);
    expect(Math.abs((await loss.read())[0]! - lossRef)).toBeLessThan(1e-5);
    for (const [name, prm] of net.namedParameters()) {
      const g = await prm.grad!.read();
      const f = (v: Float64Array) => [smallNetLossRef({ ...p64, [name]: v }, Float64Array.from(x), xShape, labels, CLASSES)];
      gradcheck(`d loss / d ${name}`, f, p64[name]!, [1], g, { eps: 1e-6, rtol: 1e-2, atol: 1e-5, samples: 16 });
    }
    loss.dispose(); net.dispose(); xt.dispose(); lt.dispose();
  });
});

describe('training', () => {
  it('overfits one batch: loss falls below 1% of its start', async () => {
    const net = new SmallNet(gpu, CLASSES, { seed: 4 });
    const opt = optimizerFor(net, 'adam', [1e-2]);
    const { x, labels } = batch(21);
    const xt = Tensor.from(gpu, x, xShape), lt = labelsTensor(gpu, labels, CLASSES);
    const losses: number[] = [];
    for (let i = 0; i < 150; i++) {
      const { loss, correct } = step(net, opt, xt, lt);
      if (i === 0 || i % 10 === 9) losses.push((await loss.read())[0]!);
      loss.dispose(); correct.dispose();
    }
    console.log(`overfit: loss ${losses[0]!.toFixed(4)} → ${losses.at(-1)!.toExponential(2)}`);
    expect(losses.at(-1)!).toBeLessThan(0.01 * losses[0]!);
    opt.dispose(); net.dispose(); xt.dispose(); lt.dispose();
  });

  it('frozen groups: parameters and BN running stats bit-identical, no weight-grad kernels, head trains', async () => {
    const net = new SmallNet(gpu, CLASSES, { seed: 5 });
    freezeTo(net, -1); // only fc trainable
    const opt = optimizerFor(net, 'adam', [1e-3]);
    const before = await readParams(net);
    const { x, labels } = batch(31);
    const xt = Tensor.from(gpu, x, xShape), lt = labelsTensor(gpu, labels, CLASSES);
    gpu.dispatchesByName.clear();
    for (let i = 0; i < 3; i++) { const r = step(net, opt, xt, lt); r.loss.dispose(); r.correct.dispose(); }
    const after = await readParams(net);
    const kernels = [...gpu.dispatchesByName.keys()];
    for (const [n, v] of Object.entries(before)) {
      const same = v.every((e, i) => Object.is(e, after[n]![i]));
      if (n.startsWith('fc.')) expect(same, `${n} should change`).toBe(false);
      else expect(same, `${n} should be bit-identical`).toBe(true);
    }
    // Only the head trains: no conv backward kernels, no BN backward, no max-pool backward at all.
    expect(kernels.filter((k) => /^conv2d\.(dw|dx|db)|^batchnorm\.grad|^maxPool2d\.bwd|^relu\.bwd/.test(k))).toEqual([]);
    // Frozen parameters have no gradient and no optimizer state.
    for (const [n, p] of net.namedParameters()) {
      expect(p.grad).toBeNull();
      expect(opt.state.has(n)).toBe(n.startsWith('fc.'));
    }
    opt.dispose(); net.dispose(); xt.dispose(); lt.dispose();
  });

  it('unfreezing the middle group launches conv weight-grad kernels but no input-grad for the lowest trainable conv', async () => {
    const net = new SmallNet(gpu, CLASSES, { seed: 6 });
    freezeTo(net, 1); // block + fc trainable, stem frozen
    const { x, labels } = batch(41);
    const xt = Tensor.from(gpu, x, xShape), lt = labelsTensor(gpu, labels, CLASSES);
    gpu.dispatchesByName.clear();
    const r = step(net, null, xt, lt); r.loss.dispose(); r.correct.dispose();
    const names = [...gpu.dispatchesByName].map(([k, n]) => `${k}×${n}`).join(' ');
    const count = (re: RegExp) => [...gpu.dispatchesByName].filter(([k]) => re.test(k)).reduce((s, [, n]) => s + n, 0);
    // block.conv1 and block.conv2 get weight grads; block.conv2 needs dX (to reach conv1), block.conv1
    // does not (its input comes from the frozen stem).
    console.log(names);
    expect(count(/^conv2d\.dw\.v\d/), names).toBe(2);
    expect(count(/^conv2d\.dx\./), names).toBe(1);
    expect(count(/^maxPool2d\.bwd/), names).toBe(0);
    for (const [n, p] of net.namedParameters()) expect(p.grad !== null, n).toBe(!n.startsWith('conv1') && !n.startsWith('bn1'));
    net.dispose(); xt.dispose(); lt.dispose();
  });

  it('two parameter groups with their own LRs: plain SGD moves each by lr·grad', async () => {
    const net = new SmallNet(gpu, CLASSES, { seed: 7 });
    const groups = groupParameters(net);
    const opt = new Optimizer('sgd', [
      { name: 'body', params: [...groups[0]!, ...groups[1]!], lr: 1e-5 },
      { name: 'head', params: groups[2]!, lr: 1e-3 },
    ]);
    const { x, labels } = batch(51);
    const xt = Tensor.from(gpu, x, xShape), lt = labelsTensor(gpu, labels, CLASSES);
    const logits = net.call(ops.constant(xt));
    const { loss, correct } = ops.crossEntropy(logits, lt);
    backward(loss);
    const before = await readParams(net);
    const grads: Record<string, Float32Array> = {};
    for (const [n, p] of net.namedParameters()) grads[n] = await p.grad!.read();
    opt.step();
    const after = await readParams(net);
    for (const [n] of net.namedParameters()) {
      const lr = n.startsWith('fc.') ? 1e-3 : 1e-5;
      const b = before[n]!, a = after[n]!, g = grads[n]!;
      let worst = 0;
      for (let i = 0; i < a.length; i++) {
        const expected = Math.fround(b[i]! - Math.fround(lr * g[i]!));
        worst = Math.max(worst, Math.abs(a[i]! - expected) / (Math.abs(lr * g[i]!) + 1e-12));
        expect(Math.abs(a[i]! - expected)).toBeLessThanOrEqual(Math.abs(expected) * 2 ** -23 + 1e-12);
      }
      console.log(`${n}: lr ${lr}, worst |Δ − lr·g| / |lr·g| = ${worst.toExponential(2)}`);
    }
    loss.dispose(); correct.dispose(); opt.dispose(); net.dispose(); xt.dispose(); lt.dispose();
  });

  it('GPU memory in use after step 50 equals that after step 2', async () => {
    const net = new SmallNet(gpu, CLASSES, { seed: 8, dropout: 0.2 });
    const opt = optimizerFor(net, 'adamw', [1e-3, 2e-3, 5e-3]);
    const { x, labels } = batch(61);
    const xt = Tensor.from(gpu, x, xShape), lt = labelsTensor(gpu, labels, CLASSES);
    let at2 = 0;
    for (let i = 1; i <= 50; i++) {
      const { loss, correct } = step(net, opt, xt, lt);
      await loss.read();
      loss.dispose(); correct.dispose();
      if (i === 2) at2 = gpu.pool.stats.inUse;
    }
    console.log(`in use: step 2 ${at2} B, step 50 ${gpu.pool.stats.inUse} B`);
    expect(gpu.pool.stats.inUse).toBe(at2);
    opt.dispose(); net.dispose(); xt.dispose(); lt.dispose();
  });
});

describe('capture and replay', () => {
  it('a replayed step gives bit-identical numbers to eager steps (BN, dropout, Adam)', async () => {
    type Cfg = { dropout: number; kind: OptimizerKind; freeze: number; o?: object };
    const run = async (mode: 'eager' | 'replay', c: Cfg) => {
      const net = new SmallNet(gpu, CLASSES, { seed: 9, dropout: c.dropout });
      freezeTo(net, c.freeze);
      const opt = optimizerFor(net, c.kind, [1e-3, 1e-2, 1e-2], c.o);
      const xt = Tensor.empty(gpu, xShape), lt = labelsTensor(gpu, new Uint32Array(N), CLASSES);
      const losses: number[] = [];
      let cap: CapturedStep<{ loss: Tensor; correct: Tensor }> | null = null;
      for (let s = 0; s < 4; s++) {
        const { x, labels } = batch(100 + s);
        xt.write(x);
        gpu.upload(lt.buffer, labels);
        let out: { loss: Tensor; correct: Tensor };
        if (mode === 'eager') out = step(net, opt, xt, lt);
        else if (!cap) { cap = CapturedStep.capture(gpu, () => step(net, opt, xt, lt)); out = cap.outputs; }
        else out = cap.replay();
        losses.push((await out.loss.read())[0]!);
        if (mode === 'eager') { out.loss.dispose(); out.correct.dispose(); }
      }
      const params = await readParams(net);
      cap?.dispose(); opt.dispose(); net.dispose(); xt.dispose(); lt.dispose();
      return { losses, params };
    };
    const cfgs: Cfg[] = [
      { dropout: 0.25, kind: 'adam', freeze: 1 },
      { dropout: 0, kind: 'sgd', freeze: 0, o: { momentum: 0.9, nesterov: true, weightDecay: 1e-4 } },
      { dropout: 0.1, kind: 'adamw', freeze: 2 },
    ];
    for (const c of cfgs) {
      const e = await run('eager', c);
      const r = await run('replay', c);
      console.log(`${c.kind} freezeTo(${c.freeze}) dropout ${c.dropout}: losses eager ${e.losses.map((l) => l.toFixed(6)).join(' ')}; replay ${r.losses.map((l) => l.toFixed(6)).join(' ')}`);
      expect(r.losses).toEqual(e.losses);
      for (const [n, v] of Object.entries(e.params)) expect(Array.from(r.params[n]!), n).toEqual(Array.from(v));
    }
  });
});
