import { describe, expect, it } from 'vitest';
import { parseLr, slice, spreadLr } from '../../src/optim/lr.js';
import { cosine, oneCycle, stepDecay } from '../../src/optim/schedule.js';

describe('discriminative learning rates (fastai slice semantics)', () => {
  it('slice(min, max) spreads geometrically: 3 groups 1e-6..1e-4 -> 1e-6, 1e-5, 1e-4', () => {
    const lrs = spreadLr(slice(1e-6, 1e-4), 3);
    expect(lrs[0]).toBeCloseTo(1e-6, 15);
    expect(lrs[1]).toBeCloseTo(1e-5, 14);
    expect(lrs[2]).toBeCloseTo(1e-4, 13);
    const five = spreadLr(slice(1e-5, 1e-3), 5);
    for (let i = 0; i < 5; i++) expect(five[i]).toBeCloseTo(1e-5 * 100 ** (i / 4), 12);
  });
  it('slice(max) gives max/10 to all groups but the last', () => {
    expect(spreadLr(slice(1e-3), 3)).toEqual([1e-4, 1e-4, 1e-3]);
  });
  it('a scalar applies to every group; a list must have one per group', () => {
    expect(spreadLr(2e-3, 2)).toEqual([2e-3, 2e-3]);
    expect(spreadLr([1, 2, 3], 3)).toEqual([1, 2, 3]);
    expect(() => spreadLr([1, 2], 3)).toThrow(/one per layer group/);
    expect(() => spreadLr(-1, 2)).toThrow(/positive/);
  });
  it('parses CLI ranges', () => {
    expect(parseLr('3e-4')).toBe(3e-4);
    expect(parseLr('1e-5:1e-3')).toEqual({ min: 1e-5, max: 1e-3 });
    expect(parseLr(':1e-3')).toEqual({ max: 1e-3 });
    expect(() => parseLr('abc')).toThrow(/not a learning rate/);
    expect(() => parseLr('1e-3:1e-5')).toThrow(/goes down/);
  });
});

describe('schedules', () => {
  it('one-cycle: lrMax/div -> lrMax at pctStart -> lrMax/divFinal; momentum inverse', () => {
    const s = oneCycle({ lrMax: 1e-3 });
    expect(s(0).lr).toBeCloseTo(1e-3 / 25, 12);
    expect(s(0).mom).toBeCloseTo(0.95, 12);
    expect(s(0.25).lr).toBeCloseTo(1e-3, 12);
    expect(s(0.25).mom).toBeCloseTo(0.85, 12);
    expect(s(1).lr).toBeCloseTo(1e-8, 15);
    expect(s(1).mom).toBeCloseTo(0.95, 12);
    // Midway through warm-up, the cosine is halfway.
    expect(s(0.125).lr).toBeCloseTo((1e-3 / 25 + 1e-3) / 2, 12);
  });
  it('cosine and step', () => {
    expect(cosine(1)(0.5).lr).toBeCloseTo(0.5, 12);
    expect(cosine(1)(1).lr).toBeCloseTo(0, 12);
    expect(stepDecay(1, [0.5, 0.75])(0.8).lr).toBeCloseTo(0.01, 12);
  });
});
