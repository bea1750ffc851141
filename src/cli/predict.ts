// `wgtrain predict` and `wgtrain evaluate`: run a fine-tuned model (its model.onnx, which carries its
// classes and preprocessing) on images.

import { existsSync, readFileSync, statSync } from 'node:fs';
import { checkpointMeta, loadCheckpoint } from '../train/checkpoint.js';
import type { Preprocessing } from '../data/preprocessing.js';
import { basename, dirname, resolve } from 'node:path';
import { Learner, type BatchSource } from '../train/learner.js';
import { NodeFileSource, SharpDecoder, openImageFolder } from '../data/node.js';
import { transformImage } from '../data/transforms.js';
import { classReport } from './finetune.js';
import { loadOnnx, loaderSource, openGpu, positiveInt, StatusLine, writeJson } from './session.js';
import { UserError } from './errors.js';

export interface PredictFlags { model: string; top?: string; json?: boolean }

/** A fine-tuned model from its model.onnx, or from a checkpoint (rebuilt from the base model it names). */
async function loadClassifier(path: string, warn: (s: string) => void) {
  const gpu = await openGpu({}, 'cached');
  let loaded: Awaited<ReturnType<typeof loadOnnx>>;
  if (path.endsWith('.safetensors')) {
    if (!existsSync(path)) throw new UserError(`checkpoint '${path}' does not exist`);
    const bytes = new Uint8Array(readFileSync(path));
    const meta = checkpointMeta(bytes);
    loaded = await loadOnnx(gpu, meta.model.source, warn);
    if (meta.model.hash && loaded.hash !== meta.model.hash) throw new UserError(`the checkpoint was trained from '${meta.model.source}', which has changed since; use the run's model.onnx instead`);
    loaded.model.cutAt('before-last-gemm', meta.classes.length);
    loadCheckpoint(gpu, bytes, loaded.model, null);
    loaded = { ...loaded, classes: meta.classes, preprocessing: meta.preprocessing as Preprocessing };
  } else loaded = await loadOnnx(gpu, path, warn);
  const K = loaded.model.numOutputs;
  if (!K) throw new UserError(`cannot tell how many classes '${path}' predicts`);
  const classes = loaded.classes ?? Array.from({ length: K }, (_, i) => `class ${i}`);
  if (!loaded.classes) warn(`'${path}' carries no class names (not written by wgtrain): showing class indices`);
  if (classes.length !== K) throw new UserError(`'${path}' lists ${classes.length} class names but has ${K} outputs`);
  const learner = new Learner(gpu, loaded.model, { numClasses: K, replay: false });
  return { gpu, loaded, classes, learner };
}

export async function predictCommand(images: string[], flags: PredictFlags) {
  const status = new StatusLine();
  const warn = (s: string) => status.log(`warning: ${s}`);
  if (!images.length) throw new UserError('predict needs at least one image file');
  const top = positiveInt('--top', flags.top, 3);
  const { gpu, loaded, classes, learner } = await loadClassifier(flags.model, warn);
  const p = loaded.preprocessing;
  const decoder = new SharpDecoder();
  const results: { image: string; predictions: { class: string; index: number; probability: number }[] }[] = [];
  for (const img of images) {
    if (!existsSync(img) || !statSync(img).isFile()) throw new UserError(`image '${img}' does not exist`);
    const src = new NodeFileSource(dirname(resolve(img)));
    let decoded;
    try { decoded = await decoder.decode(await src.read(basename(img)), {}); } catch (e) {
      throw new UserError(`cannot decode '${img}' as an image (${(e as Error).message.split('\n')[0]})`);
    }
    const x = transformImage(decoded, p, { kind: 'eval' });
    const probs = await learner.predict(x, [1, 3, p.size, p.size]);
    const ranked = Array.from(probs, (v, i) => ({ class: classes[i]!, index: i, probability: v })).sort((a, b) => b.probability - a.probability).slice(0, top);
    results.push({ image: img, predictions: ranked });
    if (!flags.json) process.stdout.write(`${img}\n${ranked.map((r) => `  ${(100 * r.probability).toFixed(1).padStart(5)}%  ${r.class}`).join('\n')}\n`);
  }
  if (flags.json) process.stdout.write(`${JSON.stringify(results)}\n`);
  learner.dispose(); loaded.model.dispose(); gpu.destroy();
}

export interface EvaluateFlags { model: string; data: string; batch?: string; json?: boolean; out?: string }

export async function evaluateCommand(flags: EvaluateFlags) {
  const status = new StatusLine();
  const warn = (s: string) => status.log(`warning: ${s}`);
  const { gpu, loaded, classes, learner } = await loadClassifier(flags.model, warn);
  const ds = await openImageFolder(resolve(flags.data), { onWarning: warn });
  // Labels are positions in the model's class list: the folders must name the same classes.
  const missing = ds.classes.filter((c) => !classes.includes(c));
  if (missing.length) throw new UserError(`the data folder has classes the model does not know: ${missing.slice(0, 5).join(', ')} (model classes: ${classes.join(', ')})`);
  const remap = ds.classes.map((c) => classes.indexOf(c));
  const items = ds.items.map((it) => ({ ...it, label: remap[it.label]! }));
  const src = loaderSource(ds, items, loaded.preprocessing, { batch: positiveInt('--batch', flags.batch, 32), train: false, seed: 0 });
  const ev = await learner.evaluate(src as BatchSource);
  const rep = classReport(ev, classes);
  if (flags.out) await writeJson(resolve(flags.out), rep);
  if (flags.json) process.stdout.write(`${JSON.stringify(rep)}\n`);
  else {
    process.stdout.write(`accuracy ${(100 * ev.accuracy).toFixed(2)}% on ${ev.n} images (loss ${ev.loss.toFixed(4)})\n`);
    for (const c of rep.perClass) process.stdout.write(`  ${c.class.padEnd(20)} precision ${(100 * c.precision).toFixed(1).padStart(5)}%  recall ${(100 * c.recall).toFixed(1).padStart(5)}%  (${c.support})\n`);
    process.stdout.write(`confusion (rows: true, columns: predicted)\n${rep.confusion.map((r) => `  ${r.map((v) => String(v).padStart(5)).join('')}`).join('\n')}\n`);
  }
  learner.dispose(); loaded.model.dispose(); gpu.destroy();
}
