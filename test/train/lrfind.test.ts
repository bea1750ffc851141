// LR finder: fastai's curve and suggestions, weights/BN statistics/optimizer state restored bit for
// bit, determinism; suggestion rules on hand-made curves; the SVG plots.

import { beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../../src/gpu/index.js';
import { Learner, type Batch, type BatchSource } from '../../src/train/learner.js';
import { lrFind, suggest } from '../../src/train/lrfind.js';
import { learningCurves, lrFindPlot } from '../../src/train/plots.js';
import { device, Rng } from '../helpers.js';
import { SmallNet } from '../nn/smallnet.js';

let gpu: Gpu;
beforeAll(async () => { gpu = await device(); });

const HW = 8, K = 4;
function source(n: number, seed: number): BatchSource {
  const rng = new Rng(seed);
  const xs = Array.from({ length: n }, (_, i) => { const x = rng.array(3 * HW * HW, -0.5, 0.5); for (let j = 0; j < 16; j++) x[(i % 3) * 64 + j]! += 1.5; return x; });
  return {
    length: Math.ceil(n / 4),
    async *batches(epoch: number): AsyncIterable<Batch> {
      const order = new Rng(epoch).shuffle(xs.map((_, i) => i));
      for (let s = 0; s < n; s += 4) {
        const idx = order.slice(s, s + 4);
        const x = new Float32Array(idx.length * 3 * HW * HW);
        idx.forEach((j, i) => x.set(xs[j]!, i * 3 * HW * HW));
        yield { x, shape: [idx.length, 3, HW, HW], labels: Uint32Array.from(idx, (j) => j % K) };
      }
    },
  };
}

describe('LR finder', () => {
  it('runs the exponential sweep, stops on divergence, restores weights, BN stats and optimizer state exactly', async () => {
    const net = new SmallNet(gpu, K, { seed: 31 });
    const learner = new Learner(gpu, net, { numClasses: K });
    const train = source(16, 2);
    await learner.fit(1, train, null, { lr: 1e-3 });  // some optimizer state to preserve
    const before = await Promise.all(net.stateDict().map(async ([n, t]) => [n, Array.from(await t.read())] as const));
    const mBefore = Array.from(await learner.optimizer.state.get('fc.weight')!.m!.read());
    const stepsBefore = learner.optimizer.state.get('fc.weight')!.step;
    const r = await lrFind(learner, train, { numIt: 60 });
    console.log(`lr-find: ${r.iterations} iterations, suggestions ${JSON.stringify(r.suggestions)}`);
    expect(r.lrs[0]).toBeCloseTo(1e-7, 20);
    expect(r.lrs[1]! / r.lrs[0]!).toBeCloseTo((10 / 1e-7) ** (1 / 60), 9);
    expect(r.iterations).toBeLessThanOrEqual(60);
    for (const v of Object.values(r.suggestions)) { expect(v).toBeGreaterThan(1e-7); expect(v).toBeLessThan(10); }
    for (const [n, v] of before) expect(Array.from(await net.stateDict().find(([m]) => m === n)![1].read()), n).toEqual(v);
    expect(Array.from(await learner.optimizer.state.get('fc.weight')!.m!.read())).toEqual(mBefore);
    expect(learner.optimizer.state.get('fc.weight')!.step).toBe(stepsBefore);
    // Deterministic: the same sweep again gives the same curve.
    const r2 = await lrFind(learner, train, { numIt: 60 });
    expect(r2.losses).toEqual(r.losses);
    const svg = lrFindPlot(r);
    expect(svg).toMatch(/^<svg[\s\S]*valley[\s\S]*<\/svg>$/);
    expect(learningCurves(learner.history).loss).toContain('<path');
    learner.dispose(); net.dispose();
  });

  it('suggestion rules on a synthetic curve (flat, a long descent, then divergence)', () => {
    const lrs = Array.from({ length: 100 }, (_, i) => 1e-7 * (1e8) ** (i / 100));
    // loss: flat 2.0 until i=30, falls linearly in log-LR to 0.5 at i=80, then rises steeply.
    const losses = lrs.map((_, i) => (i < 30 ? 2 : i < 80 ? 2 - 1.5 * (i - 30) / 50 : 0.5 + 0.3 * (i - 80)));
    const s = suggest(lrs, losses, 100);
    expect(s.minimum).toBeCloseTo(lrs[80]! / 10, 20);
    expect(s.steep).toBeGreaterThanOrEqual(lrs[30]!);   // somewhere on the (uniformly) steepest stretch
    expect(s.steep).toBeLessThan(lrs[80]!);
    // valley: the decreasing run spans i = 29..80 (trimmed curve starts at 10); 1/3 + 1/6 of the way.
    expect(s.valley).toBeGreaterThan(lrs[45]!);
    expect(s.valley).toBeLessThan(lrs[60]!);
  });
});
