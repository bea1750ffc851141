import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Tensor, grid1d, type Gpu } from '../../src/gpu/index.js';
import {
  concat, concatBackward, inversePerm, pad, padBackward, resolveSlice, shapeTesting, slice, sliceBackward, sliceShape,
  transpose, transposeBackward, type SliceSpec,
} from '../../src/kernels/shape.js';
import {
  concatBackwardRef, concatRef, padBackwardRef, padRef, sliceBackwardRef, sliceRef, transposeBackwardRef, transposeRef,
} from '../../src/kernels/reference/shape.js';
import { device, expectClose, gradcheck, Rng } from '../helpers.js';

let gpu: Gpu;
beforeAll(async () => { gpu = await device(); });
afterEach(() => { shapeTesting.maxBindingBytes = 0; });

const numel = (s: readonly number[]) => s.reduce((p, q) => p * q, 1);
const moves = () => gpu.dispatchesByName.get('move.v1') ?? 0;

/** Data movement is exact: every output is one input value (or the pad value). */
async function exact(what: string, t: Tensor, want: { y: ArrayLike<number>; shape?: readonly number[] } | ArrayLike<number>) {
  const ref = 'y' in want ? want : { y: want };
  if (ref.shape) expect([...t.shape]).toEqual([...ref.shape]);
  expectClose(what, await t.read(), ref.y, 0);
}

/**
 * Every op here is linear, so its backward must be its adjoint: ⟨f(x), dY⟩ = ⟨x, f*(dY)⟩. The
 * finite-difference check does that numerically on a sample of coordinates (exact up to rounding).
 */
function adjoint(what: string, f: (v: Float64Array) => ArrayLike<number>, x: ArrayLike<number>, dy: ArrayLike<number>, dx: ArrayLike<number>) {
  gradcheck(what, f, x, dy, dx, { samples: 24 });
}

function randomShape(rng: Rng, rank: number): number[] {
  const sizes = [1, 2, 3, 5, 7];
  return Array.from({ length: rank }, () => sizes[rng.int(sizes.length)]!);
}

// ---- transpose -------------------------------------------------------------------------------

describe('transpose', () => {
  const rng = new Rng(101);
  const cases: [number[], number[]][] = [
    [[2, 3, 5, 7], [0, 2, 3, 1]], // NCHW -> NHWC
    [[2, 5, 7, 3], [0, 3, 1, 2]], // NHWC -> NCHW
    [[17, 33], [1, 0]],
    [[7], [0]],
    [[3, 1, 5], [2, 1, 0]],
    [[2, 3, 5, 7], [3, 2, 1, 0]],
  ];
  for (let rank = 1; rank <= 6; rank++) {
    for (let i = 0; i < 2; i++) cases.push([randomShape(rng, rank), rng.shuffle([...Array(rank).keys()])]);
  }
  it.each(cases)('x %j perm %j', async (xs, perm) => {
    const r = new Rng(numel(xs) + perm[0]!);
    const x = r.array(numel(xs));
    const tx = Tensor.from(gpu, x, xs);
    const ref = transposeRef(x, xs, perm);
    const ty = transpose(tx, perm);
    await exact(`transpose ${xs} ${perm}`, ty, ref);
    const dy = r.array(ref.y.length);
    const dX = transposeBackward(Tensor.from(gpu, dy, ref.shape), perm);
    expect([...dX.shape]).toEqual(xs);
    const dx = await dX.read();
    await exact(`transpose bwd ${xs} ${perm}`, dX, transposeBackwardRef(dy, xs, perm));
    adjoint(`transpose ${xs} ${perm}`, (v) => transposeRef(v, xs, perm).y, x, dy, dx);
  });

  it('defaults to reversed axes; rejects bad perms', async () => {
    const x = new Rng(3).array(30);
    const tx = Tensor.from(gpu, x, [2, 3, 5]);
    await exact('transpose default', transpose(tx), transposeRef(x, [2, 3, 5], [2, 1, 0]));
    expect(inversePerm([0, 2, 3, 1])).toEqual([0, 3, 1, 2]);
    expect(() => transpose(tx, [0, 0, 1])).toThrow(/permutation/);
    expect(() => transpose(tx, [0, 1])).toThrow(/permutation/);
  });
});

// ---- concat ----------------------------------------------------------------------------------

describe('concat', () => {
  const cases: [string, number[][], number][] = [
    ['3 inputs, axis 1 (channels)', [[2, 3, 5, 7], [2, 1, 5, 7], [2, 4, 5, 7]], 1],
    ['3 inputs, axis 0 (buffer copies)', [[1, 3, 5], [3, 3, 5], [2, 3, 5]], 0],
    ['axis 3', [[2, 3, 5, 7], [2, 3, 5, 1], [2, 3, 5, 2]], 3],
    ['axis -1 (rank 2)', [[17, 3], [17, 5]], -1],
    ['rank 1', [[7], [1], [33]], 0],
    ['an empty input', [[2, 0, 3], [2, 5, 3]], 1],
    ['rank 6, axis 4', [[2, 1, 3, 1, 2, 3], [2, 1, 3, 1, 5, 3]], 4],
  ];
  it.each(cases)('%s', async (_, shapes, axis) => {
    const rng = new Rng(shapes.length * 13 + axis + 7);
    const xs = shapes.map((s) => rng.array(numel(s)));
    const ax = axis < 0 ? axis + shapes[0]!.length : axis;
    const ref = concatRef(xs.map((x, i) => ({ x, shape: shapes[i]! })), ax);
    const ty = concat(xs.map((x, i) => Tensor.from(gpu, x, shapes[i]!)), axis);
    await exact(`concat ${shapes} axis ${axis}`, ty, ref);
    const dy = rng.array(ref.y.length);
    const dXs = concatBackward(Tensor.from(gpu, dy, ref.shape), shapes, axis);
    const want = concatBackwardRef(dy, shapes, ax);
    for (let i = 0; i < shapes.length; i++) {
      expect([...dXs[i]!.shape]).toEqual(shapes[i]);
      await exact(`concat bwd ${i}`, dXs[i]!, want[i]!);
    }
    // Adjoint w.r.t. the first input (the others held fixed).
    const f = (v: Float64Array) => concatRef([{ x: v, shape: shapes[0]! }, ...xs.slice(1).map((x, i) => ({ x, shape: shapes[i + 1]! }))], ax).y;
    if (xs[0]!.length) adjoint(`concat ${shapes} axis ${axis}`, f, xs[0]!, dy, await dXs[0]!.read());
  });

  it('axis 0 is plain buffer copies (no shader dispatch)', async () => {
    const before = moves();
    concat([Tensor.from(gpu, [1, 2, 3], [1, 3]), Tensor.from(gpu, [4, 5, 6], [1, 3])], 0);
    expect(moves() - before).toBe(0);
  });

  it('channels of large planes: one buffer copy per (input, sample) run, and its backward likewise', async () => {
    const shapes = [[3, 2, 33, 33], [3, 5, 33, 33], [3, 1, 33, 33]]; // runs of C_j·1089 ≥ 1024 elements
    const rng = new Rng(42);
    const xs = shapes.map((s) => rng.array(numel(s)));
    const before = moves();
    const ref = concatRef(xs.map((x, i) => ({ x, shape: shapes[i]! })), 1);
    await exact('concat copies', concat(xs.map((x, i) => Tensor.from(gpu, x, shapes[i]!)), 1), ref);
    const dy = rng.array(ref.y.length);
    const dXs = concatBackward(Tensor.from(gpu, dy, ref.shape), shapes, 1);
    const want = concatBackwardRef(dy, shapes, 1);
    for (let i = 0; i < 3; i++) await exact(`concat copies bwd ${i}`, dXs[i]!, want[i]!);
    expect(moves() - before).toBe(0);
  });

  it('rejects mismatched shapes', () => {
    expect(() => concat([Tensor.from(gpu, [1, 2], [1, 2]), Tensor.from(gpu, [1, 2, 3], [1, 3])], 0)).toThrow(/differ/);
    expect(() => concat([Tensor.from(gpu, [1, 2], [1, 2])], 2)).toThrow(/out of range/);
  });
});

// ---- pad -------------------------------------------------------------------------------------

describe('pad', () => {
  const cases: [string, number[], number[], number][] = [
    ['NCHW symmetric 1', [2, 3, 5, 7], [0, 0, 1, 1, 0, 0, 1, 1], 0],
    ['NCHW asymmetric, value 1.5', [1, 2, 7, 5], [0, 0, 0, 2, 0, 0, 3, 1], 1.5],
    ['negative pads (crop)', [2, 3, 7, 7], [0, 0, -1, -2, 0, 0, -3, -1], 0],
    ['mixed pad and crop', [2, 3, 7, 5], [0, -1, 2, -1, 1, 0, -3, 2], -2],
    ['crop to nothing on an axis', [2, 3, 5], [0, 0, -2, 0, 0, -3], 0],
    ['pad of a region wholly outside (all fill)', [1, 3, 2], [0, -3, 2, 0, 2, -2], 7],
    ['rank 1', [17], [3, 5], 0],
    ['rank 5, batch and channel pads', [2, 3, 1, 5, 3], [1, 0, 1, 2, 0, 0, 2, 0, 1, 1], 0.25],
    ['rank 6', [2, 1, 3, 2, 1, 3], [0, 1, 0, 1, 2, 0, 1, 0, 0, 0, 1, 1], 0],
  ];
  it.each(cases)('%s: x %j pads %j', async (_, xs, pads, value) => {
    const rng = new Rng(numel(xs) + pads[2]! * 3 + 11);
    const x = rng.array(numel(xs));
    const ref = padRef(x, xs, pads, value);
    const ty = pad(Tensor.from(gpu, x, xs), pads, value);
    await exact(`pad ${xs} ${pads}`, ty, ref);
    const dy = rng.array(ref.y.length);
    const dX = padBackward(Tensor.from(gpu, dy, ref.shape), xs, pads);
    expect([...dX.shape]).toEqual(xs);
    const dx = await dX.read();
    await exact(`pad bwd ${xs} ${pads}`, dX, padBackwardRef(dy, xs, pads));
    adjoint(`pad ${xs} ${pads}`, (v) => padRef(v, xs, pads, 0).y, x, dy, dx);
  });

  it('rejects bad pads', () => {
    const t = Tensor.from(gpu, [1, 2, 3, 4], [2, 2]);
    expect(() => pad(t, [1, 1])).toThrow(/expected 4/);
    expect(() => pad(t, [0, -2, 0, -1])).toThrow(/below zero/);
  });
});

// ---- slice -----------------------------------------------------------------------------------

describe('slice', () => {
  // [name, x shape, spec] with resolved bounds.
  const cases: [string, number[], SliceSpec][] = [
    ['step 2 on H and W', [2, 3, 7, 9], { starts: [1, 0], ends: [7, 9], axes: [2, 3], steps: [2, 2] }],
    ['channel range', [2, 7, 5, 5], { starts: [2], ends: [5], axes: [1] }],
    ['leading rows (buffer copy)', [7, 5], { starts: [2], ends: [6] }],
    ['negative step (reverse W)', [2, 3, 5], { starts: [4], ends: [-1], axes: [2], steps: [-1] }],
    ['negative step 3, partial', [17, 4], { starts: [15, 3], ends: [1, 0], steps: [-3, -2] }],
    ['all axes, mixed steps', [5, 7, 3], { starts: [1, 6, 0], ends: [5, 0, 3], steps: [3, -2, 1] }],
    ['empty result', [3, 5], { starts: [2], ends: [2], axes: [1] }],
    ['negative axis', [2, 3, 9], { starts: [1], ends: [9], axes: [-1], steps: [4] }],
    ['rank 6', [2, 3, 2, 5, 2, 3], { starts: [1, 0, 2], ends: [3, 2, 0], axes: [1, 3, 5], steps: [1, 3, -1] }],
  ];
  it.each(cases)('%s: x %j', async (_, xs, spec) => {
    const rng = new Rng(numel(xs) + spec.starts[0]! + 5);
    const x = rng.array(numel(xs));
    const ref = sliceRef(x, xs, spec);
    expect(sliceShape(xs, spec)).toEqual(ref.shape);
    const ty = slice(Tensor.from(gpu, x, xs), spec);
    await exact(`slice ${xs}`, ty, ref);
    const dy = rng.array(ref.y.length);
    const dX = sliceBackward(Tensor.from(gpu, dy, ref.shape), xs, spec);
    expect([...dX.shape]).toEqual(xs);
    const dx = await dX.read();
    await exact(`slice bwd ${xs}`, dX, sliceBackwardRef(dy, xs, spec));
    if (dy.length) adjoint(`slice ${xs}`, (v) => sliceRef(v, xs, spec).y, x, dy, dx);
  });

  it('resolveSlice follows ONNX (negative indices, clamping); the launcher rejects unresolved bounds', async () => {
    // [dim, start, end, step] -> [start, end]
    const rs: [number, number, number, number, number, number][] = [
      [10, -3, 10, 1, 7, 10], [10, 0, -1, 1, 0, 9], [10, -100, 100, 1, 0, 10], [10, 2, 2 ** 62, 2, 2, 10],
      [10, -1, -100, -1, 9, -1], [10, 100, 0, -2, 9, 0], [10, -2, -5, -1, 8, 5], [0, 0, -1, -1, -1, -1],
    ];
    for (const [dim, s, e, st, ws, we] of rs) {
      expect(resolveSlice(dim, s, e, st)).toEqual({ start: ws, end: we, step: st });
    }
    // x[-3:] along W, resolved by the caller, matches the reference with resolved bounds.
    const xs = [2, 3, 7];
    const x = new Rng(8).array(numel(xs));
    const r = resolveSlice(7, -3, 2 ** 62);
    const spec = { starts: [r.start], ends: [r.end], axes: [2] };
    await exact('slice x[..., -3:]', slice(Tensor.from(gpu, x, xs), spec), sliceRef(x, xs, spec));
    const tx = Tensor.from(gpu, x, xs);
    expect(() => slice(tx, { starts: [-3], ends: [7], axes: [2] })).toThrow(/not resolved/);
    expect(() => slice(tx, { starts: [0], ends: [8], axes: [2] })).toThrow(/not resolved/);
    expect(() => slice(tx, { starts: [0], ends: [7], axes: [2], steps: [0] })).toThrow(/step/);
    expect(() => resolveSlice(7, 0, 7, 0)).toThrow(/step/);
  });
});

// ---- large tensors and the binding limit -----------------------------------------------------

describe('large tensors', () => {
  it('pad of a tensor above 65535·256 elements (2-D dispatch grid)', async () => {
    // y = [1, 1, 4101, 4101] = 16.8M elements > 65535·256 = 16,776,960: grid1d spreads over y.
    const xs = [1, 1, 4099, 4099];
    const pads = [0, 0, 1, 1, 0, 0, 1, 1];
    const ys = [1, 1, 4101, 4101];
    expect(numel(ys)).toBeGreaterThan(65535 * 256);
    expect(grid1d(numel(ys), 256)[1]).toBeGreaterThan(1);
    // x[i] = i mod 65521 + 1, a value that is exact in f32 and never 0 (the pad value).
    const x = Float32Array.from({ length: numel(xs) }, (_, i) => (i % 65521) + 1);
    const y = await pad(Tensor.from(gpu, x, xs), pads).read();
    expect(y.length).toBe(numel(ys));
    let bad = -1;
    for (let h = 0; h < 4101 && bad < 0; h++) {
      for (let w = 0; w < 4101; w++) {
        const inside = h >= 1 && h <= 4099 && w >= 1 && w <= 4099;
        const want = inside ? x[(h - 1) * 4099 + (w - 1)]! : 0;
        if (y[h * 4101 + w] !== want) { bad = h * 4101 + w; break; }
      }
    }
    expect(bad).toBe(-1);
  });

  it('every op gives the same result when the copy is split to fit a 4 KiB binding', async () => {
    shapeTesting.maxBindingBytes = 4096; // 1024 floats: the tensors below need several windows
    const rng = new Rng(55);
    const xs = [3, 5, 17, 9]; // 2295 elements
    const x = rng.array(numel(xs));
    const tx = Tensor.from(gpu, x, xs);
    let before = moves();
    await exact('windowed transpose', transpose(tx, [0, 2, 3, 1]), transposeRef(x, xs, [0, 2, 3, 1]));
    expect(moves() - before).toBeGreaterThan(2);
    await exact('windowed 2-D transpose', transpose(tx.reshape([15, 153]), [1, 0]), transposeRef(x, [15, 153], [1, 0]));
    const pads = [0, 1, -2, 3, 1, 0, 2, -1];
    before = moves();
    await exact('windowed pad', pad(tx, pads, 0.5), padRef(x, xs, pads, 0.5));
    expect(moves() - before).toBeGreaterThan(2);
    const dyp = rng.array(numel(padRef(x, xs, pads).shape));
    await exact('windowed pad bwd', padBackward(Tensor.from(gpu, dyp, padRef(x, xs, pads).shape), xs, pads), padBackwardRef(dyp, xs, pads));
    const spec: SliceSpec = { starts: [1, 16, 1], ends: [5, 0, 9], axes: [1, 2, 3], steps: [1, -2, 2] };
    const sref = sliceRef(x, xs, spec);
    await exact('windowed slice', slice(tx, spec), sref);
    const dys = rng.array(sref.y.length);
    await exact('windowed slice bwd', sliceBackward(Tensor.from(gpu, dys, sref.shape), xs, spec), sliceBackwardRef(dys, xs, spec));
    const x2 = rng.array(3 * 2 * 17 * 9);
    const cref = concatRef([{ x, shape: xs }, { x: x2, shape: [3, 2, 17, 9] }], 1);
    await exact('windowed concat', concat([tx, Tensor.from(gpu, x2, [3, 2, 17, 9])], 1), cref);
  });
});
