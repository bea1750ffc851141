// Fused activations in autograd: conv2d with `activation: 'relu'`, linear with 'relu', and batchNorm
// (running statistics) with `relu`. Each is one op (one forward ReLU pass fewer than the unfused pair)
// whose forward and gradients equal the unfused chain's, and whose gradients are the derivatives of
// the float64 reference (central differences).

import { beforeAll, describe, expect, it } from 'vitest';
import { Tensor, type Gpu } from '../../src/gpu/index.js';
import { backward, tapeLength, Variable } from '../../src/autograd/variable.js';
import * as ops from '../../src/autograd/ops.js';
import type { Conv2dOptions } from '../../src/kernels/conv2d.js';
import { batchNorm2dInferenceReluRef, conv2dRef, denseRef } from '../../src/kernels/reference.js';
import { device, expectClose, gradcheck, Rng } from '../helpers.js';

let gpu: Gpu;
beforeAll(async () => { gpu = await device(); });

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
// NOTE: central differences straddle the ReLU's kink when a pre-activation lies within eps of 0; with
// eps = 1e-6 (float64 reference) that is rare enough for these sizes to never happen at these seeds.
const FD = { eps: 1e-6, rtol: 1e-3, atol: 1e-5 };

/** Runs f on fresh leaves, backpropagates dY; returns the output, the gradients and the dispatches. */
async function run(f: (vs: Variable[]) => Variable, leaves: { data: Float32Array; shape: number[] }[], dY: Float32Array) {
  const vs = leaves.map((l) => new Variable(Tensor.from(gpu, l.data, l.shape), true));
  const d0 = gpu.dispatchCount, t0 = tapeLength(), before = new Map(gpu.dispatchesByName);
  const y = f(vs);
  const fwdDispatches = gpu.dispatchCount - d0, ops = tapeLength() - t0;
  // Dispatches of the elementwise ReLU kernels (relu.v1, relu.v2, … whatever version runs).
  const reluDispatches = [...gpu.dispatchesByName].filter(([k]) => k.startsWith('relu.')).reduce((s, [k, v]) => s + v - (before.get(k) ?? 0), 0);
  const out = await y.read();
  backward(y, { grad: Tensor.from(gpu, dY, y.shape) });
  const grads = await Promise.all(vs.map((v) => v.grad!.read()));
  vs.forEach((v) => v.dispose());
  return { out, grads, fwdDispatches, reluDispatches, ops };
}

describe('conv2d + ReLU fused (autograd)', () => {
  const cases: [string, number[], number[], Conv2dOptions, boolean][] = [
    ['3×3 pad 1 with bias', [2, 3, 7, 7], [5, 3, 3, 3], { padding: 1 }, true],
    ['strided, grouped, no bias', [1, 4, 9, 9], [6, 2, 3, 3], { stride: 2, padding: [1, 0, 0, 1], groups: 2 }, false],
    ['1×1 with bias, v1 kernels', [2, 5, 4, 4], [3, 5, 1, 1], { version: 1 }, true],
  ];
  it.each(cases)('%s: same forward and gradients as conv2d → relu; gradients match finite differences', async (_name, xs, ws, o, bias) => {
    const rng = new Rng(xs.length * 31 + ws[0]!);
    const x = rng.array(numel(xs)), w = rng.array(numel(ws), -0.5, 0.5), b = bias ? rng.array(ws[0]!) : null;
    const leaves = [{ data: x, shape: xs }, { data: w, shape: ws }, ...(b ? [{ data: b, shape: [ws[0]!] }] : [])];
    const yShape = conv2dRef(x, xs, w, ws, b, o).shape;
    const dY = rng.array(numel(yShape));
    const fused = await run(([vx, vw, vb]) => ops.conv2dRelu(vx!, vw!, vb ?? null, o), leaves, dY);
    const plain = await run(([vx, vw, vb]) => ops.relu(ops.conv2d(vx!, vw!, vb ?? null, o)), leaves, dY);
    expect([fused.ops, plain.ops]).toEqual([1, 2]);
    // The fused forward launches the same kernels as the unfused one, minus the ReLU's.
    expect(fused.reluDispatches).toBe(0);
    expect(plain.reluDispatches).toBeGreaterThan(0);
    expect(fused.fwdDispatches).toBe(plain.fwdDispatches - plain.reluDispatches);
    const ref = conv2dRef(x, xs, w, ws, b, { ...o, activation: 'relu' }).y;
    expectClose('fused forward vs reference', fused.out, ref, 1e-4, 1e-5);
    expect(Array.from(fused.out)).toEqual(Array.from(plain.out));
    const names = ['dX', 'dW', 'db'];
    fused.grads.forEach((g, i) => {
      // The mask [y > 0] and the convolution backward are the unfused path's: equal bit for bit.
      expect(Array.from(g), `${names[i]} fused vs unfused`).toEqual(Array.from(plain.grads[i]!));
    });
    const fx = (v: Float64Array) => conv2dRef(v, xs, w, ws, b, { ...o, activation: 'relu' }).y;
    const fw = (v: Float64Array) => conv2dRef(x, xs, v, ws, b, { ...o, activation: 'relu' }).y;
    gradcheck('dX', fx, x, dY, fused.grads[0]!, FD);
    gradcheck('dW', fw, w, dY, fused.grads[1]!, FD);
    if (b) gradcheck('db', (v) => conv2dRef(x, xs, w, ws, v, { ...o, activation: 'relu' }).y, b, dY, fused.grads[2]!, FD);
  });
});

describe('batchNorm (running statistics) + ReLU fused (autograd)', () => {
  it.each([[[3, 4, 5, 6]], [[2, 3, 8, 8]], [[5, 6]]])('%j: same forward and gradients as batchNorm → relu; finite differences', async (shape) => {
    const C = shape[1]!;
    const rng = new Rng(numel(shape));
    const x = rng.array(numel(shape)), gamma = rng.array(C, 0.5, 1.5), beta = rng.array(C, -0.5, 0.5);
    const rm = rng.array(C, -0.3, 0.3), rv = rng.array(C, 0.5, 1.5);
    const dY = rng.array(numel(shape));
    const trm = Tensor.from(gpu, rm), trv = Tensor.from(gpu, rv);
    const bn = (relu: boolean) => ([vx, vg, vb]: Variable[]) =>
      ops.batchNorm(vx!, { gamma: vg!, beta: vb!, runningMean: trm, runningVar: trv, eps: 1e-5, momentum: 0.1, stats: 'running', relu });
    const leaves = [{ data: x, shape }, { data: gamma, shape: [C] }, { data: beta, shape: [C] }];
    const fused = await run(bn(true), leaves, dY);
    const plain = await run((vs) => ops.relu(bn(false)(vs)), leaves, dY);
    expect([fused.ops, plain.ops]).toEqual([1, 2]);
    // The fused forward launches the same kernels as the unfused one, minus the ReLU's.
    expect(fused.reluDispatches).toBe(0);
    expect(plain.reluDispatches).toBeGreaterThan(0);
    expect(fused.fwdDispatches).toBe(plain.fwdDispatches - plain.reluDispatches);
    const f = (xv: ArrayLike<number>, g: ArrayLike<number>, b: ArrayLike<number>) => batchNorm2dInferenceReluRef(xv, shape, g, b, rm, rv, 1e-5);
    expectClose('fused forward vs reference', fused.out, f(x, gamma, beta), 1e-4, 1e-2);
    expect(Array.from(fused.out, (v) => v + 0)).toEqual(Array.from(plain.out, (v) => v + 0));
    fused.grads.forEach((g, i) => expect(Array.from(g), ['dX', 'dGamma', 'dBeta'][i]).toEqual(Array.from(plain.grads[i]!)));
    gradcheck('dX', (v) => f(v, gamma, beta), x, dY, fused.grads[0]!, FD);
    gradcheck('dGamma', (v) => f(x, v, beta), gamma, dY, fused.grads[1]!, FD);
    gradcheck('dBeta', (v) => f(x, gamma, v), beta, dY, fused.grads[2]!, FD);
    trm.dispose(); trv.dispose();
  });

  it('with batch statistics the ReLU stays a separate op (BN+ReLU fusion is inference only)', async () => {
    const shape = [2, 3, 4, 4];
    const rng = new Rng(3);
    const trm = Tensor.zeros(gpu, [3]), trv = Tensor.from(gpu, [1, 1, 1], [3]);
    const leaves = [{ data: rng.array(numel(shape)), shape }, { data: new Float32Array(3).fill(1), shape: [3] }, { data: new Float32Array(3), shape: [3] }];
    const r = await run(([vx, vg, vb]) => ops.batchNorm(vx!, { gamma: vg!, beta: vb!, runningMean: trm, runningVar: trv, eps: 1e-5, momentum: 0.1, stats: 'batch', relu: true }),
      leaves, rng.array(numel(shape)));
    expect(r.ops).toBe(2);
    expect(r.out.every((v) => v >= 0)).toBe(true);
    trm.dispose(); trv.dispose();
  });
});

describe('linear + ReLU fused (autograd)', () => {
  it('[5, 7]·[6, 7]ᵀ + b: same forward and gradients as linear → relu; finite differences', async () => {
    const [N, C, K] = [5, 7, 6];
    const rng = new Rng(57);
    const x = rng.array(N * C), w = rng.array(K * C, -0.5, 0.5), b = rng.array(K, -0.3, 0.3), dY = rng.array(N * K);
    const leaves = [{ data: x, shape: [N, C] }, { data: w, shape: [K, C] }, { data: b, shape: [K] }];
    const fused = await run(([vx, vw, vb]) => ops.linear(vx!, vw!, vb!, 'relu'), leaves, dY);
    const plain = await run(([vx, vw, vb]) => ops.relu(ops.linear(vx!, vw!, vb!)), leaves, dY);
    expect([fused.ops, plain.ops, fused.reluDispatches]).toEqual([1, 2, 0]);
    expect(fused.fwdDispatches).toBe(plain.fwdDispatches - plain.reluDispatches);
    const f = (xv: ArrayLike<number>, wv: ArrayLike<number>, bv: ArrayLike<number>) => denseRef(xv, wv, bv, N, C, K).map((v) => Math.max(0, v));
    expectClose('fused forward vs reference', fused.out, f(x, w, b), 1e-4, 1e-5);
    expect(Array.from(fused.out, (v) => v + 0)).toEqual(Array.from(plain.out, (v) => v + 0));
    fused.grads.forEach((g, i) => expect(Array.from(g), ['dX', 'dW', 'db'][i]).toEqual(Array.from(plain.grads[i]!)));
    gradcheck('dX', (v) => f(v, w, b), x, dY, fused.grads[0]!, FD);
    gradcheck('dW', (v) => f(x, v, b), w, dY, fused.grads[1]!, FD);
    gradcheck('db', (v) => f(x, w, v), b, dY, fused.grads[2]!, FD);
  });
});
