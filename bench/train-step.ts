// Milliseconds per training step (forward + backward + Adam) of ResNet34 and VGG16, eager vs captured
// and replayed, with the base frozen vs everything trainable, and the dispatches each step launches.
//
//   npx esbuild bench/train-step.ts --bundle --platform=node --format=esm --packages=external \
//     --outfile=node_modules/.bench/train-step.mjs && node node_modules/.bench/train-step.mjs \
//     [--model resnet34|vgg16|both] [--size 64] [--batch 4] [--steps 5]
//
// Timing: wall time of `steps` steps after 2 warm-up steps (pipeline compiles, pool fill); each step
// ends with a read of its loss, as training does.

import { getGpu, Tensor, type Gpu } from '../src/gpu/index.js';
import * as ops from '../src/autograd/ops.js';
import { backward } from '../src/autograd/variable.js';
import { CapturedStep } from '../src/autograd/capture.js';
import { labelsTensor } from '../src/kernels/softmax.js';
import { freeze, groupParameters, unfreeze } from '../src/nn/groups.js';
import { resnet34 } from '../src/nn/models/resnet34.js';
import { vgg16 } from '../src/nn/models/vgg16.js';
import type { Module } from '../src/nn/module.js';
import type { Grouped } from '../src/nn/groups.js';
import { Optimizer } from '../src/optim/optimizer.js';
import { Rng } from '../src/util/rng.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1]! : dflt; };
const size = Number(opt('--size', '64')), batch = Number(opt('--batch', '4')), steps = Number(opt('--steps', '5'));
const which = opt('--model', 'both');
const CLASSES = 5;

async function measure(gpu: Gpu, name: string, make: () => Module & Grouped, frozen: boolean, mode: 'eager' | 'replay') {
  const net = make();
  if (frozen) freeze(net); else unfreeze(net);
  const optim = new Optimizer('adam', groupParameters(net).map((params, i) => ({ name: `g${i}`, params, lr: 1e-4 })));
  const rng = new Rng(1);
  const x = Tensor.from(gpu, rng.array(batch * 3 * size * size, -1, 1), [batch, 3, size, size]);
  const labels = labelsTensor(gpu, Uint32Array.from({ length: batch }, (_, i) => i % CLASSES), CLASSES);
  const step = () => {
    const { loss, correct } = ops.crossEntropy(net.call(ops.constant(x)), labels);
    backward(loss);
    optim.step(); optim.zeroGrad();
    return { loss: loss.data, correct };
  };
  let cap: CapturedStep<{ loss: Tensor; correct: Tensor }> | null = null;
  let dispatches = 0;
  const one = async (count: boolean) => {
    if (count) gpu.dispatchesByName.clear();
    let out;
    if (mode === 'eager') out = step();
    else if (!cap) { cap = CapturedStep.capture(gpu, step); out = cap.outputs; }
    else out = cap.replay();
    await out.loss.read();
    if (count) dispatches = [...gpu.dispatchesByName.values()].reduce((a, b) => a + b, 0);
    if (mode === 'eager') { out.loss.dispose(); out.correct.dispose(); }
  };
  await one(false); await one(true);
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) await one(false);
  const ms = (performance.now() - t0) / steps;
  const peak = gpu.pool.stats.peak;
  (cap as CapturedStep<{ loss: Tensor; correct: Tensor }> | null)?.dispose();
  optim.dispose(); net.dispose(); x.dispose(); labels.dispose();
  console.log(`${name.padEnd(9)} ${String(size).padStart(3)}px b${batch}  ${(frozen ? 'frozen base' : 'unfrozen').padEnd(11)}  ${mode.padEnd(6)}  ${ms.toFixed(0).padStart(7)} ms/step  ${String(dispatches).padStart(5)} dispatches  pool peak ${(peak / 2 ** 20).toFixed(0)} MiB`);
  return ms;
}

async function main() {
  const gpu = await getGpu();
  console.log(`adapter: ${gpu.adapterName}`);
  const models: [string, () => Module & Grouped][] = [];
  if (which !== 'vgg16') models.push(['resnet34', () => resnet34(gpu, { numClasses: CLASSES })]);
  if (which !== 'resnet34') models.push(['vgg16', () => vgg16(gpu, { numClasses: CLASSES })]);
  for (const [name, make] of models) {
    for (const frozen of [true, false]) {
      const e = await measure(gpu, name, make, frozen, 'eager');
      const r = await measure(gpu, name, make, frozen, 'replay');
      console.log(`  → replay/eager time ratio ${(r / e).toFixed(2)}`);
    }
  }
  gpu.destroy();
}

main().catch((e) => { console.error(e); process.exit(1); });
