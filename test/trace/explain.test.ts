// `wgtrain explain` pinned against the engine's actual behaviour: the groups and frozen parameter
// counts of the demo model and of torchvision's ResNet34, fastai's per-group LRs after slice()
// spreading, and per stage the kernels of one step equal what a real Learner.trainStep dispatches
// under the same freeze state (the device's own per-name counters).

import { beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import type { Gpu } from '../../src/gpu/index.js';
import { freezeTo } from '../../src/nn/groups.js';
import { Learner } from '../../src/train/learner.js';
import { loadOnnx } from '../../src/cli/session.js';
import { explainOptions, explainPlan, formatPlan, type ExplainPlan } from '../../src/cli/explain.js';
import { hasOnnxData, onnxDataDir } from '../../src/onnx/testdata.js';
import { device, Rng } from '../helpers.js';

let gpu: Gpu;
beforeAll(async () => { gpu = await device(); });

const close = (a: number[], b: number[]) => { expect(a.length).toBe(b.length); a.forEach((v, i) => expect(v / b[i]!).toBeCloseTo(1, 12)); };

/** Dispatch counts by name of one real Learner.trainStep per stage of the plan, on a fresh copy of the model. */
async function realSteps(plan: ExplainPlan, modelPath: string, seed: number): Promise<Record<string, number>[]> {
  const { model } = await loadOnnx(gpu, modelPath, () => {});
  model.cutAt('before-last-gemm', plan.model.classes, seed);
  const learner = new Learner(gpu, model, { numClasses: plan.model.classes, replay: false });
  const [, , s] = plan.model.input as [number, number, number];
  const n = plan.traceBatch, rng = new Rng(9);
  const batch = { x: rng.array(n * 3 * s * s, -2, 2), shape: [n, 3, s, s] as const, labels: Uint32Array.from({ length: n }, (_, i) => i % plan.model.classes) };
  const out: Record<string, number>[] = [];
  model.train();
  for (const st of plan.stages) {
    freezeTo(model, st.frozenGroups.length);
    const before = new Map(gpu.dispatchesByName);
    const r = learner.trainStep(batch);
    await r.loss.read();
    r.loss.dispose(); r.correct.dispose();
    const diff: Record<string, number> = {};
    for (const [k, v] of [...gpu.dispatchesByName].sort(([a], [b]) => a.localeCompare(b))) if (v > (before.get(k) ?? 0)) diff[k] = v - (before.get(k) ?? 0);
    out.push(diff);
  }
  learner.dispose(); model.dispose();
  return out;
}

function layersOfGroups(plan: ExplainPlan, groups: number[]) {
  return plan.layers.filter((l) => l.group !== null && groups.includes(l.group));
}

describe('explain', () => {
  it('resolves flags as finetune does', () => {
    const demo = explainOptions({});
    expect([demo.epochs, demo.freezeEpochs, demo.baseLr, demo.lrMult, demo.classes, demo.batch]).toEqual([8, 2, 1e-2, 100, 5, 32]);
    const o = explainOptions({ model: 'm.onnx', classes: '7', lr: '1e-5:1e-3', unfreeze: '1', batch: 'auto', size: '96' });
    expect([o.epochs, o.freezeEpochs, o.baseLr, o.lrMult, o.classes, o.unfreeze, o.batch, o.size]).toEqual([3, 1, 2e-3, 100, 7, 1, 'auto', 96]);
    expect(() => explainOptions({ lr: 'fast' })).toThrow(/learning rate/);
    expect(() => explainOptions({ classes: '1' })).toThrow(/--classes/);
  });

  it('the demo model: groups, frozen counts, per-group LRs, kernels = a real step per stage', async () => {
    const o = explainOptions({});
    const plan = await explainPlan(gpu, o);
    expect(plan.groups.map((g) => g.parameters)).toEqual([2800, 69440, 325]);
    expect(plan.model.head).toEqual(['classifier.4.weight', 'classifier.4.bias']);
    const [head, full] = plan.stages as [typeof plan.stages[0], typeof plan.stages[0]];
    expect([head.name, head.epochs, head.frozenGroups, head.frozenParams, head.trainableParams]).toEqual(['head', 2, [0, 1], 72240, 325]);
    expect([full.name, full.epochs, full.frozenGroups, full.frozenParams, full.trainableParams]).toEqual(['unfrozen', 8, [], 0, 72565]);
    // fastai fine_tune with the demo's base LR 1e-2: slice(1e-2) for the head stage, then
    // slice(5e-3/100, 5e-3) spread geometrically over the 3 groups.
    close(head.lr.peak, [1e-3, 1e-3, 1e-2]);
    close(full.lr.peak, [5e-5, 5e-4, 5e-3]);
    close(full.lr.start, [1e-5, 1e-4, 1e-3]);
    // Adam keeps m and v per trainable parameter; gradients for trainable ones only.
    expect([head.memory.optimizer, head.memory.gradients, full.memory.optimizer]).toEqual([8 * 325, 4 * 325, 8 * 72565]);
    expect(full.memory.perImage).toBeGreaterThan(head.memory.perImage);
    expect(head.batch.planned).toBeGreaterThanOrEqual(full.batch.planned);

    const real = await realSteps(plan, o.model, o.seed);
    expect(head.kernels.byName).toEqual(real[0]);
    expect(full.kernels.byName).toEqual(real[1]);
    // Frozen groups launch nothing in the backward and get no update; the first layer never computes dX.
    for (const l of layersOfGroups(plan, [0, 1])) {
      expect(l.stages.head!.frozen, l.layer).toBe(true);
      expect(Object.keys(l.stages.head!.backward).length + Object.keys(l.stages.head!.optimizer).length, l.layer).toBe(0);
      expect(Object.keys(l.stages.unfrozen!.optimizer).length, l.layer).toBeGreaterThan(0);
    }
    expect(Object.keys(plan.layers[0]!.stages.unfrozen!.backward).some((k) => k.startsWith('conv2d.dx'))).toBe(false);
    expect(Object.keys(plan.layers[0]!.stages.unfrozen!.backward).some((k) => k.startsWith('conv2d.dw'))).toBe(true);

    const text = formatPlan(plan);
    expect(text).toContain('stage 1: head — 2 epochs, groups 0–1 frozen (72,240 parameters), 325 trainable');
    expect(text).toContain('1.00e-3  1.00e-3  1.00e-2');
    expect(text).toContain('5.00e-5  5.00e-4  5.00e-3');
    expect(text).toContain(`freezing skips ${full.kernels.total - head.kernels.total} of the unfrozen step's ${full.kernels.total}`);
    expect(text).toMatch(/features\.0 \(group 0, 432 parameters\)\n {4}head {6}forward conv2d\.pack, conv2d\.fwd\.v2 \| backward skipped \(frozen\)/);
  }, 300_000);

  it('--unfreeze K keeps the lower groups frozen in the second stage', async () => {
    const o = explainOptions({ unfreeze: '2', freezeEpochs: '0' });
    const plan = await explainPlan(gpu, o);
    expect(plan.stages.map((s) => [s.name, s.frozenGroups, s.frozenParams])).toEqual([['unfrozen', [0], 2800]]);
    const real = await realSteps(plan, o.model, o.seed);
    expect(plan.stages[0]!.kernels.byName).toEqual(real[0]);
  }, 300_000);

  const resnet = join(onnxDataDir(), 'resnet34_torchstyle', 'model.onnx');
  it.skipIf(!hasOnnxData('resnet34_torchstyle'))('torchvision ResNet34: 3 groups, frozen base, LRs, kernels = a real step per stage', async () => {
    const o = explainOptions({ model: resnet, classes: '5', size: '32' });
    const plan = await explainPlan(gpu, o);
    expect(plan.model.family).toBe('resnet34');
    // stem + layer1 + layer2 | layer3 + layer4 | new fc (BatchNorm folded into the convolutions in this export).
    expect(plan.groups.map((g) => g.parameters)).toEqual([1346304, 19929856, 512 * 5 + 5]);
    expect(plan.groups[1]!.layers[0]).toBe('layer3.0.conv1');
    const [head, full] = plan.stages as [typeof plan.stages[0], typeof plan.stages[0]];
    expect([head.frozenParams, head.trainableParams, full.frozenParams]).toEqual([1346304 + 19929856, 2565, 0]);
    close(head.lr.peak, [2e-4, 2e-4, 2e-3]);                 // fastai's default base LR 2e-3
    close(full.lr.peak, [1e-5, 1e-4, 1e-3]);
    const real = await realSteps(plan, o.model, o.seed);
    expect(head.kernels.byName).toEqual(real[0]);
    expect(full.kernels.byName).toEqual(real[1]);
    // Head stage: no weight gradient anywhere; unfrozen: one per convolution (36) and the fc layer.
    expect(Object.keys(head.kernels.byName).filter((k) => k.startsWith('conv2d.dw') || k.startsWith('conv2d.dx'))).toEqual([]);
    const convs = plan.layers.filter((l) => l.layer.startsWith('conv1') || /conv\d|downsample/.test(l.layer));
    expect(convs).toHaveLength(36);
    for (const l of convs) expect(Object.keys(l.stages.unfrozen!.backward).some((k) => k.startsWith('conv2d.dw')), l.layer).toBe(true);
    expect(head.kernels.byPhase.optimizer).toBe(2);          // fc.weight (2560 = 40 vec4 blocks of 64) and fc.bias
  }, 600_000);
});
