// The trace of small fine-tuning steps (SmallNet: conv, BatchNorm, ReLU, max-pool, a residual block,
// global average pool, dropout, dense): valid Chrome trace-event JSON, every dispatch the device
// counted is in it with its layer and shapes, frozen layers launch no weight-gradient kernel and are
// marked, FLOPs agree with the convolution/matmul formulas, phases nest inside steps inside stages;
// and a replayed step (what the Learner runs after its first step) is matched to the step it replays.

import { beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../../src/gpu/index.js';
import { Tensor } from '../../src/gpu/tensor.js';
import * as ops from '../../src/autograd/ops.js';
import { backward } from '../../src/autograd/variable.js';
import { CapturedStep } from '../../src/autograd/capture.js';
import { labelsTensor } from '../../src/kernels/softmax.js';
import { convFlops, convGeometry } from '../../src/kernels/conv2d.js';
import { freeze, unfreeze } from '../../src/nn/groups.js';
import { Learner } from '../../src/train/learner.js';
import {
  kernelCounts, layerKernels, TraceRecorder, tracedTrainStep, type ChromeTrace, type TraceEvent,
} from '../../src/train/trace.js';
import { device, Rng } from '../helpers.js';
import { SmallNet } from '../nn/smallnet.js';

let gpu: Gpu;
beforeAll(async () => { gpu = await device(); });

const N = 3, HW = 9, K = 4;
const BASE_LAYERS = ['conv1', 'bn1', 'block.conv1', 'block.bn1', 'block.conv2', 'block.bn2'];

function batch(seed: number) {
  const rng = new Rng(seed);
  return { x: rng.array(N * 3 * HW * HW, -1, 1), shape: [N, 3, HW, HW] as const, labels: Uint32Array.from([0, 3, 1]) };
}

/** Dispatch counts by name that `fn` adds to the device's counters. */
async function counted(fn: () => Promise<unknown>): Promise<Map<string, number>> {
  const before = new Map(gpu.dispatchesByName);
  await fn();
  const out = new Map<string, number>();
  for (const [k, v] of gpu.dispatchesByName) if (v - (before.get(k) ?? 0) > 0) out.set(k, v - (before.get(k) ?? 0));
  return out;
}

const sorted = (m: Map<string, number>) => [...m].sort(([a], [b]) => a.localeCompare(b));
const within = (inner: TraceEvent, outer: TraceEvent) =>
  inner.ts >= outer.ts - 1e-9 && inner.ts + (inner.dur ?? 0) <= outer.ts + outer.dur! + 1e-9;

function eventsOf(trace: ChromeTrace, cat: string) { return trace.traceEvents.filter((e) => e.cat === cat); }

describe('trace of a fine-tuning step', () => {
  it('records every dispatch with layer and shapes; frozen layers get no weight gradient; phases nest', async () => {
    const net = new SmallNet(gpu, K, { seed: 3, dropout: 0.25 });
    const learner = new Learner(gpu, net, { numClasses: K, replay: false });
    const rec = new TraceRecorder(gpu).attach(learner);
    freeze(net);
    const head = await counted(() => tracedTrainStep(learner, rec, batch(1), { stage: 'head', epoch: 1, step: 1 }));
    unfreeze(net);
    const full = await counted(() => tracedTrainStep(learner, rec, batch(2), { stage: 'unfrozen', epoch: 1, step: 1 }));
    await rec.finish();

    // Valid trace-event JSON (what Perfetto and chrome://tracing load).
    const trace = JSON.parse(JSON.stringify(rec.toChromeTrace())) as ChromeTrace;
    expect(trace.displayTimeUnit).toBe('ms');
    for (const e of trace.traceEvents) {
      expect(typeof e.name).toBe('string');
      expect(['X', 'i', 'M']).toContain(e.ph);
      expect(Number.isFinite(e.ts) && e.pid === 1 && e.tid === 1).toBe(true);
      if (e.ph === 'X') expect(e.dur).toBeGreaterThanOrEqual(0);
    }
    const stages = eventsOf(trace, 'stage'), steps = eventsOf(trace, 'step'), phases = eventsOf(trace, 'phase'), kernels = eventsOf(trace, 'kernel');
    expect(stages.map((e) => e.name)).toEqual(['head', 'unfrozen']);
    expect(steps.map((e) => e.name)).toEqual(['head step 1', 'unfrozen step 1']);

    // Nesting: kernel ⊂ exactly one phase ⊂ step ⊂ stage; phases in order within each step.
    for (const k of kernels) expect(phases.filter((p) => within(k, p))).toHaveLength(1);
    for (const p of phases) expect(steps.filter((s) => within(p, s))).toHaveLength(1);
    steps.forEach((s, i) => {
      expect(within(s, stages[i]!)).toBe(true);
      expect(phases.filter((p) => within(p, s)).map((p) => p.name)).toEqual(['data', 'forward', 'backward', 'optimizer']);
    });
    // Every dispatch the device counted is in the trace, with its shapes.
    const inStep = (s: TraceEvent) => kernels.filter((k) => within(k, s));
    const names = (ks: TraceEvent[]) => { const m = new Map<string, number>(); for (const k of ks) m.set(k.name, (m.get(k.name) ?? 0) + 1); return m; };
    expect(sorted(names(inStep(steps[0]!)))).toEqual(sorted(head));
    expect(sorted(names(inStep(steps[1]!)))).toEqual(sorted(full));
    expect(sorted(kernelCounts(rec.steps[1]!))).toEqual(sorted(full));
    for (const k of kernels) {
      const a = k.args!;
      expect((a.output as number[]).length, `${k.name} output shape`).toBeGreaterThan(0);
      if (a.op !== 'seed') expect((a.inputs as number[][]).length, `${k.name} input shapes`).toBeGreaterThan(0);
      expect((a.workgroups as number[]).every((g) => g >= 1)).toBe(true);
      expect(a.bytes as number).toBeGreaterThan(0);
    }
    if (gpu.hasTimestamps) {
      expect(rec.timing).toBe('gpu-timestamp');
      for (const k of kernels) expect(k.args!.gpuMs as number).toBeGreaterThanOrEqual(0);
    }

    // Head stage (base frozen): no weight gradient anywhere in the base, no update of it, and every
    // base layer marked as skipped inside the backward phase.
    const headK = inStep(steps[0]!), fullK = inStep(steps[1]!);
    const bwd = (ks: TraceEvent[]) => ks.filter((k) => k.args!.phase === 'backward');
    expect(headK.filter((k) => k.name.startsWith('conv2d.dw'))).toHaveLength(0);
    expect(new Set(bwd(headK).map((k) => k.args!.layer))).toEqual(new Set(['loss', 'fc']));
    expect(new Set(headK.filter((k) => k.args!.phase === 'optimizer').flatMap((k) => k.args!.params as string[]))).toEqual(new Set(['fc.weight', 'fc.bias']));
    const marks = trace.traceEvents.filter((e) => e.cat === 'frozen');
    expect(marks.map((m) => m.args!.layer).sort()).toEqual([...BASE_LAYERS].sort());
    const headBwd = phases.find((p) => p.name === 'backward' && within(p, steps[0]!))!;
    for (const m of marks) expect(within(m, headBwd)).toBe(true);
    expect(rec.steps[0]!.frozenParams).toBe(net.numParameters() - net.fc.numParameters());

    // Unfrozen: a weight gradient for every convolution; none of dX for the first layer (the image
    // needs no gradient); every parameter updated.
    for (const l of ['conv1', 'block.conv1', 'block.conv2']) {
      expect(fullK.filter((k) => k.name.startsWith('conv2d.dw') && k.args!.layer === l).length, l).toBeGreaterThan(0);
    }
    expect(bwd(fullK).filter((k) => k.args!.layer === 'conv1' && k.name.startsWith('conv2d.dx'))).toHaveLength(0);
    expect(bwd(fullK).find((k) => k.args!.op === 'conv2d' && k.args!.layer === 'conv1')!.args!.needs).toEqual([false, true]);
    expect(new Set(fullK.filter((k) => k.args!.phase === 'optimizer').flatMap((k) => k.args!.params as string[])))
      .toEqual(new Set(net.namedParameters().map(([n]) => n)));
    // The residual sum's gradient: the block's input gets dY from the skip path and from conv1.
    expect(bwd(fullK).some((k) => k.args!.op === 'gradSum')).toBe(true);
    expect(marks.filter((m) => within(m, steps[1]!))).toHaveLength(0);

    // FLOPs: a convolution pass is 2·N·K·P·Q·C·R·S, split over its dispatches; dense 2·N·in·out.
    const conv1 = convFlops(convGeometry([N, 3, HW, HW], [8, 3, 3, 3], { padding: 1 }));
    const sum = (ks: TraceEvent[]) => ks.reduce((s, k) => s + (k.args!.flops as number), 0);
    expect(sum(fullK.filter((k) => k.args!.layer === 'conv1' && k.name.startsWith('conv2d.fwd')))).toBeCloseTo(conv1, 6);
    expect(sum(fullK.filter((k) => k.args!.layer === 'conv1' && /^conv2d\.dw\.v/.test(k.name)))).toBeCloseTo(conv1, 6);
    expect(sum(fullK.filter((k) => k.args!.layer === 'fc' && k.args!.phase === 'forward' && k.name.startsWith('matmul')))).toBe(2 * N * 8 * K);

    // Per-layer summary (what `wgtrain explain` prints) has the same kernels, in layer order.
    const layers = layerKernels(rec.steps[1]!);
    expect(layers.map((l) => l.layer).filter((l) => l !== 'loss')).toEqual([...BASE_LAYERS, 'fc']);
    learner.dispose(); net.dispose();
  });

  it('maps a replayed step onto the step it captured (phases, layers, estimated GPU time); stops after stepsPerStage', async () => {
    const net = new SmallNet(gpu, K, { seed: 4, dropout: 0.25 });
    const learner = new Learner(gpu, net, { numClasses: K, replay: false });
    const rec = new TraceRecorder(gpu, { stepsPerStage: 2 }).attach(learner);
    const b = batch(5);
    const x = Tensor.empty(gpu, [...b.shape]), y = labelsTensor(gpu, b.labels, K);
    // The Learner's captured step, with the observer calls it makes (LearnerOptions.observer).
    const run = () => {
      const { loss, correct } = rec.phase('forward', () => ops.crossEntropy(net.call(ops.constant(x)), y));
      rec.phase('backward', () => backward(loss));
      rec.phase('optimizer', () => { learner.optimizer.step(); learner.optimizer.zeroGrad(); });
      return { loss: loss.data, correct };
    };
    rec.beginStep({ stage: 'fit', step: 1 });
    rec.phase('data', () => x.write(b.x));
    const cap = CapturedStep.capture(gpu, run);
    await cap.outputs.loss.read();
    for (const step of [2, 3]) {
      const replayed = await counted(async () => {
        rec.beginStep({ stage: 'fit', step, waitMs: 1.5 });
        rec.phase('data', () => x.write(b.x));
        await cap.replay().loss.read();
      });
      if (step === 2) expect(sorted(kernelCounts(rec.steps[1]!))).toEqual(sorted(replayed));
    }
    await rec.finish();
    expect(rec.steps).toHaveLength(2);                       // step 3 was past stepsPerStage
    const [s1, s2] = rec.steps as [typeof rec.steps[0], typeof rec.steps[0]];
    expect(s1.captured && !s1.replayed && s2.replayed).toBe(true);
    expect(s2.phases.map((p) => p.phase)).toEqual(['data', 'forward', 'backward', 'optimizer']);
    const flat = (s: typeof s1) => s.phases.flatMap((p) => p.kernels.map((k) => `${p.phase}:${k.name}@${k.layer}/${k.op}`));
    expect(flat(s2)).toEqual(flat(s1));
    const ks2 = s2.phases.flatMap((p) => p.kernels);
    expect(ks2.every((k) => k.replayed && k.inputs.length + k.output.length > 0)).toBe(true);
    if (gpu.hasTimestamps) expect(ks2.every((k) => k.estimated && k.gpuMs !== null)).toBe(true);
    // The data phase carries the loader wait.
    const trace = rec.toChromeTrace();
    const data = trace.traceEvents.filter((e) => e.name === 'data');
    expect(data[1]!.dur!).toBeGreaterThanOrEqual(1500);
    cap.dispose(); x.dispose(); y.dispose(); learner.dispose(); net.dispose();
  });
});
