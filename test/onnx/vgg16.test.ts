// A VGG16 in torchvision's export form (553 MB, 13 Conv + 3 Gemm, the 392 MiB classifier.0.weight):
// built from the project's own vgg16() with random weights, exported, re-imported, run at 224×224 —
// identical to the module it came from, on an adapter that binds 128 MiB. The import's time and peak
// RSS are measured in a fresh process.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { getGpu, Tensor } from '../../src/gpu/index.js';
import * as ops from '../../src/autograd/ops.js';
import { noGrad, releaseTape } from '../../src/autograd/variable.js';
import { vgg16 } from '../../src/nn/models/vgg16.js';
import { exportOnnx } from '../../src/onnx/export.js';
import { decodeModel } from '../../src/onnx/reader.js';
import { importModel } from '../../src/onnx/import.js';
import { Rng } from '../helpers.js';

it('VGG16 (553 MB) exports, re-imports and runs at 224×224 identically; 392 MiB weight above the 128 MiB binding', async () => {
  const gpu = await getGpu();
  const dir = mkdtempSync(join(tmpdir(), 'wgtrain-vgg-'));
  const file = join(dir, 'vgg16.onnx');
  const net = vgg16(gpu, { rng: new Rng(3) });
  const bytes = await exportOnnx(gpu, net, { sampleShape: [3, 224, 224] });
  writeFileSync(file, bytes);
  const size = statSync(file).size;
  expect(size).toBeGreaterThan(553_000_000);
  const x = Tensor.from(gpu, new Rng(4).array(3 * 224 * 224, 0, 1), [1, 3, 224, 224]);
  net.eval();
  const want = await noGrad(() => net.call(ops.constant(x))).read();
  releaseTape();
  net.dispose();
  const m = importModel(gpu, decodeModel(bytes));
  expect(m.family).toBe('vgg16');
  const w0 = m.namedParameters().find(([n]) => n === 'classifier.0.weight')![1];
  expect(w0.size * 4).toBeGreaterThan(gpu.maxBinding);
  const got = await noGrad(() => m.call(ops.constant(x))).read();
  releaseTape();
  expect(Array.from(got)).toEqual(Array.from(want));
  m.dispose(); x.dispose();
  // Import in a fresh process: time and peak RSS (on the software adapter GPU memory is process memory too).
  execFileSync('node', ['scripts/build.mjs']);
  const out = execFileSync('node', ['--input-type=module', '-e', `
    import { readFileSync } from 'node:fs';
    import { getGpu, onnx } from './dist/index.js';
    const gpu = await getGpu();
    const base = process.resourceUsage().maxRSS * 1024;
    const t0 = performance.now();
    const m = onnx.importModel(gpu, await onnx.readModel(${JSON.stringify(file)}));
    await gpu.sync();
    const ms = performance.now() - t0;
    console.log(JSON.stringify({ ms, baseRss: base, peakRss: process.resourceUsage().maxRSS * 1024, params: m.numParameters() }));
    process.exit(0);
  `], { encoding: 'utf8' });
  const r = JSON.parse(out.trim().split('\n').at(-1)!);
  const mb = (b: number) => (b / 2 ** 20).toFixed(0);
  console.log(`VGG16 import: ${(r.ms / 1000).toFixed(1)} s, peak RSS ${mb(r.peakRss)} MiB (${mb(r.peakRss - r.baseRss)} MiB above the process at start) for a ${mb(size)} MiB file = ${((r.peakRss - r.baseRss) / size).toFixed(2)}× the file`);
  expect(r.params).toBe(138_357_544);
  rmSync(dir, { recursive: true });
}, 600_000);
