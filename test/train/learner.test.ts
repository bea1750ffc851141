// The Learner on a synthetic 4-class task (a bright square in a class-specific channel): fastai's staged fine-tune
// reaches high validation accuracy, the history records stages and LRs, replayed and eager training
// agree bit for bit, and evaluate's confusion matrix is consistent.

import { beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../../src/gpu/index.js';
import { Learner, type Batch, type BatchSource } from '../../src/train/learner.js';
import { device, Rng } from '../helpers.js';
import { SmallNet } from '../nn/smallnet.js';

let gpu: Gpu;
beforeAll(async () => { gpu = await device(); });

const HW = 8, K = 4;

/** n images of class i % K: noise plus a bright square in channel k (k < 3) or a dark one in all (k = 3). */
function synthetic(n: number, seed: number) {
  const rng = new Rng(seed);
  const items = Array.from({ length: n }, (_, i) => {
    const k = i % K;
    const x = rng.array(3 * HW * HW, -0.5, 0.5);
    const [qy, qx] = [rng.int(5), rng.int(5)];
    for (let c = 0; c < 3; c++) {
      if (k < 3 && c !== k) continue;
      for (let y = 0; y < 4; y++) for (let xx = 0; xx < 4; xx++) x[c * HW * HW + (qy + y) * HW + qx + xx]! += k < 3 ? 1.5 : -1.5;
    }
    return { x, label: k };
  });
  return items;
}

function source(items: ReturnType<typeof synthetic>, batch: number, shuffle: boolean): BatchSource {
  return {
    length: Math.ceil(items.length / batch),
    async *batches(epoch: number): AsyncIterable<Batch> {
      const order = items.map((_, i) => i);
      if (shuffle) new Rng(1000 + epoch).shuffle(order);
      for (let s = 0; s < order.length; s += batch) {
        const idx = order.slice(s, s + batch);
        const x = new Float32Array(idx.length * 3 * HW * HW);
        idx.forEach((j, i) => x.set(items[j]!.x, i * 3 * HW * HW));
        yield { x, shape: [idx.length, 3, HW, HW], labels: Uint32Array.from(idx, (j) => items[j]!.label) };
      }
    },
  };
}

describe('Learner', () => {
  it('fineTune: head stage then unfrozen stage, high validation accuracy, consistent history', async () => {
    const net = new SmallNet(gpu, K, { seed: 12, dropout: 0.1 });
    const train = source(synthetic(96, 1), 8, true), val = source(synthetic(32, 2), 16, false);
    const ends: string[] = [];
    const learner = new Learner(gpu, net, { numClasses: K, onEpochEnd: (r) => { ends.push(`${r.stage}${r.epoch}`); } });
    const hist = await learner.fineTune(4, train, val, { baseLr: 0.1, freezeEpochs: 1, lrMult: 10 });
    for (const r of hist) console.log(`${r.stage} ${r.epoch}/${r.epochs}: train ${r.trainLoss.toFixed(3)}/${r.trainAcc.toFixed(2)} val ${r.valLoss!.toFixed(3)}/${r.valAcc!.toFixed(2)} lrs ${r.lrs.map((l) => l.toExponential(1)).join(',')} trainable ${r.trainableParams}`);
    expect(ends).toEqual(['head1', 'unfrozen1', 'unfrozen2', 'unfrozen3', 'unfrozen4']);
    expect(hist[0]!.trainableParams).toBe(8 * 4 + 4);             // fc only
    expect(hist[1]!.trainableParams).toBe(net.numParameters());
    expect(hist.at(-1)!.valAcc!).toBeGreaterThanOrEqual(0.9);
    expect(hist.at(-1)!.trainLoss).toBeLessThan(hist[0]!.trainLoss);
    // Discriminative LRs: groups stay in the slice(lr/lrMult, lr) ratio all through the schedule.
    const l = hist[2]!.lrs;
    expect(l[2]! / l[0]!).toBeCloseTo(10, 6);
    expect(l[1]! / l[0]!).toBeCloseTo(Math.sqrt(10), 6);
    const ev = await learner.evaluate(val);
    expect(ev.n).toBe(32);
    expect(ev.confusion.flat().reduce((a, b) => a + b, 0)).toBe(32);
    expect(ev.accuracy).toBeCloseTo(hist.at(-1)!.valAcc!, 12);
    const probs = await learner.predict(synthetic(4, 9)[3]!.x, [1, 3, HW, HW]);
    expect(probs.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
    learner.dispose(); net.dispose();
  });

  it('replayed training equals eager training bit for bit (including a smaller last batch)', async () => {
    const run = async (replay: boolean) => {
      const net = new SmallNet(gpu, K, { seed: 13, dropout: 0.2 });
      const learner = new Learner(gpu, net, { numClasses: K, replay });
      const hist = await learner.fineTune(1, source(synthetic(20, 3), 8, true), null, { baseLr: 5e-3, freezeEpochs: 1 });
      const w = await net.fc.weight.read();
      learner.dispose(); net.dispose();
      return { losses: hist.map((h) => h.trainLoss), w: Array.from(w) };
    };
    const e = await run(false), r = await run(true);
    expect(r.losses).toEqual(e.losses);
    expect(r.w).toEqual(e.w);
  });
});
