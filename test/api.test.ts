// The README's library example, run against the package entry point (src/index.ts).
import { expect, it } from 'vitest';
import { getGpu, Tensor, kernels, reference } from '../src/index.js';

it('README example: conv2d + relu through the public API matches the reference', async () => {
  const gpu = await getGpu();
  const xs = Float32Array.from({ length: 2 * 3 * 32 * 32 }, (_, i) => Math.sin(i * 0.37));
  const x = Tensor.from(gpu, xs, [2, 3, 32, 32]);
  const w = Tensor.from(gpu, new Float32Array(8 * 3 * 3 * 3).fill(0.01), [8, 3, 3, 3]);
  const y = kernels.relu(kernels.conv2d(x, w, undefined, { padding: 1 }));
  expect(y.shape).toEqual([2, 8, 32, 32]);
  const want = reference.reluRef(reference.conv2dRef(xs, [2, 3, 32, 32], new Float32Array(8 * 27).fill(0.01), [8, 3, 3, 3], null, { padding: 1 }).y);
  const got = await y.read();
  let worst = 0;
  for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
  expect(worst).toBeLessThan(1e-5);
  [x, w, y].forEach((t) => t.dispose());
});
