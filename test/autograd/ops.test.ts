// Autograd wiring of the imported-graph ops: for each, the gradient that backward() accumulates into
// a leaf equals finite differences of the float64 reference forward (and the forward matches it).

import { beforeAll, describe, it } from 'vitest';
import { Tensor, type Gpu } from '../../src/gpu/index.js';
import { backward, Variable } from '../../src/autograd/variable.js';
import * as ops from '../../src/autograd/ops.js';
import * as ref from '../../src/kernels/reference.js';
import { device, expectClose, gradcheck, Rng } from '../helpers.js';

let gpu: Gpu;
beforeAll(async () => { gpu = await device(); });

const xShape = [2, 3, 4, 5];
const n = 2 * 3 * 4 * 5;

type Case = [string, (x: Variable) => Variable, (x: Float64Array) => Float64Array];
const cases: Case[] = [
  ['sigmoid', (x) => ops.sigmoid(x), (x) => ref.sigmoidRef(x)],
  ['tanh', (x) => ops.tanh(x), (x) => ref.tanhRef(x)],
  ['clip', (x) => ops.clip(x, -0.4, 0.5), (x) => ref.clipRef(x, -0.4, 0.5)],
  ['transpose', (x) => ops.transpose(x, [0, 2, 3, 1]), (x) => ref.transposeRef(x, xShape, [0, 2, 3, 1]).y],
  ['pad (grow and crop)', (x) => ops.pad(x, [0, 1, -1, 2, 0, 0, 1, -2]), (x) => ref.padRef(x, xShape, [0, 1, -1, 2, 0, 0, 1, -2]).y],
  ['slice', (x) => ops.slice(x, { starts: [1, 0], ends: [3, 5], axes: [1, 3], steps: [1, 2] }), (x) => ref.sliceRef(x, xShape, { starts: [1, 0], ends: [3, 5], axes: [1, 3], steps: [1, 2] }).y],
  ['concat (x, 2x) on channels', (x) => ops.concat([x, ops.scale(x, 2)], 1), (x) => ref.concatRef([{ x, shape: xShape }, { x: x.map((v) => 2 * v), shape: xShape }], 1).y],
  ['lrn', (x) => ops.lrn(x, { size: 3, alpha: 0.1, beta: 0.75, bias: 1 }), (x) => ref.lrnRef(x, xShape, { size: 3, alpha: 0.1, beta: 0.75, bias: 1 }).y],
];

describe('autograd ops vs float64 reference', () => {
  for (const [name, op, f] of cases) {
    it(name, async () => {
      const rng = new Rng(name.length);
      const xv = rng.array(n, -1, 1);
      const x = new Variable(Tensor.from(gpu, xv, xShape), true);
      const y = op(x);
      const want = f(Float64Array.from(xv));
      expectClose(`${name} forward`, await y.read(), want, 1e-5, 1e-6);
      const dY = rng.array(y.size, -1, 1);
      backward(y, { grad: Tensor.from(gpu, dY, y.shape) });
      gradcheck(`${name} dX`, f, xv, dY, await x.grad!.read(), { eps: 1e-6, rtol: 1e-4, atol: 1e-6 });
      x.dispose();
    });
  }
});
