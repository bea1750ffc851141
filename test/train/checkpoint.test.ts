// Checkpoints: safetensors layout, exact resume (weights + optimizer state by name + freeze state),
// and clear errors for mismatched or damaged files.

import { beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../../src/gpu/index.js';
import { Learner, type Batch, type BatchSource } from '../../src/train/learner.js';
import { checkpointMeta, decodeSafetensors, encodeSafetensors, loadCheckpoint, saveCheckpoint } from '../../src/train/checkpoint.js';
import { device, Rng } from '../helpers.js';
import { SmallNet } from '../nn/smallnet.js';

let gpu: Gpu;
beforeAll(async () => { gpu = await device(); });

const HW = 8, K = 4;
function source(n: number, seed: number): BatchSource {
  const rng = new Rng(seed);
  const xs = Array.from({ length: n }, () => rng.array(3 * HW * HW, -1, 1));
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
const meta = { model: { source: 'smallnet' }, classes: ['a', 'b', 'c', 'd'], preprocessing: { size: HW, channelOrder: 'RGB' as const, mean: [0, 0, 0] as [number, number, number], std: [1, 1, 1] as [number, number, number] }, plan: {}, history: [] };

describe('checkpoint', () => {
  it('safetensors layout: 8-byte little-endian header length, JSON header, aligned F32 data', () => {
    const bytes = encodeSafetensors([{ name: 'a', shape: [2, 2], data: Float32Array.of(1, 2, 3, 4) }, { name: 'b', shape: [1], data: Float32Array.of(-1) }], { k: 'v' });
    const hlen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect((8 + hlen) % 8).toBe(0);
    const h = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + hlen)));
    expect(h.a).toEqual({ dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] });
    expect(h.b.data_offsets).toEqual([16, 20]);
    expect(h.__metadata__).toEqual({ k: 'v' });
    const back = decodeSafetensors(bytes);
    expect(Array.from(back.tensors.get('a')!.data)).toEqual([1, 2, 3, 4]);
    expect(() => decodeSafetensors(bytes.subarray(0, bytes.length - 2))).toThrow(/truncated/);
    expect(() => decodeSafetensors(new Uint8Array(4))).toThrow(/not a checkpoint/);
  });

  it('resume is exact: head stage checkpoint → new process-like learner → same continuation as uninterrupted', async () => {
    const train = source(12, 5);
    // Uninterrupted: head 1 epoch, then 2 unfrozen epochs.
    const a = new SmallNet(gpu, K, { seed: 21, dropout: 0.3 });
    const la = new Learner(gpu, a, { numClasses: K });
    let ckpt: Uint8Array | null = null;
    la.opts.onEpochEnd = async (r, l) => {
      if (r.stage === 'unfrozen' && r.epoch === 1) ckpt = await saveCheckpoint(l.model, l.optimizer, { ...meta, progress: { stage: 'unfrozen', epoch: 1, done: false }, history: l.history });
    };
    const ha = await la.fineTune(2, train, null, { baseLr: 1e-2 });
    // Resumed: a differently initialised model loads the checkpoint and continues from unfrozen epoch 1.
    const b = new SmallNet(gpu, K, { seed: 99, dropout: 0.3 });
    const lb = new Learner(gpu, b, { numClasses: K });
    const m = loadCheckpoint(gpu, ckpt!, b, lb.optimizer);
    expect(m.progress).toEqual({ stage: 'unfrozen', epoch: 1, done: false });
    expect(m.history).toHaveLength(2);
    expect(b.parameters().every((p) => p.trainable)).toBe(true);
    const hb = await lb.fineTune(2, train, null, { baseLr: 1e-2, resume: { stage: 'unfrozen', epoch: 1 } });
    expect(hb).toHaveLength(1);
    expect(hb[0]!.trainLoss).toBe(ha.at(-1)!.trainLoss);
    for (const [[n, ta], [, tb]] of a.stateDict().map((e, i) => [e, b.stateDict()[i]!] as const)) {
      expect(Array.from(await tb.read()), n).toEqual(Array.from(await ta.read()));
    }
    la.dispose(); lb.dispose(); a.dispose(); b.dispose();
  });

  it('a checkpoint for another class count is refused with a reason', async () => {
    const a = new SmallNet(gpu, K, { seed: 1 });
    const bytes = await saveCheckpoint(a, null, { ...meta, progress: { stage: 'head', epoch: 0, done: false } });
    expect(checkpointMeta(bytes).classes).toEqual(['a', 'b', 'c', 'd']);
    const c = new SmallNet(gpu, 5, { seed: 1 });
    expect(() => loadCheckpoint(gpu, bytes, c, null)).toThrow(/does not match this model: 'fc.weight' is \[4,8\] in the checkpoint but \[5,8\]/);
    expect(() => loadCheckpoint(gpu, encodeSafetensors([], {}), c, null)).toThrow(/not a wgtrain checkpoint/);
    a.dispose(); c.dispose();
  });
});
