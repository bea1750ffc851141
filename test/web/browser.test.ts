// The browser app in a real Chromium (Debian's, WebGPU on SwiftShader), driven by playwright-core:
//   - without WebGPU the page says so, clearly, and offers nothing that cannot work;
//   - the browser pipeline (createImageBitmap decode → transforms) and the model's forward pass give
//     what Node gives (sharp, Dawn/lavapipe) for the same images: inputs equal, logits within 1e-4;
//   - the demo model fine-tunes in a worker on a small subset (LR finder, head epoch, pause, reload,
//     resume from IndexedDB, unfrozen epoch): the loss falls, validation accuracy is above chance;
//     one image is predicted; screenshots go to docs/img/ for the README; the exported model.onnx
//     predicts in the Node CLI what the page predicted;
//   - a checkpoint written in the browser resumes in Node (`wgtrain finetune --resume`), and one
//     written by the CLI resumes in the browser (Import checkpoint).
// Training is kept tiny: SwiftShader runs a few GFLOP/s and this machine has 2 cores.

import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errors } from '../helpers.js';
import { getGpu } from '../../src/gpu/index.js';
import { Tensor } from '../../src/gpu/tensor.js';
import * as ops from '../../src/autograd/ops.js';
import { noGrad, releaseTape } from '../../src/autograd/variable.js';
import { decodeModel } from '../../src/onnx/reader.js';
import { importModel } from '../../src/onnx/import.js';
import { SharpDecoder } from '../../src/data/node.js';
import { checkPreprocessing } from '../../src/data/preprocessing.js';
import { transformImage } from '../../src/data/transforms.js';
import { checkpointMeta } from '../../src/train/checkpoint.js';
import type { EpochRecord } from '../../src/train/learner.js';
import type { RunState } from '../../web/protocol.js';
import { haveChromium, launch, serve } from './harness.js';

const DEMO_MODEL = 'weights/fashion5-source-cnn.onnx';
const DEMO_DATA = 'examples/fashion5';
const PER_CLASS = 10;
/** The run both hosts make: the CLI's flags and the page's form, the same numbers. */
const RUN = { lr: '0.03', batch: '8', freezeEpochs: '1', epochs: '1' };
const IMG_DIR = 'docs/img';

const enabled = haveChromium();
let server: { url: string; proc: ChildProcess };
let browser: Browser;
let tmp: string;
/** The first PER_CLASS images of each demo class (path order), as the page's "images per class". */
let subset: string;
const classes = enabled ? readdirSync(DEMO_DATA, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort() : [];

beforeAll(async () => {
  if (!enabled) return;
  execFileSync('node', ['scripts/build-web.mjs']);
  execFileSync('node', ['scripts/build.mjs']);
  tmp = mkdtempSync(join(tmpdir(), 'wgtrain-web-'));
  subset = join(tmp, 'data');
  for (const c of classes) {
    mkdirSync(join(subset, c), { recursive: true });
    for (const f of readdirSync(join(DEMO_DATA, c)).sort().slice(0, PER_CLASS)) copyFileSync(join(DEMO_DATA, c, f), join(subset, c, f));
  }
  mkdirSync(IMG_DIR, { recursive: true });
  server = await serve();
  browser = await launch(true);
}, 60_000);

afterAll(async () => {
  await browser?.close();
  server?.proc.kill();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

interface App { context: BrowserContext; page: Page; problems: string[] }

/** A fresh profile (its own IndexedDB) with the app loaded and WebGPU initialised (or not). */
async function openApp(b: Browser = browser): Promise<App> {
  const context = await b.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error' && !/Failed to load resource.*404/.test(m.text())) problems.push(`console: ${m.text()}`); });
  await page.goto(server.url);
  await page.waitForSelector('body[data-gpu]');
  return { context, page, problems };
}

/** The page's view of the run (window.wgtrain.state). */
const runState = (page: Page) => page.evaluate(() => (window as unknown as { wgtrain: { state: RunState } }).wgtrain.state);

async function waitStatus(app: App, status: RunState['status'], timeout: number) {
  try {
    await app.page.waitForFunction((s) => document.body.dataset.status === s || !document.getElementById('error')!.hidden, status, { timeout, polling: 200 });
  } catch (e) {
    throw new Error(`page never reached '${status}': ${(e as Error).message}\n${app.problems.join('\n')}`);
  }
  const err = await app.page.locator('#error').textContent();
  if (await app.page.locator('#error').isVisible()) throw new Error(`the page shows an error: ${err}\n${app.problems.join('\n')}`);
}

async function download(page: Page, button: string, file: string) {
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click(button)]);
  await dl.saveAs(file);
}

/** Runs the CLI from the repository root (where a browser plan's demo paths resolve). */
function cli(...args: string[]) {
  const r = spawnSync('node', ['dist/wgtrain.js', ...args], { encoding: 'utf8', env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

async function chooseDemo(page: Page) {
  await page.click('#demo-model');
  await page.waitForSelector('#model-info .title');
  await page.fill('#per-class', String(PER_CLASS));
  await page.click('#demo-data');
  await page.waitForSelector('#data-info .title');
  await page.waitForFunction(() => /first 10 images per class/.test(document.getElementById('data-info')!.textContent ?? ''));
}

/** Results shared between the tests below (they run in order). */
const shared: { browserHistory?: EpochRecord[]; b2n?: string } = {};

describe.skipIf(!enabled)('web app in Chromium', () => {
  it('says clearly that WebGPU is unavailable when the browser has none', async () => {
    const plain = await launch(false);
    try {
      const app = await openApp(plain);
      const box = app.page.locator('#error');
      await expect.poll(() => box.isVisible()).toBe(true);
      expect(await box.getAttribute('data-kind')).toBe('no-webgpu');
      expect(await box.textContent()).toMatch(/WebGPU is not available in this browser.*--enable-unsafe-webgpu/s);
      expect(await app.page.locator('#gpu').textContent()).toBe('WebGPU: unavailable');
      // Nothing that needs the GPU can be started.
      for (const id of ['#demo-model', '#train', '#lr-find']) expect(await app.page.locator(id).isDisabled()).toBe(true);
    } finally { await plain.close(); }
  }, 60_000);

  it('decodes, preprocesses and runs the demo model as Node does (logits within 1e-4)', async () => {
    const app = await openApp();
    await chooseDemo(app.page);
    const paths = classes.flatMap((c) => readdirSync(join(DEMO_DATA, c)).sort().slice(0, 2).map((f) => `${c}/${f}`));
    const fromPage = await app.page.evaluate(async (paths) => {
      const w = (window as unknown as { wgtrain: { call(r: unknown): Promise<{ x?: Float32Array; shape: number[]; logits?: Float32Array }> } }).wgtrain;
      const p = await w.call({ op: 'preprocess', paths });
      const f = await w.call({ op: 'forward', x: p.x, shape: p.shape });
      return { x: Array.from(p.x!), shape: p.shape, logits: Array.from(f.logits!) };
    }, paths);
    await app.context.close();

    // Node: sharp decode → the same transforms → the model imported on Dawn (lavapipe).
    const bytes = new Uint8Array(readFileSync(DEMO_MODEL));
    const onnx = decodeModel(bytes);
    const prep = checkPreprocessing(JSON.parse(onnx.metadata['wgtrain.preprocessing']!));
    const decoder = new SharpDecoder();
    const per = 3 * prep.size * prep.size;
    const x = new Float32Array(paths.length * per);
    for (const [i, p] of paths.entries()) x.set(transformImage(await decoder.decode(new Uint8Array(readFileSync(join(DEMO_DATA, p)))), prep, { kind: 'eval' }), i * per);
    expect(fromPage.shape).toEqual([paths.length, 3, prep.size, prep.size]);
    const ex = errors(fromPage.x, x);
    console.log(`browser vs Node input tensors (${paths.length} images): max abs diff ${ex.maxAbs}`);
    expect(ex.maxAbs).toBe(0); // 8-bit grayscale PNGs decode to the same bytes; the transforms are shared code

    const gpu = await getGpu();
    const model = importModel(gpu, onnx);
    model.eval();
    const xt = Tensor.from(gpu, x, [paths.length, 3, prep.size, prep.size]);
    const logits = await noGrad(() => model.call(ops.constant(xt))).read();
    releaseTape(); xt.dispose(); model.dispose();
    const el = errors(fromPage.logits, logits);
    console.log(`browser (SwiftShader) vs Node (lavapipe) logits [${paths.length}, 5]: max abs diff ${el.maxAbs.toExponential(2)}, max rel ${el.maxRel.toExponential(2)}`);
    expect(el.maxAbs).toBeLessThan(1e-4);
  }, 60_000);

  it('takes a model from the file picker and images from the folder picker', async () => {
    const app = await openApp();
    const { page } = app;
    await page.setInputFiles('#model-file', DEMO_MODEL);
    await page.waitForSelector('#model-info .title');
    expect(await page.locator('#model-info .title').textContent()).toBe('fashion5-source-cnn.onnx');
    expect(await page.locator('#model-info').textContent()).toContain('input [N, 3, 28, 28] → logits [N, 5]');
    // <input webkitdirectory>: every file with its path inside the picked folder ("data/5_sandal/…").
    await page.setInputFiles('#data-folder', subset);
    await page.waitForSelector('#data-info .title');
    expect(await page.locator('#data-info .title').textContent()).toBe(`data: ${classes.length} classes, ${classes.length * PER_CLASS} images`);
    const data = await page.evaluate(() => (window as unknown as { wgtrain: { data: { classes: string[]; counts: number[] }; split: { train: number[]; val: number[] } } }).wgtrain);
    expect(data.data.classes).toEqual(classes);
    expect(data.data.counts).toEqual(classes.map(() => PER_CLASS));
    expect(data.split.val).toEqual(classes.map(() => 2)); // round(10 · 0.2) per class
    expect(app.problems).toEqual([]);
    await app.context.close();
  }, 60_000);

  it('runs the benchmark page (a filtered quick suite, checked against the CPU references)', async () => {
    const app = await openApp();
    await app.page.goto(`${server.url}bench.html?run&filter=${encodeURIComponent('^relu\\.fwd')}&e2e=0`);
    await app.page.waitForFunction(() => document.body.dataset.status === 'done' || document.body.dataset.status === 'error', null, { timeout: 90_000, polling: 250 });
    expect(await app.page.locator('#error').isVisible()).toBe(false);
    const table = await app.page.locator('#table').textContent();
    expect(table).toMatch(/relu\.fwd\/vgg16\.features\.1 /);
    expect(table).not.toMatch(/FAIL|NOT TIMED/);
    expect(await app.page.locator('#charts svg').count()).toBeGreaterThan(0);
    await app.context.close();
  }, 120_000);

  it('autotunes in the browser and keeps the table in IndexedDB across page loads', async () => {
    const app = await openApp();
    const url = `${server.url}bench.html?run&filter=${encodeURIComponent('^matmul/512$')}&e2e=0`;
    const finish = () => app.page.waitForFunction(() => document.body.dataset.status === 'done' || document.body.dataset.status === 'error', null, { timeout: 150_000, polling: 250 });
    await app.page.goto(url);
    await finish();
    expect(await app.page.locator('#error').isVisible()).toBe(false);
    const first = (await app.page.locator('#table').textContent())!;
    // The first run measured the class: the report lists its default and its winner.
    const row = /matmul\|nn 512x512x512\s+(\S+)\s+[\d.]+\s+(\S+)/.exec(first);
    expect(row, first).not.toBeNull();
    expect(first).not.toMatch(/FAIL|NOT TIMED/);
    // A new page load (same profile) loads the table instead of measuring again.
    await app.page.goto(url);
    await finish();
    const log = (await app.page.locator('#log').textContent())!;
    expect(log).toMatch(/autotuning: 1 kernel shape class measured earlier on this adapter \(IndexedDB\)/);
    const second = (await app.page.locator('#table').textContent())!;
    // Same default, winner and times: read from IndexedDB, not measured again.
    expect(/matmul\|nn 512x512x512\s+(\S+)\s+[\d.]+\s+(\S+)/.exec(second)?.[0]).toBe(row![0]);
    await app.context.close();
  }, 240_000);

  it('fine-tunes the demo model in a worker: LR finder, pause, reload and resume from IndexedDB, predict, export', async () => {
    const app = await openApp();
    const { page } = app;
    await chooseDemo(page);
    // Class counts and the split are shown: 10 per class, 2 of them for validation.
    expect(await page.locator('table.counts tr').count()).toBe(1 + classes.length);
    expect(await page.locator('#data-info').textContent()).toContain('1,430 images');

    await page.fill('#lr', RUN.lr); await page.fill('#batch', RUN.batch);
    await page.fill('#freeze-epochs', RUN.freezeEpochs); await page.fill('#epochs', RUN.epochs);

    // LR finder (a short sweep): its plot and suggestions.
    await page.fill('#lr-iters', '8');
    await page.click('#lr-find');
    await page.waitForFunction(() => /Suggestions: valley/.test(document.getElementById('lr-text')!.textContent ?? ''), null, { timeout: 60_000 });
    expect(await page.locator('#lr-plot svg path').count()).toBeGreaterThan(0);

    // Train, pausing after each epoch: the head epoch ends, its checkpoint is saved, the run waits.
    await page.check('#pause-epoch');
    await page.click('#train');
    await page.waitForFunction(() => document.body.dataset.status === 'training');
    // The page stays responsive while the worker trains: a main-thread task runs at once.
    const lag = await page.evaluate(() => new Promise<number>((r) => { const t = performance.now(); setTimeout(() => r(performance.now() - t), 0); }));
    console.log(`main-thread task latency during training: ${lag.toFixed(1)} ms`);
    expect(lag).toBeLessThan(250);
    await waitStatus(app, 'paused', 90_000);
    const head = await runState(page);
    expect(head.history.map((h) => h.stage)).toEqual(['head']);
    expect(head.progress).toEqual({ stage: 'unfrozen', epoch: 0, done: false });
    // The checkpoint and split, for Node (next test).
    shared.b2n = join(tmp, 'b2n');
    mkdirSync(shared.b2n);
    await download(page, '#dl-ckpt', join(shared.b2n, 'checkpoint.safetensors'));
    await download(page, '#dl-split', join(shared.b2n, 'split.json'));

    // Reload: the run is offered from IndexedDB and resumes where the checkpoint left it.
    await page.reload();
    await page.waitForSelector('#saved:not([hidden])', { timeout: 30_000 });
    expect(await page.locator('#saved').textContent()).toMatch(/1 of 2 epochs/);
    await page.click('#restore-saved');
    await waitStatus(app, 'done', 120_000);
    const st = await runState(page);
    const h = st.history;
    console.log(h.map((r) => `${r.stage} epoch ${r.epoch}: train loss ${r.trainLoss.toFixed(4)} acc ${(100 * r.trainAcc).toFixed(1)}%, val loss ${r.valLoss?.toFixed(4)} acc ${(100 * (r.valAcc ?? 0)).toFixed(1)}%, ${(r.ms / 1000).toFixed(1)} s`).join('\n'));
    expect(h.map((r) => r.stage)).toEqual(['head', 'unfrozen']);
    expect(h[0]).toEqual(head.history[0]); // the restored history is the saved one
    expect(h[1]!.trainLoss).toBeLessThan(h[0]!.trainLoss);
    expect(h[1]!.valLoss!).toBeLessThan(h[0]!.valLoss!);
    expect(st.eval!.accuracy).toBeGreaterThan(1 / classes.length); // above chance
    expect(await page.locator('#val-acc').textContent()).toBe(`${(100 * st.eval!.accuracy).toFixed(1)}%`);
    expect(await page.locator('#loss-chart svg path').count()).toBeGreaterThanOrEqual(2);
    shared.browserHistory = h;
    await page.locator('#train-card').screenshot({ path: join(IMG_DIR, 'web-training.png') });

    // Predict one validation image: probabilities as bars, the top one highlighted.
    const split = JSON.parse(readFileSync(join(shared.b2n, 'split.json'), 'utf8')) as { val: string[] };
    const img = join(DEMO_DATA, split.val.find((p) => p.startsWith('7_sneaker/'))!);
    await page.setInputFiles('#predict-file', img);
    await page.waitForSelector('#bars .pbar');
    expect(await page.locator('#bars .pbar').count()).toBe(classes.length);
    await page.locator('#predict-card').screenshot({ path: join(IMG_DIR, 'web-predict.png') });
    const pred = await page.evaluate(async (bytes) => {
      const w = (window as unknown as { wgtrain: { call(r: unknown): Promise<{ classes: string[]; probs: number[] }> } }).wgtrain;
      return w.call({ op: 'predict', bytes: new Uint8Array(bytes).buffer });
    }, Array.from(readFileSync(img)));
    expect(pred.classes).toEqual(classes);
    expect(pred.probs.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
    expect(await page.locator('#bars').getAttribute('data-top')).toBe(pred.classes[pred.probs.indexOf(Math.max(...pred.probs))]);

    // The exported model.onnx carries classes and preprocessing and predicts the same in Node.
    const onnxFile = join(tmp, 'browser-model.onnx');
    await download(page, '#dl-onnx', onnxFile);
    expect(JSON.parse(decodeModel(new Uint8Array(readFileSync(onnxFile))).metadata['wgtrain.classes']!)).toEqual(classes);
    const r = cli('predict', '--model', onnxFile, img, '--top', String(classes.length), '--json');
    expect(r.code, r.err).toBe(0);
    const nodePred = (JSON.parse(r.out) as { predictions: { class: string; probability: number }[] }[])[0]!.predictions;
    const diff = Math.max(...nodePred.map((p) => Math.abs(p.probability - pred.probs[classes.indexOf(p.class)]!)));
    console.log(`model.onnx from the browser, predicted by the Node CLI: max probability difference ${diff.toExponential(2)}`);
    expect(diff).toBeLessThan(1e-4);
    expect(app.problems).toEqual([]);
    await app.context.close();
  }, 240_000);

  it('resumes a browser checkpoint in Node (wgtrain finetune --resume)', () => {
    expect(shared.b2n, 'needs the fine-tuning test').toBeDefined();
    const out = join(tmp, 'b2n-out');
    const r = cli('finetune', '--resume', shared.b2n!, '--out', out, '--json');
    expect(r.code, r.err).toBe(0);
    const s = JSON.parse(r.out) as { history: EpochRecord[]; valAccuracy: number; epochs: number };
    expect(s.history.map((h) => h.stage)).toEqual(['head', 'unfrozen']);
    const b = shared.browserHistory!;
    expect(s.history[0]).toEqual(b[0]); // carried in the checkpoint
    // The same unfrozen epoch from the same checkpoint on another host: only float rounding differs.
    const d = Math.abs(s.history[1]!.trainLoss - b[1]!.trainLoss);
    console.log(`unfrozen epoch after resume: Node train loss ${s.history[1]!.trainLoss.toFixed(6)}, browser ${b[1]!.trainLoss.toFixed(6)} (|Δ| ${d.toExponential(2)}); val acc Node ${s.valAccuracy}, browser ${b[1]!.valAcc}`);
    expect(d).toBeLessThan(2e-3);
    expect(s.valAccuracy).toBeGreaterThan(1 / classes.length);
  }, 60_000);

  it('resumes a Node checkpoint in the browser (Import checkpoint)', async () => {
    // The CLI on the same subset, interrupted (Ctrl-C) once the head epoch is checkpointed.
    const out = join(tmp, 'n2b');
    const proc = spawn('node', ['dist/wgtrain.js', 'finetune', '--data', subset, '--out', out, '--lr', RUN.lr, '--batch', RUN.batch,
      '--freeze-epochs', RUN.freezeEpochs, '--epochs', RUN.epochs], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    const code = await new Promise<number | null>((resolve) => {
      proc.stderr!.on('data', (d: Buffer) => {
        err += d.toString();
        if (/^head\s+epoch 1\/1/m.test(err) && !proc.killed) proc.kill('SIGINT');
      });
      proc.on('exit', (c) => resolve(c));
    });
    expect([0, 130], err).toContain(code);
    const ckpt = join(out, 'checkpoint.safetensors');
    const meta = checkpointMeta(new Uint8Array(readFileSync(ckpt)));
    expect(meta.progress).toEqual({ stage: 'unfrozen', epoch: 0, done: false });

    const app = await openApp();
    await app.page.setInputFiles('#import-ckpt', ckpt);
    await waitStatus(app, 'stopped', 60_000);
    const before = await runState(app.page);
    expect(before.history).toEqual(meta.history);
    expect(await app.page.locator('#model-info .title').textContent()).toContain('demo'); // matched by hash
    await app.page.click('#resume');
    await waitStatus(app, 'done', 120_000);
    const st = await runState(app.page);
    expect(st.history.map((h) => h.stage)).toEqual(['head', 'unfrozen']);
    expect(st.history[0]).toEqual(meta.history[0]);
    expect(st.eval!.accuracy).toBeGreaterThan(1 / classes.length);
    console.log(`Node head epoch → browser unfrozen epoch: train loss ${st.history.map((h) => h.trainLoss.toFixed(4)).join(' → ')}, val acc ${(100 * st.eval!.accuracy).toFixed(1)}%`);
    expect(app.problems).toEqual([]);
    await app.context.close();
  }, 180_000);
});
