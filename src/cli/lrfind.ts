// `wgtrain lr-find`: fastai's LR finder on the model as fine-tuning starts (new head, base frozen):
// suggestions on stdout, the loss-vs-LR plot and the raw curve in the output folder. Weights and
// optimizer state are restored afterwards (nothing is written back to the model).

import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { freeze } from '../nn/groups.js';
import { Learner } from '../train/learner.js';
import { lrFind } from '../train/lrfind.js';
import { lrFindPlot } from '../train/plots.js';
import { startTrace, writeTrace } from './finetune.js';
import { writeFileAtomic } from '../data/node.js';
import { demoDataPath, demoModelPath, fraction, loadOnnx, loaderSource, openData, openGpu, positiveInt, StatusLine, tuneProgress, writeJson } from './session.js';

export interface LrFindFlags { model?: string; data?: string; out?: string; batch?: string; seed?: string; valSplit?: string; iterations?: string; unfrozen?: boolean; json?: boolean; trace?: string; traceSteps?: string; autotune?: string }

export async function lrFindCommand(flags: LrFindFlags) {
  const status = new StatusLine();
  const warn = (s: string) => status.log(`warning: ${s}`);
  const out = resolve(flags.out ?? 'wgtrain-out');
  mkdirSync(out, { recursive: true });
  const seed = positiveInt('--seed', flags.seed, 42, 0);
  const gpu = await openGpu(flags);
  const loaded = await loadOnnx(gpu, flags.model ?? demoModelPath(), warn);
  const data = await openData(resolve(flags.data ?? demoDataPath()), out, { valSplit: fraction('--val-split', flags.valSplit, 0.2), seed }, warn);
  const model = loaded.model;
  model.cutAt('before-last-gemm', data.dataset.classes.length, seed);
  if (!flags.unfrozen) freeze(model);
  const learner = new Learner(gpu, model, { numClasses: data.dataset.classes.length, onTune: tuneProgress(gpu, status) });
  const train = loaderSource(data.dataset, data.split.train, loaded.preprocessing, { batch: positiveInt('--batch', flags.batch, 32), train: true, seed });
  const trace = startTrace(gpu, learner, flags, 'lr-find');
  const r = await lrFind(learner, train, { numIt: positiveInt('--iterations', flags.iterations, 100, 10) });
  const s = r.suggestions;
  await writeTrace(trace, flags, status, { command: 'lr-find' });
  await writeFileAtomic(join(out, 'lr-find.svg'), lrFindPlot(r));
  await writeJson(join(out, 'lr-find.json'), r);
  status.log(`LR finder: ${r.iterations} iterations${flags.unfrozen ? '' : ' (base frozen, new head)'}; plot ${join(out, 'lr-find.svg')}`);
  const line = `valley ${s.valley.toExponential(2)}  slide ${s.slide.toExponential(2)}  minimum ${s.minimum.toExponential(2)}  steep ${s.steep.toExponential(2)}`;
  if (flags.json) process.stdout.write(`${JSON.stringify({ suggestions: s, iterations: r.iterations, plot: join(out, 'lr-find.svg') })}\n`);
  else process.stdout.write(`${line}\n(use e.g. wgtrain finetune --lr ${s.valley.toExponential(1)})\n`);
  learner.dispose(); model.dispose(); gpu.destroy();
}
