import { beforeAll, describe, expect, it } from 'vitest';
import { Tensor, type Gpu } from '../../src/gpu/index.js';
import {
  argmaxRows, labelsTensor, logSoftmax, logSoftmaxBackward, readU32, softmax, softmaxBackward,
  softmaxCrossEntropy, softmaxCrossEntropyBackward, type SoftmaxVersion,
} from '../../src/kernels/softmax.js';
import {
  argmaxRowsRef, logSoftmaxBackwardRef, logSoftmaxRef, softmaxBackwardRef, softmaxCrossEntropyBackwardRef,
  softmaxCrossEntropyRef, softmaxRef,
} from '../../src/kernels/reference/softmax.js';
import { device, expectClose, gradcheck, Rng } from '../helpers.js';

let gpu: Gpu;
beforeAll(async () => { gpu = await device(); });

const VERSIONS: SoftmaxVersion[] = ['v1', 'v2'];
const BWD_RTOL = 1e-3, BWD_ATOL = 1e-4;
// [N, K, logit magnitude]
const SHAPES: [number, number, number][] = [[1, 1, 3], [3, 7, 3], [17, 33, 3], [5, 1000, 3], [7, 33, 80]];

function logits(rng: Rng, N: number, K: number, mag: number): Float32Array {
  return rng.array(N * K, -mag, mag);
}
function labelsOf(rng: Rng, N: number, K: number): Uint32Array {
  return Uint32Array.from({ length: N }, () => rng.int(K));
}

describe.each(VERSIONS)('softmax %s', (version) => {
  it.each(SHAPES)('softmax + logSoftmax fwd/bwd [%i, %i] |x| ≤ %i', async (N, K, mag) => {
    const rng = new Rng(N * 1009 + K);
    const x = logits(rng, N, K, mag), dy = rng.array(N * K);
    const tx = Tensor.from(gpu, x, [N, K]), tdy = Tensor.from(gpu, dy, [N, K]);

    const y = softmax(tx, { version });
    const yv = await y.read();
    expectClose(`softmax fwd [${N},${K}]`, yv, softmaxRef(x, K), 1e-5);
    const dx = await softmaxBackward(y, tdy, { version }).read();
    // NOTE: backward outputs cancel (dY − Σ dY·y with y ≈ 1; dY ≈ exp(y)·Σ dY), and exp on a GPU is
    // accurate to a few ulps only: compare with an absolute floor of 1e-4 (dY is O(1)).
    expectClose(`softmax bwd [${N},${K}]`, dx, softmaxBackwardRef(yv, dy, K), BWD_RTOL, BWD_ATOL);
    gradcheck(`softmax [${N},${K}]`, (v) => softmaxRef(v, K), x, dy, dx);

    const ly = logSoftmax(tx, { version, axis: 1 });
    const lyv = await ly.read();
    // NOTE: atol 1e-3: at the row max, y = −log(1 + r) with r < 2^-24 is exactly 0 in f32 (as in
    // PyTorch) while the reference has −r; elsewhere values reach −160 and relative error rules.
    expectClose(`logSoftmax fwd [${N},${K}]`, lyv, logSoftmaxRef(x, K), 1e-4, 1e-3);
    const ldx = await logSoftmaxBackward(ly, tdy, { version }).read();
    expectClose(`logSoftmax bwd [${N},${K}]`, ldx, logSoftmaxBackwardRef(lyv, dy, K), BWD_RTOL, BWD_ATOL);
    gradcheck(`logSoftmax [${N},${K}]`, (v) => logSoftmaxRef(v, K), x, dy, ldx);
    for (const t of [tx, tdy, y, ly]) t.dispose();
  });

  it.each(SHAPES)('argmaxRows [%i, %i]', async (N, K, mag) => {
    const rng = new Rng(N + 7 * K);
    const x = logits(rng, N, K, mag);
    // Ties resolve to the first index: plant a duplicate of the max before it in some rows.
    for (let n = 0; n < N; n += 2) {
      const ref = argmaxRowsRef(x.subarray(n * K, (n + 1) * K), K)[0]!;
      if (ref > 0) x[n * K + rng.int(ref)] = x[n * K + ref]!;
    }
    const got = await readU32(argmaxRows(Tensor.from(gpu, x, [N, K]), { version }));
    expect([...got]).toEqual([...argmaxRowsRef(x, K)]);
  });

  it.each(SHAPES)('softmaxCrossEntropy [%i, %i] |x| ≤ %i', async (N, K, mag) => {
    for (const labelSmoothing of [0, 0.1]) {
      const rng = new Rng(N * 31 + K + labelSmoothing * 100);
      const x = logits(rng, N, K, mag), labels = labelsOf(rng, N, K);
      const tx = Tensor.from(gpu, x, [N, K]);
      const tl = labelsTensor(gpu, labels, K);
      const ref = softmaxCrossEntropyRef(x, labels, K, { labelSmoothing });
      const r = softmaxCrossEntropy(tx, tl, { labelSmoothing, rowLosses: true, accuracy: true, version });
      const tag = `xent ε=${labelSmoothing} [${N},${K}]`;
      expectClose(`${tag} loss`, await r.loss.read(), [ref.loss], 1e-5);
      expectClose(`${tag} rowLoss`, await r.rowLoss!.read(), ref.rowLoss, 1e-5);
      const probs = await r.probs.read();
      expectClose(`${tag} probs`, probs, ref.probs, 1e-5);
      const pred = await readU32(r.pred!);
      expect([...pred]).toEqual([...argmaxRowsRef(x, K)]);
      const correct = pred.reduce((s, p, i) => s + (p === labels[i] ? 1 : 0), 0);
      expect((await r.correct!.read())[0]).toBe(correct);

      // Backward with an upstream scalar, as a number and as a GPU tensor.
      const dLoss = rng.uniform(0.5, 2);
      const dx = await softmaxCrossEntropyBackward(r.probs, labels, { labelSmoothing, scale: dLoss }).read();
      expectClose(`${tag} bwd`, dx, softmaxCrossEntropyBackwardRef(probs, labels, K, { labelSmoothing, scale: dLoss }), 1e-5);
      const dx2 = await softmaxCrossEntropyBackward(r.probs, tl, { labelSmoothing, dLoss: Tensor.from(gpu, [dLoss]) }).read();
      expectClose(`${tag} bwd (dLoss tensor)`, dx2, dx, 1e-6);
      gradcheck(tag, (v) => [softmaxCrossEntropyRef(v, labels, K, { labelSmoothing }).loss], x, [dLoss], dx, { atol: 1e-5 });
      for (const t of [tx, tl, r.loss, r.probs, r.rowLoss!, r.pred!, r.correct!]) t.dispose();
    }
  });
});

describe('softmaxCrossEntropy details', () => {
  it("reduction 'sum' and a Uint32Array label input", async () => {
    const rng = new Rng(99);
    const N = 9, K = 13, x = logits(rng, N, K, 4), labels = labelsOf(rng, N, K);
    const tx = Tensor.from(gpu, x, [N, K]);
    const r = softmaxCrossEntropy(tx, labels, { reduction: 'sum', labelSmoothing: 0.2 });
    const ref = softmaxCrossEntropyRef(x, labels, K, { reduction: 'sum', labelSmoothing: 0.2 });
    expectClose('xent sum loss', await r.loss.read(), [ref.loss], 1e-5);
    const dx = await softmaxCrossEntropyBackward(r.probs, labels, { reduction: 'sum', labelSmoothing: 0.2 }).read();
    gradcheck('xent sum', (v) => [softmaxCrossEntropyRef(v, labels, K, { reduction: 'sum', labelSmoothing: 0.2 }).loss], x, [1], dx);
    expect(r.rowLoss).toBeUndefined();
    expect(r.pred).toBeUndefined();
  });

  it('rejects out-of-range labels on the CPU and clamps them on the GPU', async () => {
    const N = 4, K = 5, x = new Rng(5).array(N * K);
    const tx = Tensor.from(gpu, x, [N, K]);
    const bad = Uint32Array.from([0, 5, 1, 2]);
    expect(() => softmaxCrossEntropy(tx, bad)).toThrow(/out of range/);
    expect(() => softmaxCrossEntropyBackward(tx, bad)).toThrow(/out of range/);
    expect(() => softmaxCrossEntropy(tx, Uint32Array.from([0, 1]))).toThrow(/2 labels for 4 rows/);
    // A label tensor is not inspected: the kernel clamps to K−1 instead of reading past the row.
    const lab = Uint32Array.from([0, 0xffffffff, 1, 2]);
    const r = softmaxCrossEntropy(tx, labelsTensor(gpu, lab), { rowLosses: true, accuracy: true });
    const clamped = softmaxCrossEntropyRef(x, [0, K - 1, 1, 2], K);
    expectClose('xent clamped label', await r.rowLoss!.read(), clamped.rowLoss, 1e-5);
    const pred = await readU32(r.pred!);
    // The bad row never counts as correct (pred < K).
    expect((await r.correct!.read())[0]).toBe(pred.reduce((s, p, i) => s + (p === lab[i] ? 1 : 0), 0));
  });

  it('rejects an axis other than the last', () => {
    const tx = Tensor.from(gpu, new Float32Array(6), [2, 3]);
    expect(() => softmax(tx, { axis: 0 })).toThrow(/last axis/);
    expect(softmax(tx, { axis: -1 }).shape).toEqual([2, 3]);
  });

  it('timing v1 vs v2 (informational)', async () => {
    const labels = new Uint32Array(256);
    for (const [N, K] of [[16, 1000], [64, 1000], [256, 1000]] as const) {
      const tx = Tensor.from(gpu, new Rng(1).array(N * K), [N, K]);
      const tl = labelsTensor(gpu, labels.subarray(0, N), K);
      for (const version of VERSIONS) {
        const ops = {
          softmax: () => softmax(tx, { version }).dispose(),
          xent: () => { const r = softmaxCrossEntropy(tx, tl, { version }); r.loss.dispose(); r.probs.dispose(); },
        };
        for (const [name, op] of Object.entries(ops)) {
          op(); await gpu.sync();
          const reps = 20, t0 = performance.now();
          for (let i = 0; i < reps; i++) op();
          await gpu.sync();
          console.log(`timing ${name} ${version} [${N},${K}]: ${((performance.now() - t0) / reps).toFixed(3)} ms per call`);
        }
      }
      tx.dispose(); tl.dispose();
    }
  });
});
