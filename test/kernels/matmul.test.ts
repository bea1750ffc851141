import { beforeAll, describe, expect, it } from 'vitest';
import { Tensor, type Gpu } from '../../src/gpu/index.js';
import { dense, denseBackward, matmul, pickTile, pickV3Tile, V2_TILE, V3_TILES, type MatmulOptions, type MatmulVersion } from '../../src/kernels/matmul.js';
import { denseBackwardRef, denseRef, matmulRef } from '../../src/kernels/reference/matmul.js';
import { device, expectClose, gradcheck, Rng } from '../helpers.js';

let gpu: Gpu;
beforeAll(async () => { gpu = await device(); });

// NOTE: float32 sums of K products differ from the float64 reference by ~1e-7·√K·|terms|, so near-zero
// outputs need an absolute floor: the test passes when |got − want| ≤ rtol·(|want| + atol), with atol
// growing like √K (the typical size of an output) past K = 16.
const RTOL = 1e-4, ATOL = 0.05;
const atolFor = (K: number) => ATOL * Math.max(1, Math.sqrt(K) / 4);

/** Runs one matmul on random data and compares it with the float64 reference. */
async function checkMatmul(M: number, N: number, K: number, o: MatmulOptions & { withBias?: boolean }, seed = 1) {
  const rng = new Rng(seed + M * 7 + N * 13 + K * 17);
  const a = rng.array(M * K), b = rng.array(K * N), bias = o.withBias ? rng.array(N) : undefined;
  const ta = Tensor.from(gpu, a, o.transA ? [K, M] : [M, K]);
  const tb = Tensor.from(gpu, b, o.transB ? [N, K] : [K, N]);
  const tbias = bias ? Tensor.from(gpu, bias) : undefined;
  const c = matmul(ta, tb, { ...o, bias: tbias });
  expect([...c.shape]).toEqual([M, N]);
  const ref = matmulRef(a, b, M, N, K, { transA: o.transA, transB: o.transB, bias, relu: o.relu });
  const tag = `${o.version ?? 'v2'} ${o.transA ? 't' : 'n'}${o.transB ? 't' : 'n'} M=${M} N=${N} K=${K}${bias ? ' +bias' : ''}${o.relu ? ' relu' : ''}${o.subgroups === false ? ' no-subgroups' : ''}`;
  expectClose(tag, await c.read(), ref, RTOL, atolFor(K));
  for (const t of [ta, tb, tbias, c]) t?.dispose();
}

const TRANS: [boolean, boolean][] = [[false, false], [false, true], [true, false], [true, true]];
const VERSIONS: MatmulVersion[] = ['v1', 'v2'];
const ALL_VERSIONS: MatmulVersion[] = ['v1', 'v2', 'v3'];

describe('matmul vs reference', () => {
  // Odd shapes (scalar loads, every tail) and 4-aligned ones (vec4 loads), all transposes, both versions.
  // M picks the v2 tile (≤ 4, ≤ 8, larger); each distinct variant is a pipeline to compile, so the
  // list covers every tile × load kind once or twice rather than every combination.
  it.each([
    [1, 1, 1, true], [3, 7, 17, false], [4, 8, 12, true], [4, 8, 5, false], [7, 1, 3, true],
    [17, 33, 7, true], [33, 17, 33, true], [65, 129, 33, true], [32, 36, 64, false], [20, 132, 12, false],
  ])('M=%i N=%i K=%i (bias %s), all transposes, v1 and v2', async (M, N, K, withBias) => {
    for (const [transA, transB] of TRANS) {
      for (const version of VERSIONS) await checkMatmul(M, N, K, { transA, transB, version, withBias });
    }
  });

  it('v2 without subgroups (the fallback for adapters without them)', async () => {
    for (const [transA, transB] of TRANS) await checkMatmul(36, 44, 33, { transA, transB, subgroups: false });
  });

  it('tile choice follows M', () => {
    expect(pickTile(2).TM).toBe(4);
    expect(pickTile(8).TM).toBe(8);
    expect(pickTile(12)).toMatchObject({ TM: 16, GM: 1 }); // one 16-row group per workgroup
    expect(pickTile(1000)).toEqual(V2_TILE);
    expect(pickV3Tile(16)).toEqual(V3_TILES[2]);
    expect(pickV3Tile(1000)).toEqual(V3_TILES[0]);
  });

  it('256×256×256 (v2, all transposes; v1 without)', async () => {
    for (const [transA, transB] of TRANS) await checkMatmul(256, 256, 256, { transA, transB }, 5);
    await checkMatmul(256, 256, 256, { version: 'v1' }, 5);
  });

  it('beta and accumulate read the old C; beta = 0 ignores NaN garbage', async () => {
    const rng = new Rng(11);
    const [M, N, K] = [4, 13, 21];
    const a = rng.array(M * K), b = rng.array(N * K), bias = rng.array(N), old = rng.array(M * N);
    for (const version of ALL_VERSIONS) {
      const ta = Tensor.from(gpu, a, [M, K]), tb = Tensor.from(gpu, b, [N, K]), tbias = Tensor.from(gpu, bias);
      const out = Tensor.from(gpu, old, [M, N]);
      const r = matmul(ta, tb, { transB: true, bias: tbias, out, beta: 0.5, version });
      expect(r).toBe(out);
      expectClose(`${version} beta=0.5`, await out.read(), matmulRef(a, b, M, N, K, { transB: true, bias, beta: 0.5, out: old }), RTOL, ATOL);
      out.write(old);
      matmul(ta, tb, { transB: true, out, accumulate: true, version });
      expectClose(`${version} accumulate`, await out.read(), matmulRef(a, b, M, N, K, { transB: true, beta: 1, out: old }), RTOL, ATOL);
      out.write(new Float32Array(M * N).fill(NaN));
      matmul(ta, tb, { transB: true, out, version });
      expectClose(`${version} beta=0 over NaN`, await out.read(), matmulRef(a, b, M, N, K, { transB: true }), RTOL, ATOL);
      for (const t of [ta, tb, tbias, out]) t.dispose();
    }
    const [z23, z34, z44] = [Tensor.zeros(gpu, [2, 3]), Tensor.zeros(gpu, [3, 4]), Tensor.zeros(gpu, [4, 4])];
    expect(() => matmul(z23, z34, { accumulate: true })).toThrow(/needs `out`/);
    expect(() => matmul(z23, z44)).toThrow(/inner dimensions/);
    for (const t of [z23, z34, z44]) t.dispose();
  });

  it('relu epilogue: max(0, A·B + bias + β·C_old), every version; dense passes it through', async () => {
    for (const version of ALL_VERSIONS) {
      await checkMatmul(17, 33, 7, { version, relu: true, withBias: true });
      await checkMatmul(5, 12, 16, { version, relu: true, transA: true, transB: true });
    }
    const rng = new Rng(12);
    const [M, N, K] = [6, 9, 10];
    const a = rng.array(M * K), b = rng.array(K * N), bias = rng.array(N), old = rng.array(M * N);
    for (const version of ALL_VERSIONS) {
      const ta = Tensor.from(gpu, a, [M, K]), tb = Tensor.from(gpu, b, [K, N]), tbias = Tensor.from(gpu, bias), out = Tensor.from(gpu, old, [M, N]);
      matmul(ta, tb, { bias: tbias, out, beta: -0.5, relu: true, version });
      const want = matmulRef(a, b, M, N, K, { bias, out: old, beta: -0.5, relu: true });
      expect(want.some((v) => v === 0) && want.some((v) => v > 0)).toBe(true);
      expectClose(`${version} relu beta=-0.5`, await out.read(), want, RTOL, ATOL);
      const y = dense(ta, tb.reshape([N, K]), tbias, { version, relu: true });
      expectClose(`${version} dense relu`, await y.read(), denseRef(a, b, bias, M, K, N, true), RTOL, ATOL);
      for (const t of [ta, tb, tbias, out, y]) t.dispose();
    }
  });

  it('batched 3-D operands (shared 2-D B, and per-item B)', async () => {
    const rng = new Rng(21);
    const [Bt, M, N, K] = [3, 7, 17, 9];
    const a = rng.array(Bt * M * K), b2 = rng.array(N * K), b3 = rng.array(Bt * K * N);
    const ta = Tensor.from(gpu, a, [Bt, M, K]), tb2 = Tensor.from(gpu, b2, [N, K]), tb3 = Tensor.from(gpu, b3, [Bt, K, N]);
    for (const version of ['v2', 'v3'] as const) {
      const shared = await matmul(ta, tb2, { transB: true, version }).read();
      const each = await matmul(ta, tb3, { version }).read();
      for (let i = 0; i < Bt; i++) {
        const ai = a.subarray(i * M * K, (i + 1) * M * K);
        expectClose(`${version} batch ${i} shared B`, shared.subarray(i * M * N, (i + 1) * M * N), matmulRef(ai, b2, M, N, K, { transB: true }), RTOL, ATOL);
        expectClose(`${version} batch ${i} own B`, each.subarray(i * M * N, (i + 1) * M * N), matmulRef(ai, b3.subarray(i * K * N, (i + 1) * K * N), M, N, K), RTOL, ATOL);
      }
    }
    for (const t of [ta, tb2, tb3]) t.dispose();
  });
});

describe('matmul v3 (workgroup-shared-memory tiles)', () => {
  // Odd shapes (partial blocks in M, N and K; scalar loads) and 4-aligned ones (vec4 loads); M picks
  // the default tile (≤ 16 rows: the 16×128 block, else 64×64).
  it.each([
    [3, 5, 9, false], [17, 33, 7, true], [65, 129, 33, true], [32, 36, 64, false],
  ])('M=%i N=%i K=%i (bias %s), all transposes, default tile', async (M, N, K, withBias) => {
    for (const [transA, transB] of TRANS) await checkMatmul(M, N, K, { transA, transB, version: 'v3', withBias });
  });

  it('every V3_TILES config (partial blocks everywhere; nn with scalar loads, tt with vec4 loads)', async () => {
    for (const tile of V3_TILES) {
      await checkMatmul(37, 131, 19, { version: 'v3', tile, withBias: true });
      await checkMatmul(132, 20, 36, { version: 'v3', tile, transA: true, transB: true });
    }
  });

  it('tiles are checked: the version\'s own kind, multiples of 4, adapter limits', () => {
    const [a, b] = [Tensor.zeros(gpu, [4, 4]), Tensor.zeros(gpu, [4, 4])];
    expect(() => matmul(a, b, { version: 'v3', tile: V2_TILE })).toThrow(/v3 needs a V3Tile/);
    expect(() => matmul(a, b, { version: 'v2', tile: V3_TILES[0] })).toThrow(/v2 needs a Tile/);
    expect(() => matmul(a, b, { version: 'v3', tile: { TM: 6, TN: 4, WM: 4, WN: 4, KB: 4 } })).toThrow(/multiples of 4/);
    expect(() => matmul(a, b, { version: 'v3', tile: { TM: 4, TN: 4, WM: 64, WN: 64, KB: 4 } })).toThrow(/invocations/);
    a.dispose(); b.dispose();
  });
});

describe('dense', () => {
  it.each([[1, 3, 1], [2, 7, 5], [3, 17, 33], [17, 33, 7], [8, 64, 12]])('N=%i C=%i K=%i forward + backward (every version)', async (N, C, K) => {
    const rng = new Rng(N * 100 + C * 10 + K);
    const x = rng.array(N * C), W = rng.array(K * C), b = rng.array(K), dy = rng.array(N * K);
    const tx = Tensor.from(gpu, x, [N, C]), tW = Tensor.from(gpu, W, [K, C]), tb = Tensor.from(gpu, b), tdy = Tensor.from(gpu, dy, [N, K]);
    const ref = denseBackwardRef(x, W, dy, N, C, K);
    for (const version of ALL_VERSIONS) {
      const y = dense(tx, tW, tb, { version });
      expect([...y.shape]).toEqual([N, K]);
      expectClose(`dense ${version} fwd`, await y.read(), denseRef(x, W, b, N, C, K), RTOL, ATOL);
      const g = denseBackward(tx, tW, tdy, { version });
      expect([...g.dX!.shape]).toEqual([N, C]);
      expect([...g.dW!.shape]).toEqual([K, C]);
      expect([...g.db!.shape]).toEqual([K]);
      const [dX, dW, db] = [await g.dX!.read(), await g.dW!.read(), await g.db!.read()];
      expectClose(`dense ${version} dX`, dX, ref.dX, RTOL, ATOL);
      expectClose(`dense ${version} dW`, dW, ref.dW, RTOL, ATOL);
      expectClose(`dense ${version} db`, db, ref.db, RTOL, ATOL);
      if (version === 'v2') {
        // The GPU gradients are the derivatives of the forward (L = Σ y·dY).
        gradcheck(`dense dX N=${N} C=${C} K=${K}`, (v) => denseRef(v, W, b, N, C, K), x, dy, dX);
        gradcheck(`dense dW N=${N} C=${C} K=${K}`, (v) => denseRef(x, v, b, N, C, K), W, dy, dW);
        gradcheck(`dense db N=${N} C=${C} K=${K}`, (v) => denseRef(x, W, v, N, C, K), b, dy, db);
      }
      for (const t of [y, g.dX, g.dW, g.db]) t?.dispose();
    }
    for (const t of [tx, tW, tb, tdy]) t.dispose();
  });

  it('backward flags skip work (frozen layer: no weight-gradient dispatch)', async () => {
    const [N, C, K] = [4, 9, 6];
    const rng = new Rng(3);
    const tx = Tensor.from(gpu, rng.array(N * C), [N, C]), tW = Tensor.from(gpu, rng.array(K * C), [K, C]);
    const tdy = Tensor.from(gpu, rng.array(N * K), [N, K]);
    const count = (f: () => unknown) => {
      const mm0 = gpu.dispatchesByName.get('matmul.v2') ?? 0, all0 = gpu.dispatchCount;
      f();
      return { matmul: (gpu.dispatchesByName.get('matmul.v2') ?? 0) - mm0, all: gpu.dispatchCount - all0 };
    };
    let g = {} as ReturnType<typeof denseBackward>;
    expect(count(() => { g = denseBackward(tx, tW, tdy, { needDX: false, needDW: false, needDB: false }); })).toEqual({ matmul: 0, all: 0 });
    expect(g).toEqual({});
    expect(count(() => { g = denseBackward(tx, tW, tdy, { needDX: true, needDW: false, needDB: false }); })).toEqual({ matmul: 1, all: 1 });
    expect(Object.keys(g)).toEqual(['dX']);
    expect(count(() => { g = denseBackward(tx, tW, tdy, { needDX: false, needDW: false, needDB: true }); })).toEqual({ matmul: 0, all: 1 });
    expect(Object.keys(g)).toEqual(['db']);
    expect(count(() => { g = denseBackward(tx, tW, tdy); })).toEqual({ matmul: 2, all: 3 });
    await gpu.sync();
  });
});

describe('tensors above the binding limit', () => {
  // W [1024, 33000] is 135 MB > 128 MiB: a VGG16-classifier-like weight in one buffer, bound in windows.
  const [N, C, K] = [2, 33000, 1024];
  it('dense forward, dX (split-K accumulate), dW (split rows), db; A and single rows above the limit', async () => {
    expect(K * C * 4).toBeGreaterThan(gpu.maxBinding);
    const rng = new Rng(99);
    const W = rng.array(K * C), x = rng.array(N * C), b = rng.array(K), dy = rng.array(N * K);
    const tW = Tensor.from(gpu, W, [K, C]), tx = Tensor.from(gpu, x, [N, C]), tb = Tensor.from(gpu, b), tdy = Tensor.from(gpu, dy, [N, K]);
    // Sums over 33000 terms of size ~1/3 (outputs ~√33000/3 ≈ 60): the float32 rounding error is
    // ~1e-3 absolute, so the absolute floor is scaled to the typical output.
    const [rtol, atol] = [1e-4, 30];

    // Each product must have been split into more than one dispatch (the windowed path ran).
    const parts = <T>(f: () => T): [T, number] => {
      const n0 = gpu.dispatchesByName.get('matmul.v2') ?? 0;
      const r = f();
      return [r, (gpu.dispatchesByName.get('matmul.v2') ?? 0) - n0];
    };
    const [y, nFwd] = parts(() => dense(tx, tW, tb));
    expect(nFwd).toBeGreaterThan(1);
    expectClose('big dense fwd (W split by rows)', await y.read(), denseRef(x, W, b, N, C, K), rtol, atol);

    const [g, nBwd] = parts(() => denseBackward(tx, tW, tdy));
    expect(nBwd).toBeGreaterThan(3); // dX split over K, dW split over its rows
    expectClose('big dense dX (split-K)', await g.dX!.read(), matmulRef(dy, W, N, C, K), rtol, atol);
    // ReLU with split-K: only the last K part may apply it (max(0, ·) of a partial sum is wrong).
    const reluRef = matmulRef(dy, W, N, C, K, { relu: true });
    for (const version of ['v2', 'v3'] as const) {
      const r = matmul(tdy, tW, { relu: true, version });
      expectClose(`big relu(dY·W) (split-K) ${version}`, await r.read(), reluRef, rtol, atol);
      r.dispose();
    }
    // v3 through the same windows (the launcher's splitting is version-independent).
    const y3 = dense(tx, tW, tb, { version: 'v3' });
    expectClose('big dense fwd v3', await y3.read(), denseRef(x, W, b, N, C, K), rtol, atol);
    y3.dispose();
    // dW is 135 MB: check whole rows at a few places, including both ends and a window boundary.
    for (const k of [0, 1, 511, 992, 1023]) {
      const got = new Float32Array(await gpu.read(g.dW!.buffer, k * C * 4, C * 4));
      const want = new Float64Array(C);
      for (let c = 0; c < C; c++) want[c] = dy[k]! * x[c]! + dy[K + k]! * x[C + c]!;
      expectClose(`big dense dW row ${k}`, got, want, rtol, 0.05);
    }
    const dbWant = Float64Array.from({ length: K }, (_, k) => dy[k]! + dy[K + k]!);
    expectClose('big dense db', await g.db!.read(), dbWant, rtol, 0.05);
    for (const t of [y, g.dX, g.dW, g.db, tx, tb, tdy]) t?.dispose();

    // A above the limit (rows of W as the left operand): split over M.
    const S = 5, s = rng.array(S * C);
    const ts = Tensor.from(gpu, s, [S, C]);
    const z = matmul(tW, ts, { transB: true });
    expectClose('big A (split M)', await z.read(), matmulRef(W, s, K, S, C, { transB: true }), rtol, atol);
    // One row above the limit: [1, K·C]·[K·C, 1], split along the row (K). The right operand is zero
    // except at a few places spread over the K parts (so the float32 sum is exact enough to compare).
    const L = K * C, picks = [0, 1, 2 ** 24 - 1, 2 ** 24, 2 ** 25 - 1, 2 ** 25, 30_000_001, L - 1];
    const sparse = new Float32Array(L);
    let want = 0;
    picks.forEach((i, j) => { sparse[i] = j + 1; want += (j + 1) * W[i]!; });
    const tsp = Tensor.from(gpu, sparse, [L, 1]);
    const flat = matmul(tW.reshape([1, L]), tsp);
    expectClose('single row above the limit', await flat.read(), [want], 1e-5, 1e-3);
    tsp.dispose();
    for (const t of [ts, z, flat, tW]) t.dispose();
  });
});
