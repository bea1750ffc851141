// Pretrains the demo model (src/nn/models/demo.ts) from scratch with wgtrain itself, on Fashion-MNIST
// classes 0–4 (T-shirt/top, Trouser, Pullover, Dress, Coat), and exports it with wgtrain's exporter to
// weights/fashion5-source-cnn.onnx (classes + preprocessing in metadata_props), with its training log.
//
//   npm run demo:pretrain -- [--per-class 1500] [--epochs 4] [--batch 64] [--seed 1] [--lr 3e-3]
//
// Inputs: 28×28 grayscale replicated to RGB, normalised with the source set's mean/std; augmentation:
// horizontal flip and a random shift of up to 2 pixels (zero fill), seeded per (epoch, image).
// Deterministic for a given seed on a given adapter (the software adapter is exact).

import { writeFileSync, renameSync, mkdirSync } from 'node:fs';
import { getGpu } from '../src/gpu/index.js';
import { DemoCnn } from '../src/nn/models/demo.js';
import { Learner, type Batch, type BatchSource } from '../src/train/learner.js';
import { exportOnnx } from '../src/onnx/export.js';
import { Rng } from '../src/util/rng.js';
import { loadSourceTask } from './fashion/source.mjs';
import { VERSION } from '../src/version.js';

const args = process.argv.slice(2);
const opt = (name: string, d: number) => { const i = args.indexOf(name); return i >= 0 ? Number(args[i + 1]) : d; };
const perClass = opt('--per-class', 1500), epochs = opt('--epochs', 4), batch = opt('--batch', 64), seed = opt('--seed', 1), lr = opt('--lr', 3e-3);
const OUT = 'weights/fashion5-source-cnn.onnx', LOG = 'weights/fashion5-source-cnn.log';
const S = 28;

const lines: string[] = [];
const log = (s: string) => { lines.push(s); process.stderr.write(`${s}\n`); };

function pick(labels: Uint32Array, k: number, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < labels.length && out.length < n; i++) if (labels[i] === k) out.push(i);
  return out;
}

function source(pixels: Uint8Array, labels: Uint32Array, idx: number[], mean: number, std: number, train: boolean): BatchSource {
  return {
    length: Math.ceil(idx.length / batch),
    async *batches(epoch: number): AsyncIterable<Batch> {
      const order = [...idx];
      if (train) new Rng(seed * 1000 + epoch).shuffle(order);
      for (let s = 0; s < order.length; s += batch) {
        const b = order.slice(s, s + batch);
        if (train && b.length < batch) break; // drop_last: fixed shapes for the captured step
        const x = new Float32Array(b.length * 3 * S * S);
        b.forEach((j, n) => {
          const r = new Rng((seed * 7919 + epoch) * 100003 + j);
          const flip = train && r.next() < 0.5;
          const dy = train ? r.int(5) - 2 : 0, dx = train ? r.int(5) - 2 : 0;
          for (let y = 0; y < S; y++) for (let xx = 0; xx < S; xx++) {
            const sy = y - dy, sx0 = xx - dx, sx = flip ? S - 1 - sx0 : sx0;
            const v = sy >= 0 && sy < S && sx >= 0 && sx < S ? pixels[j * S * S + sy * S + sx]! / 255 : 0;
            const z = (v - mean) / std;
            for (let c = 0; c < 3; c++) x[((n * 3 + c) * S + y) * S + xx] = z;
          }
        });
        yield { x, shape: [b.length, 3, S, S], labels: Uint32Array.from(b, (j) => labels[j]!) };
      }
    },
  };
}

async function main() {
  const t0 = performance.now();
  const task = loadSourceTask();
  const K = task.classes.length;
  const trainIdx = Array.from({ length: K }, (_, k) => pick(task.train.labels, k, perClass)).flat().sort((a, b) => a - b);
  const testIdx = Array.from({ length: K }, (_, k) => pick(task.test.labels, k, 200)).flat();
  // Normalisation statistics of the training images used.
  let sum = 0, sq = 0;
  for (const j of trainIdx) for (let i = 0; i < S * S; i++) { const v = task.train.pixels[j * S * S + i]! / 255; sum += v; sq += v * v; }
  const n = trainIdx.length * S * S, mean = sum / n, std = Math.sqrt(sq / n - mean * mean);
  const gpu = await getGpu();
  log(`wgtrain ${VERSION} demo pretraining on ${gpu.adapterName}`);
  log(`source task: Fashion-MNIST classes ${task.classes.join(', ')}; ${trainIdx.length} training images (${perClass}/class), ${testIdx.length} test images; mean ${mean.toFixed(4)} std ${std.toFixed(4)}`);
  log(`recipe: DemoCnn from scratch, AdamW (wd 0.01, β 0.9/0.99), one-cycle lr ${lr}, ${epochs} epochs, batch ${batch}, seed ${seed}, flip + ±2px shift`);
  const model = new DemoCnn(gpu, K, { rng: new Rng(seed) });
  const train = source(task.train.pixels, task.train.labels, trainIdx, mean, std, true);
  const test = source(task.test.pixels, task.test.labels, testIdx, mean, std, false);
  const learner = new Learner(gpu, model, {
    numClasses: K,
    onEpochEnd: (r) => log(`epoch ${r.epoch}/${r.epochs}: train loss ${r.trainLoss.toFixed(4)} acc ${(100 * r.trainAcc).toFixed(1)}%  test loss ${r.valLoss!.toFixed(4)} acc ${(100 * r.valAcc!).toFixed(1)}%  (${(r.ms / 1000).toFixed(0)} s, ${r.imgPerSec.toFixed(0)} img/s)`),
  });
  await learner.fit(epochs, train, test, { lr, stage: 'pretrain' });
  const preprocessing = { size: S, channelOrder: 'RGB', mean: [mean, mean, mean], std: [std, std, std], resizeRatio: 1 };
  const bytes = await exportOnnx(gpu, model, {
    sampleShape: [3, S, S], graphName: 'fashion5-source-cnn',
    metadata: {
      'wgtrain.classes': JSON.stringify(task.classes),
      'wgtrain.preprocessing': JSON.stringify(preprocessing),
      'wgtrain.recipe': `npm run demo:pretrain -- --per-class ${perClass} --epochs ${epochs} --batch ${batch} --seed ${seed} --lr ${lr}`,
      'wgtrain.source': 'Fashion-MNIST (MIT, Zalando SE) classes 0-4, training split',
      // 28-pixel images lose their object to small crops: fine-tune with crops of ≥ 80% of the area.
      'wgtrain.augment': JSON.stringify({ scale: [0.8, 1] }),
    },
  });
  mkdirSync('weights', { recursive: true });
  writeFileSync(`${OUT}.tmp`, bytes); renameSync(`${OUT}.tmp`, OUT);
  log(`wrote ${OUT} (${(bytes.length / 1024).toFixed(0)} KiB) in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  writeFileSync(`${LOG}.tmp`, `${lines.join('\n')}\n`); renameSync(`${LOG}.tmp`, LOG);
  learner.dispose(); model.dispose(); gpu.destroy();
}

main().catch((e) => { console.error(e); process.exit(1); });
