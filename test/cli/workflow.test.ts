// The fine-tuning workflow through the real CLI (built dist/wgtrain.js, as users run it): finetune
// on the demo data writes every output; --resume continues an interrupted run to the same plan;
// feature mode caches features and reuses them; lr-find, predict, evaluate, inspect; and bad input
// is a one-line error with exit code 1.

import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, readdirSync, copyFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { hasOnnxData, onnxDataDir } from '../../src/onnx/testdata.js';
import { getGpu } from '../../src/gpu/index.js';
import { exportOnnx } from '../../src/onnx/export.js';
import { SmallNet } from '../nn/smallnet.js';
import { Conv2d, Flatten, Linear, ReLU, Sequential } from '../../src/nn/layers.js';
import { Rng } from '../../src/util/rng.js';
import { decodeModel } from '../../src/onnx/reader.js';
import { decodeSafetensors, checkpointMeta, loadCheckpoint } from '../../src/train/checkpoint.js';
import { readModel } from '../../src/onnx/reader.js';
import { importModel } from '../../src/onnx/import.js';
import { Learner } from '../../src/train/learner.js';
import { SharpDecoder } from '../../src/data/node.js';
import { transformImage } from '../../src/data/transforms.js';
import type { Preprocessing } from '../../src/data/preprocessing.js';

/** Class probabilities for one image computed in-process by a Learner holding the checkpoint. */
async function learnerProbs(ckpt: string, img: string): Promise<Record<string, number>> {
  const gpu = await getGpu();
  const bytes = new Uint8Array(readFileSync(ckpt));
  const meta = checkpointMeta(bytes);
  const m = importModel(gpu, await readModel(meta.model.source));
  m.cutAt('before-last-gemm', meta.classes.length);
  loadCheckpoint(gpu, bytes, m, null);
  const learner = new Learner(gpu, m, { numClasses: meta.classes.length, replay: false });
  const p = meta.preprocessing as Preprocessing;
  const x = transformImage(await new SharpDecoder().decode(new Uint8Array(readFileSync(img))), p, { kind: 'eval' });
  const probs = await learner.predict(x, [1, 3, p.size, p.size]);
  learner.dispose(); m.dispose();
  return Object.fromEntries(meta.classes.map((c, i) => [c, probs[i]!]));
}

const bin = 'dist/wgtrain.js';
const demoData = 'examples/fashion5';
let tmp: string;
let small: string;

beforeAll(() => {
  execFileSync('node', ['scripts/build.mjs']);
  tmp = mkdtempSync(join(tmpdir(), 'wgtrain-cli-'));
  // A small copy of the demo data (40 images per class) keeps these tests quick.
  small = join(tmp, 'data');
  for (const c of readdirSync(demoData, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name)) {
    mkdirSync(join(small, c), { recursive: true });
    for (const f of readdirSync(join(demoData, c)).sort().slice(0, 40)) copyFileSync(join(demoData, c, f), join(small, c, f));
  }
});

function run(...args: string[]) {
  const r = spawnSync('node', [bin, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
const oneLine = (err: string) => err.split('\n').filter((l) => l.startsWith('wgtrain:'));

describe('finetune', () => {
  it('fine-tunes the demo model on a data folder and writes model, checkpoint, history, curves, split, report', async () => {
    const out = join(tmp, 'run1');
    const r = run('finetune', '--data', small, '--out', out, '--epochs', '2', '--freeze-epochs', '1', '--lr', '1e-2', '--json');
    expect(r.code, r.err).toBe(0);
    const s = JSON.parse(r.out);
    expect(s.classes).toEqual(['5_sandal', '6_shirt', '7_sneaker', '8_bag', '9_ankle_boot']);
    expect(s.history.map((h: { stage: string }) => h.stage)).toEqual(['head', 'unfrozen', 'unfrozen']);
    expect(s.valAccuracy).toBeGreaterThan(0.4);                 // 5 classes: chance is 0.2
    for (const f of ['model.onnx', 'checkpoint.safetensors', 'history.json', 'history.csv', 'loss.svg', 'loss.png', 'accuracy.svg', 'accuracy.png', 'confusion.svg', 'confusion.png', 'split.json', 'metrics.json']) expect(existsSync(join(out, f)), f).toBe(true);
    // Discriminative LRs are visible in the history: three groups, geometric, head highest.
    const hist = JSON.parse(readFileSync(join(out, 'history.json'), 'utf8')) as { stage: string; lrs: number[] }[];
    const lrs = hist.find((h) => h.stage === 'unfrozen')!.lrs;
    expect(lrs).toHaveLength(3);
    expect(lrs[2]! / lrs[0]!).toBeCloseTo(100, 6);
    expect(readFileSync(join(out, 'history.csv'), 'utf8').split('\n')[0]).toMatch(/^stage,epoch,epochs,train_loss,train_acc,val_loss,val_acc,lr_group0,lr_group1,lr_group2/);
    expect(readFileSync(join(out, 'loss.png')).subarray(1, 4).toString()).toBe('PNG');
    const split = JSON.parse(readFileSync(join(out, 'split.json'), 'utf8'));
    expect(split.val).toHaveLength(40);                          // 8 per class
    const report = JSON.parse(readFileSync(join(out, 'metrics.json'), 'utf8'));
    expect(report.confusion.flat().reduce((a: number, b: number) => a + b, 0)).toBe(40);
    expect(report.perClass[0]).toHaveProperty('f1');
    // predict with the fine-tuned model: probabilities over the 5 classes.
    const img = join(small, '7_sneaker', readdirSync(join(small, '7_sneaker'))[0]!);
    const p = run('predict', '--model', join(out, 'model.onnx'), img, '--top', '5', '--json');
    expect(p.code, p.err).toBe(0);
    const preds = JSON.parse(p.out)[0].predictions as { class: string; probability: number }[];
    expect(preds).toHaveLength(5);
    expect(preds.reduce((a, b) => a + b.probability, 0)).toBeCloseTo(1, 4);
    // The same probabilities from the checkpoint (rebuilt from the base model) and inside a Learner.
    const pc = run('predict', '--model', join(out, 'checkpoint.safetensors'), img, '--top', '5', '--json');
    expect(pc.code, pc.err).toBe(0);
    const byClass = (ps: { class: string; probability: number }[]) => Object.fromEntries(ps.map((q) => [q.class, q.probability]));
    const fromCkpt = byClass(JSON.parse(pc.out)[0].predictions);
    for (const q of preds) expect(Math.abs(fromCkpt[q.class]! - q.probability)).toBeLessThan(1e-6);
    const inLearner = await learnerProbs(join(out, 'checkpoint.safetensors'), img);
    for (const q of preds) expect(Math.abs(inLearner[q.class]! - q.probability)).toBeLessThan(1e-6);
    // evaluate on the data folder: consistent with the report's numbers on the same images.
    const e = run('evaluate', '--model', join(out, 'model.onnx'), '--data', small, '--json');
    expect(e.code, e.err).toBe(0);
    expect(JSON.parse(e.out).n).toBe(200);
  }, 300_000);

  it('an interrupted run (Ctrl-C) resumes from its checkpoint and ends with the weights of an uninterrupted run', async () => {
    const out = join(tmp, 'run2');
    // Interrupt (SIGINT, like Ctrl-C) as soon as the first checkpoint exists.
    const child = spawn('node', [bin, 'finetune', '--data', small, '--out', out, '--epochs', '2', '--freeze-epochs', '1', '--lr', '1e-2'], { stdio: 'ignore' });
    const code = await new Promise<number | null>((res) => {
      const timer = setInterval(() => { if (existsSync(join(out, 'checkpoint.safetensors'))) { child.kill('SIGINT'); clearInterval(timer); } }, 50);
      child.on('exit', (c) => { clearInterval(timer); res(c); });
    });
    expect(code).toBe(130);
    const before = JSON.parse(readFileSync(join(out, 'history.json'), 'utf8')) as unknown[];
    expect(before.length).toBeLessThan(3);
    const r = run('finetune', '--resume', out, '--json');
    expect(r.code, r.err).toBe(0);
    const s = JSON.parse(r.out);
    expect(s.history.map((h: { stage: string; epoch: number }) => `${h.stage}${h.epoch}`)).toEqual(['head1', 'unfrozen1', 'unfrozen2']);
    // Same weights as the uninterrupted run1 (same data, seed and plan).
    const w = (f: string) => decodeModel(new Uint8Array(readFileSync(f))).graph.initializers;
    const a = w(join(tmp, 'run1', 'model.onnx')), b = w(join(out, 'model.onnx'));
    expect([...b.keys()]).toEqual([...a.keys()]);
    for (const [n, t] of a) expect(Array.from(b.get(n)!.data as Float32Array), n).toEqual(Array.from(t.data as Float32Array));
    const again = run('finetune', '--resume', out);
    expect(again.code).toBe(1);
    expect(oneLine(again.err)[0]).toMatch(/already finished/);
  }, 300_000);

  it('a resume may change --batch: the schedule continues by fraction of training', async () => {
    const out = join(tmp, 'run2b');
    const child = spawn('node', [bin, 'finetune', '--data', small, '--out', out, '--epochs', '2', '--freeze-epochs', '1', '--lr', '1e-2', '--batch', '8'], { stdio: 'ignore' });
    await new Promise<void>((res) => {
      const timer = setInterval(() => { if (existsSync(join(out, 'checkpoint.safetensors'))) { child.kill('SIGINT'); clearInterval(timer); } }, 50);
      child.on('exit', () => { clearInterval(timer); res(); });
    });
    const r = run('finetune', '--resume', out, '--batch', '16', '--json');
    expect(r.code, r.err).toBe(0);
    const s = JSON.parse(r.out);
    expect(s.history.map((h: { stage: string; epoch: number }) => `${h.stage}${h.epoch}`)).toEqual(['head1', 'unfrozen1', 'unfrozen2']);
    // The last epoch is the end of the one-cycle schedule whatever the batch: far below the peak 5e-3,
    // with the discriminative ratio between groups kept.
    const lrs = s.history.at(-1).lrs as number[];
    expect(lrs.at(-1)!).toBeLessThan(5e-3 / 20);
    expect(lrs.at(-1)! / lrs[0]!).toBeCloseTo(100, 6);
  }, 300_000);

  it('a kill (SIGKILL) at any moment never leaves a corrupt checkpoint under the final name', async () => {
    const out = join(tmp, 'kill');
    const delays = [2500, 3500, 4500, 5500, 6500];
    let seen = 0;
    for (const d of delays) {
      const child = spawn('node', [bin, 'finetune', '--data', small, '--out', out, '--epochs', '3', '--freeze-epochs', '1', '--batch', '8'], { stdio: 'ignore' });
      await new Promise((res) => setTimeout(res, d));
      child.kill('SIGKILL');
      await new Promise((res) => child.on('exit', res));
      const f = join(out, 'checkpoint.safetensors');
      if (existsSync(f)) {
        seen++;
        const { tensors, meta } = decodeSafetensors(new Uint8Array(readFileSync(f)));   // throws if torn
        expect(tensors.size).toBeGreaterThan(0);
        expect(JSON.parse(meta.wgtrain!).format).toBe(1);
      }
    }
    console.log(`kill test: ${seen} of ${delays.length} kills found a checkpoint, all intact`);
    expect(seen).toBeGreaterThan(0);
  }, 300_000);

  it('feature mode: extracts once, caches by key, the second run hits the cache; a new split invalidates it', () => {
    const out = join(tmp, 'run3');
    const a = run('finetune', '--data', small, '--out', out, '--mode', 'features', '--epochs', '2', '--json');
    expect(a.code, a.err).toBe(0);
    const sa = JSON.parse(a.out);
    expect(sa.featureCache.hit).toBe(false);
    expect(sa.featureCache.extractMs).toBeGreaterThan(sa.featureCache.headEpochMs);
    const b = run('finetune', '--data', small, '--out', out, '--mode', 'features', '--epochs', '2', '--json');
    const sb = JSON.parse(b.out);
    expect(sb.featureCache.hit).toBe(true);
    expect(sb.featureCache.key).toBe(sa.featureCache.key);
    expect(sb.valAccuracy).toBe(sa.valAccuracy);                // same features, same seed
    const c = run('finetune', '--data', small, '--out', out, '--mode', 'features', '--epochs', '1', '--val-split', '0.25', '--json');
    expect(c.code, c.err).toBe(0);
    expect(JSON.parse(c.out).featureCache.key).not.toBe(sa.featureCache.key);
    expect(readdirSync(join(out, 'feature-cache'))).toHaveLength(1);
  }, 300_000);

  it('--batch auto plans a larger batch for the frozen stage than for the unfrozen one', () => {
    const out = join(tmp, 'run4');
    const r = run('finetune', '--data', small, '--out', out, '--epochs', '1', '--freeze-epochs', '1', '--batch', 'auto', '--memory-budget', '64', '--json');
    expect(r.code, r.err).toBe(0);
    const plan = JSON.parse(r.out).batchPlan;
    console.log(`batch auto (64 MiB): frozen ${plan.head.batch} (${plan.head.perImageBytes} B/img), unfrozen ${plan.unfrozen.batch} (${plan.unfrozen.perImageBytes} B/img)`);
    expect(plan.head.perImageBytes).toBeLessThan(plan.unfrozen.perImageBytes);
    expect(plan.head.batch).toBeGreaterThanOrEqual(plan.unfrozen.batch);
  }, 300_000);
});

describe('progressive resizing', () => {
  it('--size 16,24 splits the epochs across sizes with the same weights (a global-pool model)', async () => {
    const gpu = await getGpu();
    const net = new SmallNet(gpu, 4, { seed: 1 });
    const prep = { size: 16, channelOrder: 'RGB', mean: [0.3, 0.3, 0.3], std: [0.35, 0.35, 0.35], resizeRatio: 1 };
    const file = join(tmp, 'gap.onnx');
    writeFileSync(file, await exportOnnx(gpu, net, { sampleShape: [3, 16, 16], metadata: { 'wgtrain.preprocessing': JSON.stringify(prep) } }));
    net.dispose();
    const out = join(tmp, 'prog');
    const r = run('finetune', '--model', file, '--data', small, '--out', out, '--size', '16,24', '--epochs', '2', '--freeze-epochs', '1', '--json');
    expect(r.code, r.err).toBe(0);
    const s = JSON.parse(r.out);
    expect(s.history.map((h: { stage: string; inputSize: number }) => `${h.stage}@${h.inputSize}`)).toEqual(['head@16', 'unfrozen@16', 'unfrozen@24']);
    const meta = JSON.parse(run('inspect', join(out, 'model.onnx'), '--json').out).metadata;
    expect(JSON.parse(meta['wgtrain.preprocessing']).size).toBe(24);
  }, 300_000);
});

describe('lr-find and inspect', () => {
  it('lr-find prints four suggestions and writes the plot', () => {
    const out = join(tmp, 'lrf');
    const r = run('lr-find', '--data', small, '--out', out, '--iterations', '30', '--json');
    expect(r.code, r.err).toBe(0);
    const s = JSON.parse(r.out).suggestions;
    for (const k of ['valley', 'slide', 'minimum', 'steep']) expect(s[k]).toBeGreaterThan(0);
    expect(readFileSync(join(out, 'lr-find.svg'), 'utf8')).toMatch(/<svg/);
  }, 300_000);

  it('inspect describes the demo model and a torch-exported ResNet34', () => {
    const r = run('inspect', 'weights/fashion5-source-cnn.onnx', '--json');
    expect(r.code, r.err).toBe(0);
    const i = JSON.parse(r.out);
    expect(i.producer).toMatch(/^wgtrain/);
    expect(i.opset).toBe(17);
    expect(i.ops.Conv).toBe(5);
    expect(i.batchNorm).toMatch(/present/);
    expect(i.metadata['wgtrain.classes']).toBeDefined();
    if (hasOnnxData('resnet34_torchstyle')) {
      const t = JSON.parse(run('inspect', join(onnxDataDir(), 'resnet34_torchstyle/model.onnx'), '--json').out);
      expect(t.family).toBe('resnet34');
      expect(t.batchNorm).toMatch(/folded/);
      expect(t.ops).toMatchObject({ Conv: 36, Relu: 33, Add: 16, Gemm: 1 });
      expect(t.layerGroups).toHaveLength(3);
      expect(t.largestTensor.fitsOneBinding).toBe(true);
    }
  }, 120_000);
});

describe('bad input: one line, exit code 1', () => {
  it.each([
    [['finetune', '--data', '/nonexistent/folder'], /does not exist|not found|no such/i],
    [['finetune', '--lr', 'fast'], /--lr/],
    [['finetune', '--model', '/nonexistent.onnx'], /does not exist/],
    [['finetune', '--val-split', '1.5'], /--val-split/],
    [['inspect', 'package.json'], /not an ONNX model/],
    [['predict', '--model', 'weights/fashion5-source-cnn.onnx', 'package.json'], /cannot decode/],
  ])('%j', (args, re) => {
    const r = run(...(args as string[]));
    expect(r.code).toBe(1);
    expect(oneLine(r.err)).toHaveLength(1);
    expect(oneLine(r.err)[0]).toMatch(re as RegExp);
    expect(r.err).not.toMatch(/\n\s+at .*:\d+:\d+/);
  });

  it('an input size a fixed-size model cannot take is refused', async () => {
    const gpu = await getGpu();
    const rng = new Rng(2);
    const net = new Sequential(new Conv2d(gpu, 3, 4, 3, { padding: 1, rng }), new ReLU(), new Flatten(), new Linear(gpu, 4 * 16 * 16, 3, { rng }));
    const file = join(tmp, 'flat16.onnx');
    const prep = { size: 16, channelOrder: 'RGB', mean: [0.3, 0.3, 0.3], std: [0.35, 0.35, 0.35], resizeRatio: 1 };
    writeFileSync(file, await exportOnnx(gpu, net, { sampleShape: [3, 16, 16], metadata: { 'wgtrain.preprocessing': JSON.stringify(prep) } }));
    net.dispose();
    const r = run('finetune', '--model', file, '--data', small, '--out', join(tmp, 'o2'), '--size', '24');
    expect(r.code).toBe(1);
    expect(oneLine(r.err)[0]).toMatch(/--size 24 does not fit this model.*16×16/);
  });

  it('a one-class folder is refused', () => {
    const d = join(tmp, 'oneclass', 'only');
    mkdirSync(d, { recursive: true });
    copyFileSync(join(small, '8_bag', readdirSync(join(small, '8_bag'))[0]!), join(d, 'a.png'));
    writeFileSync(join(d, 'notes.txt'), 'x');
    const r = run('finetune', '--data', join(tmp, 'oneclass'), '--out', join(tmp, 'o1'));
    expect(r.code).toBe(1);
    expect(oneLine(r.err)[0]).toMatch(/class/);
  });
});
