// The transfer-learning experiment on the demo task (README "The experiment"): the same seed, the same
// 10-epoch budget, five ways to get a 5-class Fashion-MNIST classifier (classes 5–9) from 1,430 images:
//
//   (a) from scratch   the demo architecture, random init, every layer trained, uniform LR
//   (b) features       frozen pretrained base run once, cached features, new head trained
//   (c) fine-tune      fastai staged fine-tune: head 2 epochs, then all layers 8 epochs, discriminative LRs
//   (d) (c) + progressive resizing 28 → 56 (refused for the demo model: its Flatten → dense layer fixes the
//       input at 28×28; reported as such)
//   (e) (c) without augmentation
//
// Each is scored on the stratified 20% validation split and on the official Fashion-MNIST TEST images
// of the 5 classes (5,000 unseen images). Writes docs/experiment.md and docs/img/scratch-vs-finetune.png.
//
//   npm run demo:experiment          (≈ 15 minutes on 2 CPU cores with the software adapter)

import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { getGpu } from '../src/gpu/index.js';
import { DemoCnn } from '../src/nn/models/demo.js';
import { exportOnnx } from '../src/onnx/export.js';
import { lineChart, sideBySide } from '../src/train/plots.js';
import type { EpochRecord } from '../src/train/learner.js';
import { Rng } from '../src/util/rng.js';

const OUT = 'wgtrain-out/experiment';
const TEST = 'wgtrain-out/fashion5-test';
const bin = 'dist/wgtrain.js';

function cli(args: string[]): Record<string, unknown> {
  process.stderr.write(`$ wgtrain ${args.join(' ')}\n`);
  const r = spawnSync('node', [bin, ...args, '--json'], { encoding: 'utf8', maxBuffer: 1 << 26 });
  process.stderr.write(r.stderr.split('\n').filter((l) => !l.startsWith('Warning:')).join('\n'));
  if (r.status !== 0) return { error: r.stderr.split('\n').find((l) => l.startsWith('wgtrain:')) ?? `exit ${r.status}` };
  return JSON.parse(r.stdout);
}

async function main() {
  mkdirSync(OUT, { recursive: true });
  if (!existsSync(TEST)) execFileSync('node', ['scripts/fashion/make-demo.mjs', '--no-demo', '--test-out', TEST], { stdio: 'inherit' });
  // (a) needs the same architecture untrained: export a randomly initialised DemoCnn with the demo's
  // preprocessing (read from the pretrained file's metadata).
  const scratch = join(OUT, 'scratch-init.onnx');
  const meta = JSON.parse(execFileSync('node', [bin, 'inspect', 'weights/fashion5-source-cnn.onnx', '--json'], { encoding: 'utf8' })).metadata as Record<string, string>;
  const gpu = await getGpu();
  const net = new DemoCnn(gpu, 5, { rng: new Rng(42) });
  writeFileSync(scratch, await exportOnnx(gpu, net, { sampleShape: [3, 28, 28], metadata: { 'wgtrain.preprocessing': meta['wgtrain.preprocessing']!, 'wgtrain.augment': meta['wgtrain.augment']! } }));
  net.dispose(); gpu.destroy();

  const runs: [string, string, string[]][] = [
    ['a', 'from scratch (same architecture, random init, all layers, 10 epochs, LR 1e-2)', ['--model', scratch, '--freeze-epochs', '0', '--epochs', '10', '--lr', '1e-2:1e-2']],
    ['b', 'feature extraction (frozen base, cached features, new head, 10 epochs)', ['--mode', 'features', '--freeze-epochs', '2', '--epochs', '8']],
    ['c', 'staged fine-tuning, discriminative LRs (head 2 + all 8 epochs)', ['--freeze-epochs', '2', '--epochs', '8', '--lr', '1e-2']],
    ['d', '(c) + progressive resizing 28 → 56', ['--freeze-epochs', '2', '--epochs', '8', '--lr', '1e-2', '--size', '28,56']],
    ['e', '(c) without augmentation', ['--freeze-epochs', '2', '--epochs', '8', '--lr', '1e-2', '--no-augment']],
  ];
  const rows: string[] = [];
  const histories: Record<string, EpochRecord[]> = {};
  for (const [id, what, args] of runs) {
    const out = join(OUT, id);
    const t0 = performance.now();
    const s = cli(['finetune', '--data', 'examples/fashion5', '--out', out, '--seed', '42', ...args]) as { valAccuracy: number; history: EpochRecord[]; error?: string };
    const secs = (performance.now() - t0) / 1000;
    if (s.error) { rows.push(`| (${id}) ${what} | n/a | n/a — ${s.error.replace(/^wgtrain: /, '')} | |`); continue; }
    const ev = cli(['evaluate', '--model', join(out, 'model.onnx'), '--data', TEST]) as { accuracy: number; n: number };
    histories[id] = s.history;
    rows.push(`| (${id}) ${what} | ${(100 * s.valAccuracy).toFixed(1)}% | ${(100 * ev.accuracy).toFixed(1)}% (n = ${ev.n}) | ${secs.toFixed(0)} s |`);
    process.stderr.write(`${rows.at(-1)}\n`);
  }
  const curve = (id: string, key: 'valAcc' | 'trainLoss' | 'valLoss', name: string, dashed = false) => ({ name, dashed, points: histories[id]!.map((h, i): [number, number] => [i + 1, h[key] ?? NaN]) });
  const svg = sideBySide([
    lineChart({ title: 'Validation accuracy: scratch vs fine-tune', xLabel: 'epoch', yLabel: 'accuracy', series: [curve('a', 'valAcc', '(a) from scratch', true), curve('c', 'valAcc', '(c) staged fine-tune')] }),
    lineChart({ title: 'Loss: scratch vs fine-tune', xLabel: 'epoch', yLabel: 'cross-entropy', series: [curve('a', 'trainLoss', '(a) train', true), curve('a', 'valLoss', '(a) validation', true), curve('c', 'trainLoss', '(c) train'), curve('c', 'valLoss', '(c) validation')] }),
  ]);
  mkdirSync('docs/img', { recursive: true });
  writeFileSync('docs/img/scratch-vs-finetune.png', await sharp(Buffer.from(svg)).png().toBuffer());
  const adapter = JSON.parse(execFileSync('node', [bin, 'info', '--json'], { encoding: 'utf8' })).adapter as string;
  const md = [
    '# The demo experiment',
    '',
    `Measured ${new Date().toISOString().slice(0, 10)} on ${adapter}, seed 42, by \`npm run demo:experiment\`.`,
    'Validation: the stratified 20% split of examples/fashion5 (285 images). Test: the official Fashion-MNIST test images of the 5 classes.',
    '',
    '| method | validation accuracy | test accuracy (unseen) | wall time |',
    '|---|---|---|---|',
    ...rows,
    '',
    '![scratch vs fine-tune](img/scratch-vs-finetune.png)',
    '',
  ].join('\n');
  writeFileSync('docs/experiment.md', md);
  process.stdout.write(`${md}\n`);
}

main().catch((e) => { console.error(e); process.exit(1); });
