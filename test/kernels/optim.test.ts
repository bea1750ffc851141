import { beforeAll, describe, expect, it } from 'vitest';
import { Tensor, type Gpu } from '../../src/gpu/index.js';
import { adamStep, sgdStep, type AdamStepOptions, type OptimVersion, type SgdStepOptions } from '../../src/kernels/optim.js';
import { adamStepRef, sgdStepRef } from '../../src/kernels/reference/optim.js';
import { device, expectClose, Rng } from '../helpers.js';

let gpu: Gpu;
beforeAll(async () => { gpu = await device(); });

const STEPS = 5;
const RTOL = 1e-5;
// NOTE: p − lr·d cancels when the result is near 0, leaving an f32 error of a few ulps of |p| ~ 1
// on a tiny value. Errors are therefore measured against |e| + ATOL with ATOL = 0.1, the scale of
// the parameters (U(−1, 1)): a pass means |error| ≤ 1e-5·|e| + 1e-6.
const ATOL = 0.1;
const SIZES = [1, 7, 1025];
const VERSIONS: OptimVersion[] = ['v1', 'v2'];

type SgdCase = [string, Omit<SgdStepOptions, 'firstStep' | 'version'>];
const SGD_CASES: SgdCase[] = [
  ['plain', { lr: 0.1 }],
  ['weight decay', { lr: 0.05, weightDecay: 0.01 }],
  ['momentum', { lr: 0.1, momentum: 0.9 }],
  ['momentum + dampening + wd', { lr: 0.03, momentum: 0.8, dampening: 0.3, weightDecay: 5e-4 }],
  ['nesterov + wd', { lr: 0.07, momentum: 0.9, nesterov: true, weightDecay: 1e-3 }],
];

describe.each(VERSIONS)('sgdStep %s', (version) => {
  it.each(SGD_CASES)('%s', async (_name, opts) => {
    for (const n of SIZES) {
      const rng = new Rng(n * 13 + 1);
      const p0 = rng.array(n);
      const mom = (opts.momentum ?? 0) !== 0;
      const param = Tensor.from(gpu, p0);
      const grad = Tensor.empty(gpu, [n]);
      // Garbage in the momentum buffer: the first step must not read it into the result.
      const buf = mom ? Tensor.from(gpu, Float32Array.from({ length: n }, () => NaN)) : null;
      const pRef = Float64Array.from(p0), bRef = mom ? new Float64Array(n) : null;
      for (let t = 1; t <= STEPS; t++) {
        const g = rng.array(n);
        grad.write(g);
        sgdStep(param, grad, buf, { ...opts, firstStep: t === 1, version });
        sgdStepRef(pRef, g, bRef, { ...opts, firstStep: t === 1 });
        expectClose(`sgd ${version} ${_name} n=${n} step ${t} param`, await param.read(), pRef, RTOL, ATOL);
        if (buf) expectClose(`sgd ${version} ${_name} n=${n} step ${t} buf`, await buf.read(), bRef!, RTOL, ATOL);
      }
      for (const x of [param, grad, buf]) x?.dispose();
    }
  });
});

type AdamCase = [string, Omit<AdamStepOptions, 'step' | 'version'>];
const ADAM_CASES: AdamCase[] = [
  ['adam', { lr: 1e-2 }],
  ['adam + L2', { lr: 3e-3, beta1: 0.8, beta2: 0.99, eps: 1e-6, weightDecay: 0.1 }],
  ['adamw', { lr: 1e-2, weightDecay: 0.05, decoupled: true }],
  ['adamw, β1 = 0.3 (lerp other branch)', { lr: 2e-2, beta1: 0.3, beta2: 0.95, weightDecay: 0.01, decoupled: true }],
];

const scaleOf = (i: number) => 10 ** ((i % 5) - 2);

describe.each(VERSIONS)('adamStep %s', (version) => {
  it.each(ADAM_CASES)('%s', async (name, opts) => {
    for (const n of SIZES) {
      const rng = new Rng(n * 7 + 3);
      const p0 = rng.array(n);
      const param = Tensor.from(gpu, p0), grad = Tensor.empty(gpu, [n]);
      const m = Tensor.zeros(gpu, [n]), v = Tensor.zeros(gpu, [n]);
      const pRef = Float64Array.from(p0), mRef = new Float64Array(n), vRef = new Float64Array(n);
      for (let t = 1; t <= STEPS; t++) {
        // Mixed gradient scales, so sqrt(v̂) spans orders of magnitude; m and v are compared
        // divided by their element's scale (s, s²), so each is measured against its own size.
        const g = Float32Array.from(rng.array(n), (x, i) => x * scaleOf(i));
        grad.write(g);
        adamStep(param, grad, m, v, { ...opts, step: t, version });
        adamStepRef(pRef, g, mRef, vRef, { ...opts, step: t });
        const tag = `${name} ${version} n=${n} step ${t}`;
        const per = (a: ArrayLike<number>, pow: number) => Float64Array.from(a, (x, i) => x / scaleOf(i) ** pow);
        expectClose(`${tag} param`, await param.read(), pRef, RTOL, ATOL);
        expectClose(`${tag} m`, per(await m.read(), 1), per(mRef, 1), RTOL, ATOL);
        expectClose(`${tag} v`, per(await v.read(), 2), per(vRef, 2), RTOL);
      }
      for (const x of [param, grad, m, v]) x.dispose();
    }
  });
});

describe('optimizer details', () => {
  it('v1 and v2 agree bit for bit on a 64-multiple plus tail', async () => {
    const n = 64 * 5 + 13, rng = new Rng(4);
    const p0 = rng.array(n), g = rng.array(n);
    const out: Float32Array[] = [];
    for (const version of VERSIONS) {
      const p = Tensor.from(gpu, p0), gr = Tensor.from(gpu, g), m = Tensor.zeros(gpu, [n]), v = Tensor.zeros(gpu, [n]);
      adamStep(p, gr, m, v, { lr: 1e-3, weightDecay: 0.01, decoupled: true, step: 1, version });
      out.push(await p.read());
    }
    expect([...out[1]!]).toEqual([...out[0]!]);
  });

  it('rejects bad arguments', () => {
    const a = Tensor.zeros(gpu, [8]), b = Tensor.zeros(gpu, [8]), c = Tensor.zeros(gpu, [9]);
    expect(() => sgdStep(a, b, null, { lr: 1, momentum: 0.9, firstStep: true })).toThrow(/momentum buffer/);
    expect(() => sgdStep(a, b, Tensor.zeros(gpu, [8]), { lr: 1, momentum: 0.9 })).toThrow(/firstStep/);
    expect(() => sgdStep(a, b, null, { lr: 1, nesterov: true })).toThrow(/Nesterov/);
    expect(() => sgdStep(a, c, null, { lr: 1 })).toThrow(/8 vs 9/);
    expect(() => sgdStep(a, a, null, { lr: 1 })).toThrow(/distinct/);
    expect(() => adamStep(a, b, Tensor.zeros(gpu, [8]), Tensor.zeros(gpu, [8]), { lr: 1, step: 0 })).toThrow(/step/);
  });

  it('updates a tensor above the binding limit in windows', async () => {
    // One window's worth plus an odd tail (lavapipe: 128 MiB binding limit → 2 windows).
    const n = Math.floor(gpu.maxBinding / 4) + 1000 + 3;
    const rng = new Rng(11);
    const p0 = new Float32Array(n), g = new Float32Array(n);
    for (let i = 0; i < n; i++) { p0[i] = (i % 1001) / 1000 - 0.5; g[i] = ((i * 7) % 997) / 997 - 0.5 + rng.next() * 1e-3; }
    const param = Tensor.from(gpu, p0), grad = Tensor.from(gpu, g), buf = Tensor.empty(gpu, [n]);
    const pRef = Float64Array.from(p0), bRef = new Float64Array(n);
    const opts = { lr: 0.1, momentum: 0.9, weightDecay: 0.01 };
    for (let t = 1; t <= 2; t++) {
      sgdStep(param, grad, buf, { ...opts, firstStep: t === 1 });
      sgdStepRef(pRef, g, bRef, { ...opts, firstStep: t === 1 });
    }
    expectClose(`sgd momentum n=${n} (windowed)`, await param.read(), pRef, RTOL, ATOL);
    for (const x of [param, grad, buf]) x.dispose();
  });

  it('timing v1 vs v2 (informational)', async () => {
    const n = 1 << 22;
    const ts = [0, 1, 2, 3].map(() => Tensor.from(gpu, new Rng(1).array(n, 0, 1)));
    const [p, g, m, v] = ts as [Tensor, Tensor, Tensor, Tensor];
    for (const version of VERSIONS) {
      for (const [name, op] of [
        ['sgd momentum', (t: number) => sgdStep(p, g, m, { lr: 1e-3, momentum: 0.9, firstStep: t === 1, version })],
        ['adam', (t: number) => adamStep(p, g, m, v, { lr: 1e-3, step: t, version })],
      ] as const) {
        op(1); await gpu.sync();
        const reps = 5, t0 = performance.now();
        for (let i = 0; i < reps; i++) op(i + 2);
        await gpu.sync();
        const ms = (performance.now() - t0) / reps;
        const floats = name === 'adam' ? 7 : 5; // loads + stores per element
        console.log(`timing ${name} ${version} n=2^22: ${ms.toFixed(1)} ms, ${(floats * 4 * n / ms / 1e6).toFixed(2)} GB/s`);
      }
    }
    for (const t of ts) t.dispose();
  });
});
