// matmul with f16 storage (A, B, bias, C in f16; products and sums in f32) vs the float64 reference.
//
// NOTE: the tolerance. Each input is rounded to f16 (relative error ≤ 2^−11 ≈ 4.9e-4) and so is each
// output; the f32 sum adds nothing visible. An output's error is then ~4.9e-4·(|C| + √K·|a||b|) at
// worst-ish, i.e. ~1e-3 of the output scale s (the RMS of the reference). The test asks for
// |got − want| ≤ 1e-2·(|want| + s): an order of magnitude of room, and still ~20× tighter than what a
// wrong index or a missing term would give.

import { beforeAll, describe, expect, it } from 'vitest';
import { Tensor, type Gpu } from '../../src/gpu/index.js';
import { dense, matmul, type MatmulOptions, type MatmulVersion } from '../../src/kernels/matmul.js';
import { matmulRef, type MatmulRefOptions } from '../../src/kernels/reference/matmul.js';
import { device, expectClose, Rng } from '../helpers.js';

let gpu: Gpu;
beforeAll(async () => { gpu = await device(); });

const RTOL = 1e-2;
const scale = (ref: ArrayLike<number>) => Math.sqrt(Array.from(ref).reduce((s, v) => s + v * v, 0) / Math.max(1, ref.length)) || 1;

async function checkF16(M: number, N: number, K: number, o: MatmulOptions & { withBias?: boolean }, seed = 1) {
  const rng = new Rng(seed + M * 7 + N * 13 + K * 17);
  const a = rng.array(M * K), b = rng.array(K * N), bias = o.withBias ? rng.array(N) : undefined;
  const ta = Tensor.from(gpu, a, o.transA ? [K, M] : [M, K], 'f16');
  const tb = Tensor.from(gpu, b, o.transB ? [N, K] : [K, N], 'f16');
  const tbias = bias ? Tensor.from(gpu, bias, [N], 'f16') : undefined;
  const c = matmul(ta, tb, { ...o, bias: tbias });
  expect(c.dtype).toBe('f16');
  expect([...c.shape]).toEqual([M, N]);
  const ref = matmulRef(a, b, M, N, K, { transA: o.transA, transB: o.transB, bias, relu: o.relu });
  const tag = `f16 ${o.version ?? 'v2'} ${o.transA ? 't' : 'n'}${o.transB ? 't' : 'n'} M=${M} N=${N} K=${K}${bias ? ' +bias' : ''}${o.relu ? ' relu' : ''}`;
  expectClose(tag, await c.read(), ref, RTOL, scale(ref));
  for (const t of [ta, tb, tbias, c]) t?.dispose();
}

const TRANS: [boolean, boolean][] = [[false, false], [false, true], [true, false], [true, true]];

describe('matmul with f16 storage', () => {
  // K = 7: scalar loads and every tail; K = 32 with 4-aligned M, N: vec4<f16> loads.
  it.each([[17, 33, 7, true], [20, 36, 32, false]])('M=%i N=%i K=%i (bias %s), all transposes, v2 and v3', async (M, N, K, withBias) => {
    for (const [transA, transB] of TRANS) {
      for (const version of ['v2', 'v3'] as MatmulVersion[]) await checkF16(M, N, K, { transA, transB, version, withBias });
    }
  });

  it('a dense layer with the fused ReLU, every version (v1 too)', async () => {
    for (const version of ['v1', 'v2', 'v3'] as MatmulVersion[]) await checkF16(5, 12, 16, { transB: true, version, withBias: true, relu: true });
  });

  it('beta reads the old f16 C; 3-D batches (window offsets in halves)', async () => {
    const rng = new Rng(4);
    const [M, N, K] = [6, 9, 10];
    const a = rng.array(M * K), b = rng.array(K * N), old = rng.array(M * N);
    for (const version of ['v2', 'v3'] as MatmulVersion[]) {
      const ta = Tensor.from(gpu, a, [M, K], 'f16'), tb = Tensor.from(gpu, b, [K, N], 'f16'), out = Tensor.from(gpu, old, [M, N], 'f16');
      matmul(ta, tb, { out, beta: 0.5, version });
      const want = matmulRef(a, b, M, N, K, { out: old, beta: 0.5 });
      expectClose(`f16 ${version} beta=0.5`, await out.read(), want, RTOL, scale(want));
      for (const t of [ta, tb, out]) t.dispose();
    }
    // Batch items start at odd element offsets (7·9 = 63 halves apart): windows at 256-byte
    // boundaries with unaligned offsets inside them.
    const [Bt, Mb, Nb, Kb] = [3, 7, 17, 9];
    const x = rng.array(Bt * Mb * Kb), w = rng.array(Nb * Kb);
    const tx = Tensor.from(gpu, x, [Bt, Mb, Kb], 'f16'), tw = Tensor.from(gpu, w, [Nb, Kb], 'f16');
    for (const version of ['v2', 'v3'] as MatmulVersion[]) {
      const y = await matmul(tx, tw, { transB: true, version }).read();
      for (let i = 0; i < Bt; i++) {
        const want = matmulRef(x.subarray(i * Mb * Kb, (i + 1) * Mb * Kb), w, Mb, Nb, Kb, { transB: true } satisfies MatmulRefOptions);
        expectClose(`f16 ${version} batch ${i}`, y.subarray(i * Mb * Nb, (i + 1) * Mb * Nb), want, RTOL, scale(want));
      }
    }
    tx.dispose(); tw.dispose();
  });

  it('mixed precisions and adapters without shader-f16 are rejected with a clear error', () => {
    const a16 = Tensor.zeros(gpu, [4, 4], 'f16'), b32 = Tensor.zeros(gpu, [4, 4]), bias32 = Tensor.zeros(gpu, [4]);
    expect(() => matmul(a16, b32)).toThrow(/A is f16 but B is not/);
    expect(() => dense(b32, b32, Tensor.zeros(gpu, [4], 'f16'))).toThrow(/A is f32 but bias is not/);
    // The same tensor seen through a Gpu whose adapter lacks the feature.
    const noF16 = Object.create(gpu, { features: { value: new Set<string>() } }) as Gpu;
    const a = new Tensor(noF16, a16.buffer, [4, 4], false, 'f16'), b = new Tensor(noF16, a16.buffer, [4, 4], false, 'f16');
    expect(() => matmul(a, b)).toThrow(/shader-f16/);
    for (const t of [a16, b32, bias32]) t.dispose();
  });
});
