// The benchmark engine: every case's check against the CPU reference passes for the real kernels on
// odd shapes (so the slicing of big problems is right), a deliberately wrong result is caught and
// never timed, the roofline arithmetic, and an end-to-end step measured through the Learner.

import { beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../../src/gpu/index.js';
import { scale } from '../../src/kernels/elementwise.js';
import {
  adamCase, batchNormCase, convCase, matmulCase, poolCase, reluCase, softmaxXentCase,
} from '../../src/bench/kernels.js';
import { measureCase } from '../../src/bench/run.js';
import { raiseRoofline, roofPercent } from '../../src/bench/roofline.js';
import { measureE2e } from '../../src/bench/e2e.js';
import { median } from '../../src/bench/timing.js';
import { kernelCases, suiteConfig } from '../../src/bench/suite.js';
import { resnet34Convs, vgg16Convs, type ConvLayer } from '../../src/bench/shapes.js';
import { relErr, spread, take } from '../../src/bench/validate.js';
import { FAMILIES, type BenchCase, type Roofline } from '../../src/bench/types.js';
import { device } from '../helpers.js';

let gpu: Gpu;
beforeAll(async () => { gpu = await device(); });

const ROOF: Roofline = { peakGflops: 10, peakProbe: 'test', copyGBs: 2, copyProbe: 'test' };
const QUICK_TIME = { samples: 2, targetMs: 1, maxReps: 2, method: 'queue-drain' as const };

/** The case with its first launch's outputs corrupted: each output × 1.01. */
function corrupted(c: BenchCase): BenchCase {
  return {
    ...c,
    setup(g) {
      const inst = c.setup(g);
      return {
        ...inst,
        run: () => inst.run().map((t) => { const bad = scale(t, 1.01); t.dispose(); return bad; }),
      };
    },
  };
}

describe('validation helpers', () => {
  it('spread picks evenly spaced indices including both ends', () => {
    expect(spread(64, 4)).toEqual([0, 21, 42, 63]);
    expect(spread(3, 8)).toEqual([0, 1, 2]);
    expect(spread(5, 1)).toEqual([0]);
  });

  it('take gathers [ns, cs, inner] from [N, C, inner]', () => {
    const x = Float32Array.from({ length: 2 * 3 * 2 }, (_, i) => i); // [2, 3, 2]
    expect([...take(x, 3, 2, [1], [0, 2])]).toEqual([6, 7, 10, 11]);
  });

  it('relErr is relative to the output scale and fails on non-finite values', () => {
    expect(relErr([1, 2, 4], [1, 2, 4])).toBe(0);
    expect(relErr([1, 2, 4.04], [1, 2, 4])).toBeCloseTo(0.01, 12);
    expect(relErr([NaN], [1])).toBe(Infinity);
  });
});

describe('kernel cases validate against the CPU references', () => {
  // Odd shapes: 7×9 images, strides, an odd channel count, a batch of 3.
  const odd: ConvLayer = { model: 'resnet34', name: 'odd', N: 3, C: 5, H: 7, W: 9, K: 11, R: 3, stride: 2, pad: 1, count: 1 };
  const cases: BenchCase[] = [
    matmulCase('odd', 'test', { M: 33, N: 17, K: 19 }),
    matmulCase('oddT', 'test', { M: 17, N: 33, K: 7, transA: true }),
    matmulCase('oddBT', 'test', { M: 5, N: 33, K: 20, transB: true }),
    convCase(odd, 'fwd'), convCase(odd, 'dx'), convCase(odd, 'dw'),
    convCase({ ...odd, R: 1, pad: 0 }, 'fwd'),
    poolCase({ model: 'resnet34', name: 'p', N: 2, C: 3, H: 9, W: 7, kernel: 3, stride: 2, pad: 1 }, 'fwd'),
    poolCase({ model: 'resnet34', name: 'p', N: 2, C: 3, H: 9, W: 7, kernel: 3, stride: 2, pad: 1 }, 'bwd'),
    batchNormCase({ model: 'resnet34', name: 'bn', N: 2, C: 5, H: 3, W: 7, count: 1 }, 'fwd'),
    batchNormCase({ model: 'resnet34', name: 'bn', N: 2, C: 5, H: 3, W: 7, count: 1 }, 'bwd'),
    reluCase({ model: 'vgg16', name: 'r', N: 1, C: 3, H: 5, W: 7, count: 1 }, 'fwd'),
    reluCase({ model: 'vgg16', name: 'r', N: 1, C: 3, H: 5, W: 7, count: 1 }, 'bwd'),
    softmaxXentCase('h', 'test', 7, 13, 'fwd'), softmaxXentCase('h', 'test', 7, 13, 'bwd'),
    adamCase('p', 'test', 333),
  ];
  it.each(cases.map((c) => [c.id, c] as const))('%s', async (_, c) => {
    const r = await measureCase(gpu, c, ROOF, QUICK_TIME);
    expect(r.error).toBeUndefined();
    expect(r.validation.ok, `${r.validation.what}: ${r.validation.err}`).toBe(true);
    expect(r.validation.err).toBeLessThanOrEqual(r.validation.tol);
    expect(r.ms).toBeGreaterThan(0);
    expect(r.samples).toBe(2);
    expect(r.variant).not.toBe('');
    expect(r.kernels.length).toBeGreaterThan(0);
    if (c.family.startsWith('conv2d') || c.family === 'matmul') expect(r.kernels.join(' ')).toMatch(/\.v\d/);
    expect(r.roofPct).toBeGreaterThan(0);
  });

  it('a deliberately wrong result is caught and not timed', async () => {
    for (const c of [reluCase({ model: 'vgg16', name: 'r', N: 1, C: 3, H: 5, W: 7, count: 1 }, 'fwd'), convCase(odd, 'dw'), matmulCase('bad', 'test', { M: 9, N: 9, K: 9 })]) {
      const r = await measureCase(gpu, corrupted(c), ROOF, QUICK_TIME);
      expect(r.validation.ok).toBe(false);
      expect(r.validation.err).toBeGreaterThan(5e-3); // the 1% error, seen as ≈ 1e-2 of the scale
      expect(r.ms).toBeNull();
      expect(r.samples).toBe(0);
      expect(r.error).toMatch(/wrong result/);
    }
  });

  it('a kernel that throws is reported, not fatal', async () => {
    const c = matmulCase('throws', 'test', { M: 4, N: 4, K: 4 });
    const r = await measureCase(gpu, { ...c, setup: () => { throw new Error('boom'); } }, ROOF, QUICK_TIME);
    expect(r.error).toBe('boom');
    expect(r.ms).toBeNull();
  });
});

describe('suite', () => {
  it('--quick covers every kernel family', () => {
    const families = new Set(kernelCases(suiteConfig(true)).map((c) => c.family));
    expect([...families].sort()).toEqual([...FAMILIES].sort());
  });

  it('layer tables: VGG16 has 13 conv layers, ResNet34 36, with torchvision shapes', () => {
    expect(vgg16Convs(224, 1).reduce((s, l) => s + l.count, 0)).toBe(13);
    expect(resnet34Convs(224, 1).reduce((s, l) => s + l.count, 0)).toBe(36);
    const l4 = resnet34Convs(224, 1).find((l) => l.name === 'layer4.0.conv2')!;
    expect([l4.C, l4.H, l4.K]).toEqual([512, 7, 512]);
    expect(vgg16Convs(224, 1).find((l) => l.name === 'features.28' || l.name === 'features.24')!.H).toBe(14);
  });

  it('case ids are unique', () => {
    for (const quick of [true, false]) {
      const ids = kernelCases(suiteConfig(quick)).map((c) => c.id);
      expect(new Set(ids).size).toBe(ids.length);
    }
  });
});

describe('roofline arithmetic', () => {
  it('compute-bound kernels are measured against the peak, memory-bound ones against bandwidth', () => {
    // 1 GFLOP over 1 MB: intensity 1000 flop/B × 2 GB/s = 2000 GFLOP/s > peak 10 → compute-bound.
    const c = roofPercent(ROOF, 1e9, 1e6, 200); // 5 GFLOP/s of 10
    expect(c.bound).toBe('compute');
    expect(c.pct).toBeCloseTo(50, 10);
    // 1 MFLOP over 1 MB: intensity 1 × 2 GB/s = 2 GFLOP/s attainable.
    const m = roofPercent(ROOF, 1e6, 1e6, 1); // 1 GFLOP/s of 2
    expect(m.bound).toBe('memory');
    expect(m.pct).toBeCloseTo(50, 10);
    // Pure data movement: GB/s of the copy probe's.
    expect(roofPercent(ROOF, 0, 4e6, 4).pct).toBeCloseTo(50, 10);
  });

  it('a case faster than a probe raises the ceiling and says which', () => {
    const r = raiseRoofline(ROOF, [
      { id: 'matmul/fast', flops: 1, gflops: 12, gbs: 0.1 },
      { id: 'adam/x', flops: 0, gflops: null, gbs: 3 },
      { id: 'relu/slow', flops: 0, gflops: null, gbs: 1 },
    ]);
    expect(r).toEqual({ peakGflops: 12, peakProbe: 'test; raised by matmul/fast', copyGBs: 3, copyProbe: 'test; raised by adam/x' });
    expect(raiseRoofline(ROOF, [{ id: 'a', flops: 1, gflops: 5, gbs: 1 }])).toEqual(ROOF);
  });

  it('median', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
  });
});

describe('end to end', () => {
  it('a training step of the small CNN through the Learner: time, memory, dispatches', async () => {
    const r = await measureE2e(gpu, { model: 'smallcnn', size: 8, batch: 4, frozen: false, classes: 10 }, { steps: 2, warmup: 2 });
    expect(r.error).toBeUndefined();
    expect(r.id).toBe('e2e/smallcnn@8/b4/unfrozen');
    expect(r.msPerStep).toBeGreaterThan(0);
    expect(r.imgPerSec).toBeCloseTo(4000 / r.msPerStep!, 6);
    expect(r.peakMiB).toBeGreaterThan(0);
    // Replayed: the same dispatches every step (4 convs, pools, dense, loss, backward, 10 Adam updates…).
    expect(r.dispatches).toBeGreaterThan(20);
    const frozen = await measureE2e(gpu, { model: 'smallcnn', size: 8, batch: 4, frozen: true, classes: 10 }, { steps: 2, warmup: 2 });
    // Frozen base: no weight gradients or Adam updates for the convs.
    expect(frozen.dispatches).toBeLessThan(r.dispatches!);
  });
});
