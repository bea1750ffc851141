// Optimizer behaviour beyond the update kernels (those are in test/kernels/optim.test.ts): state keyed
// by parameter name across freeze/unfreeze and re-grouping, and schedules applied per group.

import { beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../../src/gpu/index.js';
import { Tensor } from '../../src/gpu/index.js';
import { backward } from '../../src/autograd/variable.js';
import * as ops from '../../src/autograd/ops.js';
import { labelsTensor } from '../../src/kernels/softmax.js';
import { freeze, groupParameters, unfreeze } from '../../src/nn/groups.js';
import { Optimizer } from '../../src/optim/optimizer.js';
import { oneCycle } from '../../src/optim/schedule.js';
import { slice, spreadLr } from '../../src/optim/lr.js';
import { device, Rng } from '../helpers.js';
import { SmallNet } from '../nn/smallnet.js';

let gpu: Gpu;
beforeAll(async () => { gpu = await device(); });

function trainStep(net: SmallNet, opt: Optimizer, x: Tensor, y: Tensor) {
  const { loss, correct } = ops.crossEntropy(net.call(ops.constant(x)), y);
  backward(loss);
  opt.step(); opt.zeroGrad();
  loss.dispose(); correct.dispose();
}

describe('Optimizer', () => {
  it('state is keyed by parameter name: it survives unfreezing and moving to another optimizer', async () => {
    const net = new SmallNet(gpu, 4, { seed: 2 });
    const x = Tensor.from(gpu, new Rng(3).array(2 * 3 * 8 * 8, -1, 1), [2, 3, 8, 8]);
    const y = labelsTensor(gpu, Uint32Array.from([1, 3]), 4);
    const lrs = spreadLr(slice(1e-4, 1e-2), 3);
    const opt = new Optimizer('adam', groupParameters(net).map((params, i) => ({ name: `g${i}`, params, lr: lrs[i]! })));
    freeze(net);
    trainStep(net, opt, x, y); trainStep(net, opt, x, y);
    expect([...opt.state.keys()]).toEqual(['fc.weight', 'fc.bias']);
    unfreeze(net);
    trainStep(net, opt, x, y);
    expect(opt.state.get('fc.weight')!.step).toBe(3);
    expect(opt.state.get('conv1.weight')!.step).toBe(1);
    // A new optimizer with a different grouping picks the state up by name.
    const m = await opt.state.get('fc.weight')!.m!.read();
    const opt2 = new Optimizer('adam', [{ name: 'all', params: net.namedParameters(), lr: 1e-3 }]);
    opt2.loadState(opt.stateTensors());
    opt.dispose();
    expect(opt2.state.get('fc.weight')!.step).toBe(3);
    expect(Array.from(await opt2.state.get('fc.weight')!.m!.read())).toEqual(Array.from(m));
    opt2.dispose(); net.dispose(); x.dispose(); y.dispose();
  });

  it('a one-cycle schedule scales every group by the same factor (ratios kept) and drives β1 inversely', () => {
    const net = new SmallNet(gpu, 4, { seed: 2 });
    const lrs = spreadLr(slice(1e-5, 1e-3), 3);
    expect(lrs[1]).toBeCloseTo(1e-4, 15);
    const opt = new Optimizer('adam', groupParameters(net).map((params, i) => ({ name: `g${i}`, params, lr: lrs[i]! })));
    const sched = oneCycle({ lrMax: 1e-3 });
    for (const pos of [0, 0.1, 0.25, 0.6, 1]) {
      opt.applySchedule(sched, pos, 1e-3);
      const v = sched(pos);
      opt.groups.forEach((g, i) => {
        expect(g.lr).toBeCloseTo(lrs[i]! * v.lr / 1e-3, 18);
        expect(g.betas![0]).toBe(v.mom);
      });
    }
    expect(opt.groups[2]!.lr).toBeCloseTo(1e-3 / 1e5, 15);   // end of one-cycle: lrMax / divFinal
    expect(opt.groups[2]!.betas![0]).toBeCloseTo(0.95, 12);
    opt.applySchedule(sched, 0.25, 1e-3);
    expect(opt.groups[2]!.betas![0]).toBeCloseTo(0.85, 12);  // β1 lowest at the LR peak
    net.dispose();
  });
});
