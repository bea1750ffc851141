import { beforeAll, describe, expect, it } from 'vitest';
import { Tensor, type Gpu } from '../../src/gpu/index.js';
import { binary, binaryBackward, fill, relu, reluBackward, leakyRelu, scale, type BinaryOp } from '../../src/kernels/elementwise.js';
import { sumAll, sumTo } from '../../src/kernels/reduce.js';
import { binaryRef, leakyReluRef, reluBackwardRef, reluRef, sumToRef } from '../../src/kernels/reference.js';
import { device, expectClose, gradcheck, Rng } from '../helpers.js';

let gpu: Gpu;
beforeAll(async () => { gpu = await device(); });

describe('relu', () => {
  it.each([[1], [7], [33 * 17], [3 * 5 * 7 * 11]])('forward + backward, n=%i', async (n) => {
    const rng = new Rng(n);
    const x = rng.array(n);
    x[0] = 0; // the kink: gradient must be 0 there
    const dy = rng.array(n);
    const tx = Tensor.from(gpu, x), tdy = Tensor.from(gpu, dy);
    expectClose(`relu fwd n=${n}`, await relu(tx).read(), reluRef(x), 0);
    const dx = await reluBackward(tx, tdy).read();
    expectClose(`relu bwd n=${n}`, dx, reluBackwardRef(x, dy), 0);
    expect(Math.abs(dx[0]!)).toBe(0);
    // Away from the kink, the backward is the derivative of the forward.
    const xs = Float64Array.from(x, (v) => (Math.abs(v) < 1e-2 ? 0.5 : v));
    gradcheck(`relu n=${n}`, reluRef, xs, dy, reluBackwardRef(xs, dy));
    const txs = Tensor.from(gpu, xs);
    gradcheck(`relu gpu n=${n}`, reluRef, xs, dy, await reluBackward(txs, tdy).read());
  });

  it('leaky relu forward + backward', async () => {
    const rng = new Rng(3);
    const x = Float32Array.from(rng.array(257), (v) => (Math.abs(v) < 1e-2 ? 0.3 : v)), dy = rng.array(257);
    const tx = Tensor.from(gpu, x);
    expectClose('leakyRelu fwd', await leakyRelu(tx, 0.1).read(), leakyReluRef(x, 0.1), 1e-6);
    const dx = await reluBackward(tx, Tensor.from(gpu, dy), 0.1).read();
    gradcheck('leakyRelu', (v) => leakyReluRef(v, 0.1), x, dy, dx);
  });
});

describe('broadcasting binary ops', () => {
  const cases: [BinaryOp, number[], number[]][] = [
    ['add', [3, 7, 5, 5], [3, 7, 5, 5]],
    ['add', [2, 7, 3, 5], [1, 7, 1, 1]],
    ['add', [2, 7, 3, 5], [7, 1, 1]],
    ['sub', [17, 33], [33]],
    ['mul', [2, 3, 4, 5], [2, 1, 4, 1]],
    ['div', [1, 5, 3], [5, 1]],
    ['mul', [3, 1, 5], [1, 4, 1]],
  ];
  it.each(cases)('%s %j with %j', async (op, as, bs) => {
    const rng = new Rng(as.length * 31 + bs.length);
    const na = as.reduce((p, q) => p * q, 1), nb = bs.reduce((p, q) => p * q, 1);
    const a = rng.array(na), b = Float32Array.from(rng.array(nb), (v) => (op === 'div' ? Math.sign(v || 1) * (0.5 + Math.abs(v)) : v));
    const ta = Tensor.from(gpu, a, as), tb = Tensor.from(gpu, b, bs);
    const ref = binaryRef(op, a, as, b, bs);
    const y = binary(op, ta, tb);
    expect([...y.shape]).toEqual(ref.shape);
    expectClose(`${op} fwd`, await y.read(), ref.y, 1e-6);
    const dy = rng.array(ref.y.length);
    const [dA, dB] = binaryBackward(op, ta, tb, Tensor.from(gpu, dy, ref.shape));
    expect([...dA.shape]).toEqual(as);
    expect([...dB.shape]).toEqual(bs);
    gradcheck(`${op} dA`, (v) => binaryRef(op, v, as, b, bs).y, a, dy, await dA.read());
    gradcheck(`${op} dB`, (v) => binaryRef(op, a, as, v, bs).y, b, dy, await dB.read());
  });
});

describe('reductions', () => {
  it.each([
    [[2, 7, 3, 5], [1, 7, 1, 1]],
    [[2, 7, 3, 5], [7, 1, 1]],
    [[17, 33], [1, 33]],
    [[17, 33], [17, 1]],
    [[3, 1, 5], [1]],
  ])('sumTo %j -> %j', async (xs, ts) => {
    const rng = new Rng(5);
    const x = rng.array(xs.reduce((p, q) => p * q, 1));
    const y = sumTo(Tensor.from(gpu, x, xs), ts);
    expectClose('sumTo', await y.read(), sumToRef(x, xs, ts), 1e-4);
  });

  it.each([[1], [1000], [1025], [1024 * 1024 + 3]])('sumAll n=%i', async (n) => {
    const x = new Rng(n).array(n, 0, 1);
    let ref = 0;
    for (const v of x) ref += v;
    expectClose(`sumAll n=${n}`, await sumAll(Tensor.from(gpu, x)).read(), [ref], 1e-5);
  });

  it('scale', async () => {
    const x = new Rng(1).array(100);
    expectClose('scale', await scale(Tensor.from(gpu, x), -2.5).read(), Float64Array.from(x, (v) => -2.5 * v), 1e-7);
  });
});

describe('versions (v1 scalar, v2 vec4 + scalar tail)', () => {
  // Sizes: all tail (1, 3), one vec4 + tail (7), odd (561, 15015), a multiple of 4 (4096).
  it.each([[1], [3], [7], [33 * 17], [3 * 5 * 7 * 11 * 13], [4096]])('agree with the references and each other, n=%i', async (n) => {
    const rng = new Rng(n + 7);
    const x = rng.array(n), b = Float32Array.from(rng.array(n), (v) => Math.sign(v || 1) * (0.5 + Math.abs(v))), dy = rng.array(n);
    x[0] = 0;
    const tx = Tensor.from(gpu, x), tb = Tensor.from(gpu, b), tdy = Tensor.from(gpu, dy);
    const ops: [string, (version: 1 | 2) => Tensor, ArrayLike<number>][] = [
      ['relu', (version) => relu(tx, { version }), reluRef(x)],
      ['leakyRelu', (version) => leakyRelu(tx, 0.1, { version }), leakyReluRef(x, 0.1)],
      ['scale', (version) => scale(tx, -2.5, undefined, { version }), Float64Array.from(x, (v) => -2.5 * v)],
      ['fill', (version) => fill(Tensor.from(gpu, x), 3.25, { version }), new Float64Array(n).fill(3.25)],
      ['reluBackward', (version) => reluBackward(tx, tdy, 0, { version }), reluBackwardRef(x, dy)],
      ['leakyReluBackward', (version) => reluBackward(tx, tdy, 0.1, { version }), reluBackwardRef(x, dy, 0.1)],
      ...(['add', 'sub', 'mul', 'div'] as const).map((op): [string, (version: 1 | 2) => Tensor, ArrayLike<number>] =>
        [op, (version) => binary(op, tx, tb, { version }), binaryRef(op, x, [n], b, [n]).y]),
    ];
    for (const [name, f, ref] of ops) {
      const [v1, v2] = [await f(1).read(), await f(2).read()];
      expectClose(`${name} v2 n=${n}`, v2, ref, 1e-6);
      expect(v2, name).toEqual(v1);
    }
  });
});
