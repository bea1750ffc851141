// Autotuning of the real kernel families (conv2d passes, matmul): every candidate the launchers offer
// computes the same result as the heuristic default (none is rejected), the winner is no slower than
// the default on the tuner's own measurement, and after settle() the launcher runs the winner —
// whose output still matches the float64 reference.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Tensor, type Gpu, type TuneMode } from '../../src/gpu/index.js';
import { conv2d, conv2dBackwardInput, conv2dBackwardWeight, convCandidates, convGeometry } from '../../src/kernels/conv2d.js';
import { matmul, matmulCandidates } from '../../src/kernels/matmul.js';
import { conv2dBackwardInputRef, conv2dBackwardWeightRef, conv2dRef } from '../../src/kernels/reference/conv2d.js';
import { matmulRef } from '../../src/kernels/reference/matmul.js';
import { device, expectClose, Rng } from '../helpers.js';

describe('autotuning the kernel families', () => {
  let gpu: Gpu;
  let mode: TuneMode;
  beforeAll(async () => {
    gpu = await device();
    mode = gpu.tuner.mode;
    gpu.tuner.mode = 'auto';
    gpu.tuner.clear();
  });
  afterAll(() => { gpu.tuner.clear(); gpu.tuner.mode = mode; });

  /** The kernel names one call dispatches. */
  function dispatched(fn: () => Tensor): { y: Tensor; names: string[] } {
    const names: string[] = [];
    const prev = gpu.onDispatch;
    gpu.onDispatch = (d) => names.push(d.name);
    try { return { y: fn(), names }; } finally { gpu.onDispatch = prev; }
  }

  it('conv2d: forward, input and weight gradients (ResNet-like 3×3 stride-2 layer)', async () => {
    const rng = new Rng(11);
    const xs = [4, 32, 16, 16], ws = [48, 32, 3, 3];
    const opts = { stride: 2, padding: 1 };
    const x = Float32Array.from({ length: 4 * 32 * 256 }, () => rng.normal());
    const w = Float32Array.from({ length: 48 * 32 * 9 }, () => rng.normal() * 0.1);
    const g = convGeometry(xs, ws, opts);
    const dy = Float32Array.from({ length: 4 * 48 * g.P * g.Q }, () => rng.normal());
    const X = Tensor.from(gpu, x, xs), W = Tensor.from(gpu, w, ws), DY = Tensor.from(gpu, dy, [4, 48, g.P, g.Q]);
    for (const pass of ['fwd', 'dx', 'dw'] as const) {
      const cands = convCandidates(g, pass, gpu);
      expect(cands.length).toBeGreaterThan(2);
      expect(new Set(cands).size).toBe(cands.length);
    }
    // First use: the heuristic defaults run, and the three classes are queued.
    conv2d(X, W, undefined, opts).dispose();
    conv2dBackwardInput(DY, W, xs, opts).dispose();
    conv2dBackwardWeight(X, DY, ws, opts).dispose();
    expect(gpu.tuner.pending).toBe(3);
    const results = await gpu.tuner.settle();
    expect(results.map((r) => r.key.split('|')[0])).toEqual(['conv2d.fwd', 'conv2d.dx', 'conv2d.dw']);
    for (const r of results) {
      console.log(r.key, '→', r.pick, JSON.stringify(r.ms));
      expect(r.rejected).toBeUndefined(); // every variant computes the same convolution
      expect(Object.values(r.ms).every((v) => v !== null && v > 0)).toBe(true);
      expect(r.ms[r.pick]!).toBeLessThanOrEqual(r.ms[r.candidates[0]!]!);
    }
    // Now the launchers run the winners: check each against the reference, and that the winner ran.
    const fwd = dispatched(() => conv2d(X, W, undefined, opts));
    expectClose('tuned conv2d forward', await fwd.y.read(), conv2dRef(x, xs, w, ws, null, opts).y, 1e-3, 1e-3);
    const dx = dispatched(() => conv2dBackwardInput(DY, W, xs, opts));
    expectClose('tuned conv2d dX', await dx.y.read(), conv2dBackwardInputRef(dy, w, ws, xs, opts), 1e-3, 1e-3);
    const dw = dispatched(() => conv2dBackwardWeight(X, DY, ws, opts));
    expectClose('tuned conv2d dW', await dw.y.read(), conv2dBackwardWeightRef(x, xs, dy, ws, opts), 1e-3, 1e-3);
    for (const [r, d] of [[results[0]!, fwd], [results[1]!, dx], [results[2]!, dw]] as const) {
      expect(d.names.some((n) => n.includes(r.pick === 'v1' ? '.v1' : '.v2'))).toBe(true);
      d.y.dispose();
    }
    // A pinned version is never overridden by the tuner.
    const pinned = dispatched(() => conv2d(X, W, undefined, { ...opts, version: 1 }));
    expect(pinned.names).toEqual(['conv2d.fwd.v1']);
    pinned.y.dispose();
    [X, W, DY].forEach((t) => t.dispose());
  });

  it('matmul: a dense-layer product (few rows)', async () => {
    // A conv class that picked v3 (im2col + GEMM) queued its GEMM's class: settle those first.
    await gpu.tuner.settle();
    const rng = new Rng(12);
    const M = 6, N = 256, K = 1024;
    const a = Float32Array.from({ length: M * K }, () => rng.normal()), b = Float32Array.from({ length: N * K }, () => rng.normal());
    const A = Tensor.from(gpu, a, [M, K]), B = Tensor.from(gpu, b, [N, K]);
    const cands = matmulCandidates(M, N, K, { transA: false, transB: true }, gpu);
    expect(cands.length).toBeGreaterThan(2);
    matmul(A, B, { transB: true }).dispose();
    expect(gpu.tuner.pending).toBe(1);
    const [r] = await gpu.tuner.settle();
    console.log(r!.key, '→', r!.pick, JSON.stringify(r!.ms));
    expect(r!.rejected).toBeUndefined();
    expect(r!.ms[r!.pick]!).toBeLessThanOrEqual(r!.ms[r!.candidates[0]!]!);
    const C = matmul(A, B, { transB: true });
    expectClose('tuned matmul', await C.read(), matmulRef(a, b, M, N, K, { transB: true }), 1e-3, 0.5);
    [A, B, C].forEach((t) => t.dispose());
  });
});
