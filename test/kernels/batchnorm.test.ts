import { beforeAll, describe, expect, it } from 'vitest';
import { Tensor, type Gpu } from '../../src/gpu/index.js';
import {
  batchNorm2dBackward, batchNorm2dInference, batchNorm2dInferenceBackward, batchNorm2dTrain, type BatchNormVersion,
} from '../../src/kernels/batchnorm.js';
import {
  batchNorm2dBackwardRef, batchNorm2dInferenceBackwardRef, batchNorm2dInferenceRef, batchNorm2dInferenceReluRef, batchNorm2dTrainRef,
} from '../../src/kernels/reference/batchnorm.js';
import { device, expectClose, gradcheck, Rng } from '../helpers.js';

let gpu: Gpu;
beforeAll(async () => { gpu = await device(); });

const prod = (s: number[]) => s.reduce((p, q) => p * q, 1);
const EPS = 1e-5, MOM = 0.1;
// Outputs are O(1); near-zero outputs come from x − mean cancelling, so errors are judged relative
// to |y| + 0.01 (a few f32 ulps of O(1) values pass, a wrong coefficient does not).
const Y_TOL = [1e-4, 1e-2] as const;

function data(shape: number[], seed: number, { offset = 0, spread = 1 } = {}) {
  const rng = new Rng(seed);
  const C = shape[1]!;
  return {
    x: Float32Array.from(rng.array(prod(shape)), (v) => offset + spread * v),
    dy: rng.array(prod(shape)),
    gamma: rng.array(C, 0.5, 1.5), beta: rng.array(C),
    rm: rng.array(C, -0.5, 0.5), rv: rng.array(C, 0.5, 1.5),
  };
}

// [shape, version, maxWindowBytes]: odd shapes, vec4 shapes (H·W % 4 == 0), 2-D input, planes wide
// enough for v2's plane grid (H·W/4 or H·W ≥ 32: [5,3,8,17], [3,5,7,9], [2,3,33,33]), and windowed
// cases (tiny binding windows force several windows of whole samples at unaligned sample starts).
const cases: [number[], BatchNormVersion, number | undefined][] = [
  [[2, 3, 5, 7], 2, undefined], [[2, 3, 5, 7], 1, undefined],
  [[3, 7, 1, 1], 2, undefined], [[3, 7, 1, 1], 1, undefined],
  [[1, 17, 3, 3], 2, undefined], [[1, 17, 3, 3], 1, undefined],
  [[5, 3], 2, undefined], [[5, 3], 1, undefined],
  [[3, 5, 4, 4], 2, undefined], [[3, 5, 4, 4], 1, undefined],
  [[3, 5, 7, 9], 2, 2048], [[5, 4, 4, 5], 2, 1024], [[5, 4, 4, 5], 1, 1024],
  [[5, 3, 8, 17], 2, undefined], [[5, 3, 8, 17], 2, 4096], [[5, 3, 8, 17], 1, 4096],
  [[2, 3, 33, 33], 2, undefined],
];

describe('batchNorm2d', () => {
  it.each(cases)('%j v%i window=%s: inference and training forward + backward', async (shape, version, maxWindowBytes) => {
    const opts = { version, maxWindowBytes };
    const tag = `[${shape.join(',')}] v${version}${maxWindowBytes ? ` win${maxWindowBytes}` : ''}`;
    const d = data(shape, prod(shape) + version);
    const tx = Tensor.from(gpu, d.x, shape), tdy = Tensor.from(gpu, d.dy, shape);
    const tg = Tensor.from(gpu, d.gamma), tb = Tensor.from(gpu, d.beta);
    const trm = Tensor.from(gpu, d.rm), trv = Tensor.from(gpu, d.rv);
    const big = prod(shape) > 2000;
    const gc = { samples: big ? 24 : 48 };

    // Inference forward and backward (frozen running statistics).
    const yInf = batchNorm2dInference(tx, tg, tb, trm, trv, EPS, opts);
    expect([...yInf.shape]).toEqual(shape);
    expectClose(`${tag} inference fwd`, await yInf.read(), batchNorm2dInferenceRef(d.x, shape, d.gamma, d.beta, d.rm, d.rv, EPS), ...Y_TOL);
    const gInf = batchNorm2dInferenceBackward(tx, tdy, tg, trm, trv, EPS, opts);
    const rInf = batchNorm2dInferenceBackwardRef(d.x, shape, d.dy, d.gamma, d.rm, d.rv, EPS);
    const [dxI, dgI, dbI] = [await gInf.dX!.read(), await gInf.dGamma!.read(), await gInf.dBeta!.read()];
    expectClose(`${tag} inference dX`, dxI, rInf.dX, 1e-5);
    expectClose(`${tag} inference dGamma`, dgI, rInf.dGamma, 1e-4);
    expectClose(`${tag} inference dBeta`, dbI, rInf.dBeta, 1e-4);
    gradcheck(`${tag} inference dX`, (v) => batchNorm2dInferenceRef(v, shape, d.gamma, d.beta, d.rm, d.rv, EPS), d.x, d.dy, dxI, gc);
    gradcheck(`${tag} inference dGamma`, (v) => batchNorm2dInferenceRef(d.x, shape, v, d.beta, d.rm, d.rv, EPS), d.gamma, d.dy, dgI, gc);
    gradcheck(`${tag} inference dBeta`, (v) => batchNorm2dInferenceRef(d.x, shape, d.gamma, v, d.rm, d.rv, EPS), d.beta, d.dy, dbI, gc);

    // Training forward: batch statistics, running statistics updated in place.
    const ref = batchNorm2dTrainRef(d.x, shape, d.gamma, d.beta, d.rm, d.rv, { eps: EPS, momentum: MOM });
    const tr = batchNorm2dTrain(tx, tg, tb, trm, trv, { eps: EPS, momentum: MOM, ...opts });
    expectClose(`${tag} train fwd`, await tr.y.read(), ref.y, ...Y_TOL);
    const [sm, si] = [await tr.saveMean.read(), await tr.saveInvStd.read()];
    expectClose(`${tag} saveMean`, sm, ref.saveMean, 1e-4);
    expectClose(`${tag} saveInvStd`, si, ref.saveInvStd, 1e-4);
    expectClose(`${tag} running mean`, await trm.read(), ref.runningMean, 1e-5);
    expectClose(`${tag} running var`, await trv.read(), ref.runningVar, 1e-5);

    // Training backward, vs the reference (with the GPU's saved statistics) and vs finite
    // differences of the training forward, which recomputes batch statistics from the perturbed x.
    const gTr = batchNorm2dBackward(tx, tdy, tg, tr.saveMean, tr.saveInvStd, opts);
    const rTr = batchNorm2dBackwardRef(d.x, shape, d.dy, d.gamma, sm, si);
    const [dx, dg, db] = [await gTr.dX!.read(), await gTr.dGamma!.read(), await gTr.dBeta!.read()];
    expectClose(`${tag} train dX`, dx, rTr.dX, 1e-3, 1e-4);
    expectClose(`${tag} train dGamma`, dg, rTr.dGamma, 1e-4);
    expectClose(`${tag} train dBeta`, db, rTr.dBeta, 1e-4);
    const fwd = (x: ArrayLike<number>, g: ArrayLike<number>, b: ArrayLike<number>) =>
      batchNorm2dTrainRef(x, shape, g, b, d.rm, d.rv, { eps: EPS, momentum: MOM }).y;
    gradcheck(`${tag} train dX`, (v) => fwd(v, d.gamma, d.beta), d.x, d.dy, dx, { ...gc, rtol: 5e-3 });
    gradcheck(`${tag} train dGamma`, (v) => fwd(d.x, v, d.beta), d.gamma, d.dy, dg, gc);
    gradcheck(`${tag} train dBeta`, (v) => fwd(d.x, d.gamma, v), d.beta, d.dy, db, gc);
  });

  it('numerically stable statistics when |mean| ≫ std', async () => {
    // x = 100 ± 0.1: E[x²] − E[x]² in f32 would lose every digit of the variance (~3e-3 vs ulp(1e4)).
    const shape = [4, 3, 16, 16];
    for (const version of [1, 2] as const) {
      const d = data(shape, 11, { offset: 100, spread: 0.1 });
      const ref = batchNorm2dTrainRef(d.x, shape, d.gamma, d.beta, d.rm, d.rv, { eps: 0 });
      const tr = batchNorm2dTrain(Tensor.from(gpu, d.x, shape), Tensor.from(gpu, d.gamma), Tensor.from(gpu, d.beta), null, null, { eps: 0, updateStats: false, version });
      // NOTE: an f32 mean is only good to ~ulp(100)/2 = 3.8e-6, i.e. ~7e-5 of the std (0.058): that is
      // the floor on the error of x̂ here, so y (O(1)) is checked to an absolute 3e-4.
      expectClose(`offset data v${version} saveInvStd`, await tr.saveInvStd.read(), ref.saveInvStd, 1e-4);
      expectClose(`offset data v${version} y`, await tr.y.read(), ref.y, 3e-4, 1);
    }
  });

  it('updateStats: false leaves running statistics untouched; grads can be skipped', async () => {
    const shape = [2, 3, 5, 7];
    const d = data(shape, 5);
    const tx = Tensor.from(gpu, d.x, shape), trm = Tensor.from(gpu, d.rm), trv = Tensor.from(gpu, d.rv);
    const tg = Tensor.from(gpu, d.gamma), tb = Tensor.from(gpu, d.beta);
    const tr = batchNorm2dTrain(tx, tg, tb, trm, trv, { updateStats: false });
    expect(Array.from(await trm.read())).toEqual(Array.from(d.rm));
    expect(Array.from(await trv.read())).toEqual(Array.from(d.rv));
    const g = batchNorm2dBackward(tx, Tensor.from(gpu, d.dy, shape), tg, tr.saveMean, tr.saveInvStd, { needDGamma: false, needDBeta: false });
    expect(g.dGamma).toBeNull();
    expect(g.dBeta).toBeNull();
    const ref = batchNorm2dBackwardRef(d.x, shape, d.dy, d.gamma, await tr.saveMean.read(), await tr.saveInvStd.read());
    expectClose('dX only', await g.dX!.read(), ref.dX, 1e-3, 1e-4);
    const gi = batchNorm2dInferenceBackward(tx, Tensor.from(gpu, d.dy, shape), tg, trm, trv, EPS, { needDGamma: false, needDBeta: false });
    expect(gi.dGamma).toBeNull();
    expectClose('inference dX only', await gi.dX!.read(), batchNorm2dInferenceBackwardRef(d.x, shape, d.dy, d.gamma, d.rm, d.rv, EPS).dX, 1e-5);
  });

  it('m = 1: inference works, training throws a clear error', async () => {
    const shape = [1, 1, 1, 1];
    const d = data(shape, 3);
    const tx = Tensor.from(gpu, d.x, shape), tg = Tensor.from(gpu, d.gamma), tb = Tensor.from(gpu, d.beta);
    const trm = Tensor.from(gpu, d.rm), trv = Tensor.from(gpu, d.rv);
    expectClose('[1,1,1,1] inference', await batchNorm2dInference(tx, tg, tb, trm, trv).read(), batchNorm2dInferenceRef(d.x, shape, d.gamma, d.beta, d.rm, d.rv), 1e-5);
    expect(() => batchNorm2dTrain(tx, tg, tb, trm, trv)).toThrow(/at least 2/);
    expect(() => batchNorm2dInference(tx, Tensor.from(gpu, [1, 2]), tb, trm, trv)).toThrow(/C = 1/);
  });
});

describe('batchNorm2d inference with fused ReLU', () => {
  // Same shapes as above: flat and plane grids, vec4 and scalar, windowed. About half the outputs
  // are clamped (beta and x − mean are centred), so both sides of the ReLU are checked.
  const fusedCases: [number[], BatchNormVersion, number | undefined][] = [
    [[2, 3, 5, 7], 2, undefined], [[2, 3, 5, 7], 1, undefined], [[5, 3], 2, undefined], [[3, 5, 4, 4], 2, undefined],
    [[5, 3, 8, 17], 2, undefined], [[5, 3, 8, 17], 2, 4096], [[5, 4, 4, 5], 1, 1024], [[2, 3, 33, 33], 2, undefined],
  ];
  it.each(fusedCases)('%j v%i window=%s: y = max(0, BN(x)) in one map pass, same values as BN then ReLU', async (shape, version, maxWindowBytes) => {
    const tag = `[${shape.join(',')}] v${version}${maxWindowBytes ? ` win${maxWindowBytes}` : ''} relu`;
    const d = data(shape, prod(shape) + 7 * version);
    const tx = Tensor.from(gpu, d.x, shape), tg = Tensor.from(gpu, d.gamma), tb = Tensor.from(gpu, d.beta);
    const trm = Tensor.from(gpu, d.rm), trv = Tensor.from(gpu, d.rv);
    const count = () => gpu.dispatchCount;
    const c0 = count();
    const y = batchNorm2dInference(tx, tg, tb, trm, trv, EPS, { version, maxWindowBytes, relu: true });
    const fusedDispatches = count() - c0;
    const got = await y.read();
    const want = batchNorm2dInferenceReluRef(d.x, shape, d.gamma, d.beta, d.rm, d.rv, EPS);
    expectClose(`${tag} fwd`, got, want, ...Y_TOL);
    const zeros = want.filter((v) => v === 0).length;
    expect(zeros > 0 && zeros < want.length, `${zeros} of ${want.length} clamped`).toBe(true);
    // Exactly the unfused pass followed by max(·, 0): the same kernel arithmetic, bit for bit.
    const c1 = count();
    const plain = batchNorm2dInference(tx, tg, tb, trm, trv, EPS, { version, maxWindowBytes });
    expect(count() - c1).toBe(fusedDispatches);
    const p = await plain.read();
    // (+ 0 turns a −0 into 0: the sign of a zero is not part of the contract.)
    expect(Array.from(got, (v) => v + 0)).toEqual(Array.from(p, (v) => Math.max(v, 0) + 0));
    for (const t of [tx, tg, tb, trm, trv, y, plain]) t.dispose();
  });
});
