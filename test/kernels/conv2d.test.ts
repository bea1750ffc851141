import { beforeAll, describe, expect, it } from 'vitest';
import { Tensor, type Gpu } from '../../src/gpu/index.js';
import {
  conv2d, conv2dBackward, conv2dBackwardBias, conv2dBackwardInput, conv2dBackwardWeight, convGeometry, defaultTile, pickVersion, type Conv2dOptions,
} from '../../src/kernels/conv2d.js';
import {
  conv2dBackwardBiasRef, conv2dBackwardInputRef, conv2dBackwardWeightRef, conv2dRef,
} from '../../src/kernels/reference/conv2d.js';
import { device, expectClose, gradcheck, Rng } from '../helpers.js';

let gpu: Gpu;
beforeAll(async () => { gpu = await device(); });

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

// [x shape, w shape, options, bias]. A representative slice of H,W ∈ {1,3,7,17}, C,K ∈ {1,3,4,8,…},
// N ∈ {1,2}, R×S ∈ {1×1, 3×3, 5×5, 3×1, 1×3, 7×7}, strides 1–3, pads 0–3 (asymmetric too), dilation 1–2,
// groups 1 / 2 / depthwise.
type Case = [number[], number[], Conv2dOptions, boolean];
const CASES: Case[] = [
  [[1, 1, 1, 1], [1, 1, 1, 1], {}, true],
  [[1, 1, 1, 1], [2, 1, 3, 3], { padding: 1 }, false],
  [[2, 3, 7, 7], [4, 3, 3, 3], { padding: 1 }, true],
  [[1, 4, 17, 17], [8, 4, 3, 3], { stride: 2, padding: 1 }, true],
  [[2, 3, 17, 7], [4, 3, 5, 5], { padding: 2, dilation: 2 }, false],
  [[1, 8, 7, 17], [3, 8, 3, 1], { padding: [1, 0] }, true],
  [[2, 3, 1, 17], [4, 3, 1, 3], { stride: [1, 2], padding: [0, 1] }, true],
  [[2, 4, 17, 17], [4, 2, 3, 3], { groups: 2, stride: 2, padding: [0, 1, 2, 3] }, true],
  [[1, 8, 17, 17], [8, 1, 3, 3], { groups: 8, padding: 1 }, true],
  [[2, 8, 7, 7], [8, 1, 5, 5], { groups: 8, stride: 2, padding: 2 }, false],
  [[1, 3, 17, 17], [8, 3, 3, 3], { stride: 3 }, true],          // rows/cols 15, 16 are in no window
  [[2, 4, 7, 7], [4, 4, 1, 1], {}, true],
  [[1, 4, 17, 17], [8, 4, 1, 1], { stride: 2 }, false],          // ResNet downsample shortcut
  [[2, 8, 17, 17], [4, 8, 3, 3], { padding: 2, dilation: 2 }, true],
  [[1, 3, 7, 17], [1, 3, 3, 3], { stride: [2, 3], padding: [1, 2] }, true],
  [[2, 1, 17, 7], [3, 1, 5, 5], { padding: [3, 0, 1, 2] }, true],
  [[1, 8, 3, 3], [8, 8, 3, 3], { padding: 1 }, true],
  [[2, 4, 3, 7], [8, 2, 3, 1], { groups: 2, stride: [2, 1], dilation: [2, 1], padding: [1, 0, 2, 0] }, true],
  [[1, 8, 17, 17], [8, 4, 5, 5], { groups: 2, stride: 3, padding: 3, dilation: 2 }, true],
  [[1, 3, 17, 17], [4, 3, 7, 7], { stride: 2, padding: 3 }, false],   // ResNet stem
  [[1, 4, 7, 7], [4, 4, 3, 3], { stride: 3, padding: [3, 0, 0, 3] }, true],
  [[2, 17, 9, 9], [33, 17, 3, 3], { padding: 1 }, true],        // several channel blocks and column blocks
  [[1, 16, 7, 7], [16, 8, 3, 3], { groups: 2, padding: 1, stride: 2 }, true],
];

function data(c: Case, seed: number) {
  const [xs, ws, o, bias] = c;
  const rng = new Rng(seed);
  const g = convGeometry(xs, ws, o);
  const x = rng.array(numel(xs)), w = rng.array(numel(ws)), b = bias ? rng.array(ws[0]!) : null;
  const dy = rng.array(g.N * g.K * g.P * g.Q);
  return { xs, ws, o, x, w, b, dy, ys: [g.N, g.K, g.P, g.Q], g };
}

// f32 sums of `terms` products of magnitude ≤ 1 in a different order than the float64 reference: the
// absolute error grows with the number of terms whatever the sum's value, so the near-zero floor
// (atol) scales with it. A wrong or missing tap is an error of ~1/√terms of the value: far above this.
const tol = (terms: number) => ({ rtol: 1e-3, atol: 3e-5 * terms });
const close = (what: string, got: ArrayLike<number>, want: ArrayLike<number>, terms: number) =>
  expectClose(what, got, want, tol(terms).rtol, tol(terms).atol);

describe('conv2d vs float64 reference', () => {
  it.each(CASES.map((c, i) => [i, `x${JSON.stringify(c[0])} w${JSON.stringify(c[1])} ${JSON.stringify(c[2])}${c[3] ? ' +b' : ''}`, c] as const))(
    'case %i: %s', async (i, _name, c) => {
      const d = data(c, 100 + i);
      const { g } = d;
      const tx = Tensor.from(gpu, d.x, d.xs), tw = Tensor.from(gpu, d.w, d.ws), tdy = Tensor.from(gpu, d.dy, d.ys);
      const tb = d.b ? Tensor.from(gpu, d.b) : undefined;
      const yRef = conv2dRef(d.x, d.xs, d.w, d.ws, d.b, d.o);
      expect(yRef.shape).toEqual(d.ys);
      const dxRef = conv2dBackwardInputRef(d.dy, d.w, d.ws, d.xs, d.o);
      const dwRef = conv2dBackwardWeightRef(d.x, d.xs, d.dy, d.ws, d.o);
      const fwdTerms = g.Cg * g.R * g.S, dxTerms = g.Kg * g.R * g.S, dwTerms = g.N * g.P * g.Q;
      for (const version of [1, 2] as const) {
        const o = { ...d.o, version };
        const y = conv2d(tx, tw, tb, o);
        expect([...y.shape]).toEqual(d.ys);
        close(`fwd v${version}`, await y.read(), yRef.y, fwdTerms);
        close(`dX v${version}`, await conv2dBackwardInput(tdy, tw, d.xs, o).read(), dxRef, dxTerms);
        close(`dW v${version}`, await conv2dBackwardWeight(tx, tdy, d.ws, o).read(), dwRef, dwTerms);
      }
      const db = await conv2dBackwardBias(tdy).read();
      close('db', db, conv2dBackwardBiasRef(d.dy, d.ys), g.N * g.P * g.Q);

      // The gradients are the derivatives of the forward (central differences of Σ y·dY, float64).
      const grads = conv2dBackward(tx, tw, tdy, d.o, { needDX: true, needDW: true, needDB: !!d.b });
      gradcheck('dX', (v) => conv2dRef(v, d.xs, d.w, d.ws, d.b, d.o).y, d.x, d.dy, await grads.dX!.read());
      gradcheck('dW', (v) => conv2dRef(d.x, d.xs, v, d.ws, d.b, d.o).y, d.w, d.dy, await grads.dW!.read());
      if (d.b) gradcheck('db', (v) => conv2dRef(d.x, d.xs, d.w, d.ws, v, d.o).y, d.b, d.dy, await grads.db!.read());
      for (const t of [tx, tw, tdy, tb, grads.dX, grads.dW, grads.db]) t?.dispose();
    });
});

describe('conv2d v2 without subgroups (fallback)', () => {
  it.each([[2, 'none'], [7, 'none'], [17, 'none'], [21, 'none']] as const)('case %i, share %s', async (i, share) => {
    const d = data(CASES[i]!, 100 + i);
    const { g } = d;
    const o: Conv2dOptions = { ...d.o, share };
    const tx = Tensor.from(gpu, d.x, d.xs), tw = Tensor.from(gpu, d.w, d.ws), tdy = Tensor.from(gpu, d.dy, d.ys);
    const tb = d.b ? Tensor.from(gpu, d.b) : undefined;
    close(`fwd ${share}`, await conv2d(tx, tw, tb, o).read(), conv2dRef(d.x, d.xs, d.w, d.ws, d.b, d.o).y, g.Cg * g.R * g.S);
    close(`dX ${share}`, await conv2dBackwardInput(tdy, tw, d.xs, o).read(), conv2dBackwardInputRef(d.dy, d.w, d.ws, d.xs, d.o), g.Kg * g.R * g.S);
    close(`dW ${share}`, await conv2dBackwardWeight(tx, tdy, d.ws, o).read(), conv2dBackwardWeightRef(d.x, d.xs, d.dy, d.ws, d.o), g.N * g.P * g.Q);
  });
});

describe('conv2d batch chunks (tensors above the binding limit)', () => {
  it.each([1, 2] as const)('v%i: 3 images, a binding limit of 2 images, unaligned window starts', async (version) => {
    const c: Case = [[3, 4, 7, 7], [4, 4, 3, 3], { padding: 1, stride: 1 }, true];
    const d = data(c, 9);
    const o: Conv2dOptions = { ...d.o, version, bindingLimit: 2 * 4 * 7 * 7 * 4 + 256 };
    const tx = Tensor.from(gpu, d.x, d.xs), tw = Tensor.from(gpu, d.w, d.ws), tdy = Tensor.from(gpu, d.dy, d.ys);
    const tb = Tensor.from(gpu, d.b!);
    close('fwd chunked', await conv2d(tx, tw, tb, o).read(), conv2dRef(d.x, d.xs, d.w, d.ws, d.b, d.o).y, 36);
    close('dX chunked', await conv2dBackwardInput(tdy, tw, d.xs, o).read(), conv2dBackwardInputRef(d.dy, d.w, d.ws, d.xs, d.o), 36);
    close('dW chunked', await conv2dBackwardWeight(tx, tdy, d.ws, o).read(), conv2dBackwardWeightRef(d.x, d.xs, d.dy, d.ws, d.o), 150);
    close('db chunked', await conv2dBackwardBias(tdy, o).read(), conv2dBackwardBiasRef(d.dy, d.ys), 150);
  });
});

describe('conv2dBackward launches only what is needed', () => {
  const count = (prefix: string) => [...gpu.dispatchesByName].filter(([k]) => k.startsWith(prefix)).reduce((s, [, v]) => s + v, 0);
  it.each([1, 2] as const)('v%i', async (version) => {
    const d = data(CASES[3]!, 5);
    const o = { ...d.o, version };
    const tx = Tensor.from(gpu, d.x, d.xs), tw = Tensor.from(gpu, d.w, d.ws), tdy = Tensor.from(gpu, d.dy, d.ys);
    const before = { dx: count('conv2d.dx'), dw: count('conv2d.dw'), db: count('conv2d.db') };
    // Frozen layer in the middle of the network: only dX.
    const frozen = conv2dBackward(tx, tw, tdy, o, { needDX: true, needDW: false, needDB: false });
    expect(frozen.dW).toBeUndefined();
    expect(frozen.db).toBeUndefined();
    expect(count('conv2d.dw') - before.dw).toBe(0);
    expect(count('conv2d.db') - before.db).toBe(0);
    expect(count('conv2d.dx') - before.dx).toBeGreaterThan(0);
    // Lowest trainable layer: no dX.
    const mid = count('conv2d.dx');
    const first = conv2dBackward(tx, tw, tdy, o, { needDX: false, needDW: true, needDB: true });
    expect(first.dX).toBeUndefined();
    expect(count('conv2d.dx') - mid).toBe(0);
    close('dW', await first.dW!.read(), conv2dBackwardWeightRef(d.x, d.xs, d.dy, d.ws, d.o), d.g.N * d.g.P * d.g.Q);
  });
});

describe('conv2d geometry', () => {
  it('output size, padding shorthands and errors', () => {
    expect(convGeometry([4, 64, 56, 56], [64, 64, 3, 3], { padding: 1 })).toMatchObject({ P: 56, Q: 56 });
    expect(convGeometry([1, 3, 224, 224], [64, 3, 7, 7], { stride: 2, padding: 3 })).toMatchObject({ P: 112, Q: 112 });
    // ⌊(17 + 0 − 2 − 1)/3⌋ + 1 = 5: rounding down leaves the last rows uncovered.
    expect(convGeometry([1, 1, 17, 17], [1, 1, 3, 3], { stride: 3 })).toMatchObject({ P: 5, Q: 5 });
    expect(convGeometry([1, 1, 7, 9], [1, 1, 3, 3], { padding: [1, 2] })).toMatchObject({ pt: 1, pl: 2, pb: 1, pr: 2, P: 7, Q: 11 });
    expect(convGeometry([1, 1, 7, 9], [1, 1, 3, 3], { padding: [0, 1, 2, 3], dilation: 2 })).toMatchObject({ P: 5, Q: 9 });
    expect(() => convGeometry([1, 4, 7, 7], [4, 4, 3, 3], { groups: 2 })).toThrow(/groups/);
    expect(() => convGeometry([1, 4, 2, 2], [4, 4, 3, 3], {})).toThrow(/does not fit/);
  });

  it('default version: tiled unless the channel tiles would be mostly padding', () => {
    const dense = convGeometry([1, 64, 8, 8], [64, 64, 3, 3], { padding: 1 });
    const depthwise = convGeometry([1, 64, 8, 8], [64, 1, 3, 3], { padding: 1, groups: 64 });
    for (const pass of ['fwd', 'dx', 'dw'] as const) {
      expect(pickVersion(dense, pass)).toBe(2);
      expect(pickVersion(depthwise, pass)).toBe(1);
      expect(pickVersion(depthwise, pass, { version: 2 })).toBe(2);
    }
    expect(pickVersion(convGeometry([1, 3, 8, 8], [64, 3, 3, 3], {}), 'fwd')).toBe(2);  // VGG's first layer
  });
});

describe('conv2d with fused ReLU (activation: relu) vs float64 reference', () => {
  // With and without bias, padded, strided, dilated, grouped and depthwise, several channel blocks.
  it.each([2, 3, 4, 7, 8, 9, 13, 21, 22])('case %i', async (i) => {
    const d = data(CASES[i]!, 300 + i);
    const { g } = d;
    const tx = Tensor.from(gpu, d.x, d.xs), tw = Tensor.from(gpu, d.w, d.ws);
    const tb = d.b ? Tensor.from(gpu, d.b) : undefined;
    const want = conv2dRef(d.x, d.xs, d.w, d.ws, d.b, { ...d.o, activation: 'relu' }).y;
    const zeros = want.filter((v) => v === 0).length;
    expect(zeros > 0 && zeros < want.length, `${zeros} of ${want.length} clamped`).toBe(true);
    const variants: [string, Conv2dOptions][] = [['v1', { version: 1 }], ['v2', { version: 2 }], ['v2 no subgroups', { version: 2, share: 'none' }]];
    for (const [name, v] of variants) {
      const n0 = gpu.dispatchCount;
      const y = conv2d(tx, tw, tb, { ...d.o, ...v, activation: 'relu' });
      const fused = gpu.dispatchCount - n0;
      const got = await y.read();
      close(`fwd+relu ${name}`, got, want, g.Cg * g.R * g.S);
      // The same as the unfused kernel's output clamped: the epilogue changes nothing but the clamp.
      const n1 = gpu.dispatchCount;
      const plain = conv2d(tx, tw, tb, { ...d.o, ...v });
      expect(gpu.dispatchCount - n1, 'the ReLU costs no dispatch').toBe(fused);
      const p = await plain.read();
      expect(Array.from(got, (e) => e + 0), name).toEqual(Array.from(p, (e) => Math.max(e, 0) + 0));
      y.dispose(); plain.dispose();
    }
    for (const t of [tx, tw, tb]) t?.dispose();
  });

  it('batch chunks (tensors above the binding limit) apply the ReLU in every chunk', async () => {
    const c: Case = [[3, 4, 7, 7], [4, 4, 3, 3], { padding: 1 }, true];
    const d = data(c, 19);
    const tx = Tensor.from(gpu, d.x, d.xs), tw = Tensor.from(gpu, d.w, d.ws), tb = Tensor.from(gpu, d.b!);
    for (const version of [1, 2] as const) {
      const o: Conv2dOptions = { ...d.o, version, activation: 'relu', bindingLimit: 2 * 4 * 7 * 7 * 4 + 256 };
      close(`fwd+relu chunked v${version}`, await conv2d(tx, tw, tb, o).read(), conv2dRef(d.x, d.xs, d.w, d.ws, d.b, o).y, 36);
    }
  });

  it('an unknown activation is an error, not silently ignored', () => {
    const tx = Tensor.zeros(gpu, [1, 1, 3, 3]), tw = Tensor.zeros(gpu, [1, 1, 1, 1]);
    expect(() => conv2d(tx, tw, undefined, { activation: 'gelu' as 'relu' })).toThrow(/unknown fused activation 'gelu'/);
    tx.dispose(); tw.dispose();
  });
});

describe('conv2d v2 lane groups per workgroup (tile.lg)', () => {
  it('1, 2, 4 and 8 lane groups give bit-identical forward and dX (and match the reference); small images default to 2', async () => {
    const rng = new Rng(21);
    for (const stride of [1, 2]) {
      const xs = [3, 20, 5, 5], ws = [40, 20, 3, 3], opts = { stride, padding: 1 };
      const g = convGeometry(xs, ws, opts);
      const x = Float32Array.from({ length: 3 * 20 * 25 }, () => rng.normal());
      const w = Float32Array.from({ length: 40 * 20 * 9 }, () => rng.normal() * 0.2);
      const dy = Float32Array.from({ length: 3 * 40 * g.P * g.Q }, () => rng.normal());
      const X = Tensor.from(gpu, x, xs), W = Tensor.from(gpu, w, ws), DY = Tensor.from(gpu, dy, [3, 40, g.P, g.Q]);
      const runs = await Promise.all([1, 2, 4, 8].map(async (lg) => {
        const y = conv2d(X, W, undefined, { ...opts, version: 2 }, { tm: 8, tk: 4, lg });
        const dx = conv2dBackwardInput(DY, W, xs, { ...opts, version: 2 }, { tm: 8, tk: 4, lg });
        const r = [await y.read(), await dx.read()] as const;
        y.dispose(); dx.dispose();
        return r;
      }));
      for (const r of runs.slice(1)) { expect(r[0]).toEqual(runs[0]![0]); expect(r[1]).toEqual(runs[0]![1]); }
      expectClose(`forward stride ${stride}`, runs[0]![0], conv2dRef(x, xs, w, ws, null, opts).y, 1e-3, 1e-3);
      expectClose(`dX stride ${stride}`, runs[0]![1], conv2dBackwardInputRef(dy, w, ws, xs, opts), 1e-3, 1e-3);
      [X, W, DY].forEach((t) => t.dispose());
    }
    expect(defaultTile('fwd', 3 * 5 * 5).lg).toBe(2);
    expect(defaultTile('dx', 4 * 56 * 56).lg ?? 8).toBe(8);
    expect(() => conv2d(Tensor.zeros(gpu, [1, 8, 4, 4]), Tensor.zeros(gpu, [8, 8, 3, 3]), undefined, { version: 2 }, { tm: 8, tk: 4, lg: 3 })).toThrow(/lane groups/);
  });
});

describe('conv2d v3: explicit im2col + matmul (forward and dX)', () => {
  const cases: [string, number[], number[], Conv2dOptions][] = [
    ['3×3 pad 1', [2, 6, 5, 5], [7, 6, 3, 3], { padding: 1 }],
    ['3×3 stride 2 pad 1', [2, 5, 9, 8], [6, 5, 3, 3], { stride: 2, padding: 1 }],
    ['2×3 dilation 2, asymmetric pad', [1, 4, 9, 10], [5, 4, 2, 3], { dilation: 2, padding: [1, 0, 2, 1] }],
  ];
  it.each(cases)('%s: forward (bias + ReLU) and dX match the reference', async (_, xs, ws, opts) => {
    const rng = new Rng(33);
    const g = convGeometry(xs, ws, opts);
    const x = Float32Array.from({ length: xs.reduce((a, b) => a * b) }, () => rng.normal());
    const w = Float32Array.from({ length: ws.reduce((a, b) => a * b) }, () => rng.normal() * 0.3);
    const b = Float32Array.from({ length: g.K }, () => rng.normal());
    const dy = Float32Array.from({ length: g.N * g.K * g.P * g.Q }, () => rng.normal());
    const X = Tensor.from(gpu, x, xs), W = Tensor.from(gpu, w, ws), B = Tensor.from(gpu, b, [g.K]), DY = Tensor.from(gpu, dy, [g.N, g.K, g.P, g.Q]);
    const names: string[] = [];
    gpu.onDispatch = (d) => names.push(d.name);
    const y = conv2d(X, W, B, { ...opts, version: 3, activation: 'relu' });
    const dx = conv2dBackwardInput(DY, W, xs, { ...opts, version: 3 });
    gpu.onDispatch = null;
    expect(names).toEqual(expect.arrayContaining(['conv2d.fwd.im2col', 'conv2d.dx.im2col']));
    expect(y.shape).toEqual([g.N, g.K, g.P, g.Q]);
    expectClose(`v3 forward ${_}`, await y.read(), conv2dRef(x, xs, w, ws, b, { ...opts, activation: 'relu' }).y, 1e-4, 1e-4);
    expectClose(`v3 dX ${_}`, await dx.read(), conv2dBackwardInputRef(dy, w, ws, xs, opts), 1e-4, 1e-4);
    [X, W, B, DY, y, dx].forEach((t) => t.dispose());
  });

  it('is refused (one clear error) for grouped convolutions and f16', () => {
    const X = Tensor.zeros(gpu, [1, 4, 5, 5]), W = Tensor.zeros(gpu, [4, 2, 3, 3]);
    expect(() => conv2d(X, W, undefined, { groups: 2, version: 3 })).toThrow(/version 3 \(im2col\) needs f32, groups = 1/);
    const X16 = Tensor.zeros(gpu, [1, 4, 5, 5], 'f16'), W16 = Tensor.zeros(gpu, [4, 4, 3, 3], 'f16');
    expect(() => conv2d(X16, W16, undefined, { version: 3 })).toThrow(/needs f32/);
    [X, W, X16, W16].forEach((t) => t.dispose());
  });
});
