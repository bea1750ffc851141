// The LR finder (fastai's algorithm, Smith 2015): train with an exponentially growing LR, record the
// smoothed loss, stop once it blows up, put everything back, and suggest LRs from the curve.
//
//   lr_i = start·(end/start)^(i/numIt)         (1e-7 → 10 over 100 iterations by default)
//   avg  = β·avg + (1 − β)·loss,  smooth_i = avg/(1 − β^(i+1))   (debiased EMA, β = 0.98)
//   stop when smooth_i > 4·min(smooth)
//
// Suggestions (computed on the curve without its first tenth and last 5 points, as fastai does):
//   minimum  LR at the lowest loss, divided by 10
//   steep    LR where the loss falls fastest against log LR
//   valley   the longest decreasing run [s, e] of the curve; the point 1/3 + 1/6 of the way along it
//   slide    walking left from the end, the first LR where the loss slope 15 points apart differs by
//            less than 0.005 (the loss has flattened)
//
// NOTE: reproducible: the batches come from a fixed epoch of the (seeded) source, and weights, BN
// statistics and optimizer state are restored bit for bit afterwards.

import { Tensor } from '../gpu/tensor.js';
import type { Learner, BatchSource } from './learner.js';

export interface LrFindOptions { startLr?: number; endLr?: number; numIt?: number; beta?: number; stopDiv?: boolean }

export interface LrFindResult {
  lrs: number[];
  /** Smoothed losses, one per LR. */
  losses: number[];
  rawLosses: number[];
  suggestions: { valley: number; slide: number; minimum: number; steep: number };
  /** Iterations run (fewer than numIt when the loss diverged). */
  iterations: number;
}

export async function lrFind(learner: Learner, train: BatchSource, o: LrFindOptions = {}): Promise<LrFindResult> {
  const { startLr = 1e-7, endLr = 10, numIt = 100, beta = 0.98, stopDiv = true } = o;
  if (!(startLr > 0 && endLr > startLr)) throw new Error(`lr-find: need 0 < start (${startLr}) < end (${endLr})`);
  const snap = await snapshot(learner);
  const lrs: number[] = [], losses: number[] = [], raw: number[] = [];
  let avg = 0, best = Infinity, it = 0;
  learner.model.train();
  try {
    outer: for (let epoch = 0; it < numIt; epoch++) {
      let any = false;
      for await (const b of train.batches(epoch)) {
        any = true;
        const lr = startLr * (endLr / startLr) ** (it / numIt);
        learner.optimizer.setLr(learner.optimizer.groups.map(() => lr));
        const r = learner.trainStep(b);
        const loss = (await r.loss.read())[0]!;
        if (!learner.isCapturedOutput(r.loss)) { r.loss.dispose(); r.correct.dispose(); }
        await learner.settleTuning();
        avg = beta * avg + (1 - beta) * loss;
        const smooth = avg / (1 - beta ** (it + 1));
        lrs.push(lr); losses.push(smooth); raw.push(loss);
        it++;
        if (smooth < best) best = smooth;
        if (stopDiv && (smooth > 4 * best || !Number.isFinite(smooth))) break outer;
        if (it >= numIt) break outer;
      }
      if (!any) throw new Error('lr-find: the training set yielded no batches');
    }
  } finally {
    await restore(learner, snap);
  }
  return { lrs, losses, rawLosses: raw, suggestions: suggest(lrs, losses, numIt), iterations: it };
}

/** fastai's four suggestions from (lr, smoothed loss) pairs. */
export function suggest(allLrs: number[], allLosses: number[], numIt: number): LrFindResult['suggestions'] {
  const lo = Math.floor(numIt / 10);
  let lrs = allLrs.slice(lo, Math.max(lo + 1, allLrs.length - 5));
  let losses = allLosses.slice(lo, Math.max(lo + 1, allLosses.length - 5));
  if (lrs.length < 2) { lrs = allLrs; losses = allLosses; }
  const n = losses.length;
  const argmin = (a: number[]) => a.reduce((bi, v, i) => (v < a[bi]! ? i : bi), 0);
  const minimum = lrs[argmin(losses)]! / 10;
  // steep: most negative d loss / d log lr.
  const slopes = losses.slice(1).map((l, i) => (l - losses[i]!) / (Math.log(lrs[i + 1]!) - Math.log(lrs[i]!)));
  const steep = slopes.length ? lrs[argmin(slopes)]! : lrs[0]!;
  // valley: longest decreasing subsequence ending at each point.
  const lds = new Array<number>(n).fill(1);
  let maxStart = 0, maxEnd = 0;
  for (let i = 1; i < n; i++) {
    for (let j = 0; j < i; j++) {
      if (losses[i]! < losses[j]! && lds[i]! < lds[j]! + 1) lds[i] = lds[j]! + 1;
      if (lds[maxEnd]! < lds[i]!) { maxEnd = i; maxStart = maxEnd - lds[maxEnd]!; }
    }
  }
  const sections = (maxEnd - maxStart) / 3;
  const valley = lrs[Math.min(n - 1, Math.max(0, maxStart + Math.floor(sections) + Math.floor(sections / 2)))]!;
  // slide: numpy-style central-difference gradient of the losses.
  const grad = losses.map((_, i) => (n < 2 ? 0 : i === 0 ? losses[1]! - losses[0]! : i === n - 1 ? losses[n - 1]! - losses[n - 2]! : (losses[i + 1]! - losses[i - 1]!) / 2));
  const lrDiff = 15, thresh = 0.005;
  let r = n - 1, l = r - lrDiff;
  let slide = lrs[Math.max(0, l)]!;
  while (l >= 0 && Math.abs(grad[r]! - grad[l]!) > thresh) { slide = lrs[l]!; r--; l--; }
  return { valley, slide, minimum, steep };
}

interface Snapshot { params: Map<string, Float32Array>; opt: { tensors: [string, Float32Array, number[]][]; steps: Record<string, number> } }

async function snapshot(learner: Learner): Promise<Snapshot> {
  const params = new Map<string, Float32Array>();
  for (const [n, t] of learner.model.stateDict()) params.set(n, await t.read());
  const st = learner.optimizer.stateTensors();
  const tensors: [string, Float32Array, number[]][] = [];
  for (const [n, t] of st.tensors) tensors.push([n, await t.read(), [...t.shape]]);
  return { params, opt: { tensors, steps: { ...st.steps } } };
}

async function restore(learner: Learner, s: Snapshot) {
  for (const [n, t] of learner.model.stateDict()) t.write(s.params.get(n)!);
  const gpu = learner.gpu;
  learner.optimizer.dispose(); // drops all state, including state created during the search
  const tensors: [string, Tensor][] = s.opt.tensors.map(([n, d, shape]) => [n, Tensor.from(gpu, d, shape)]);
  learner.optimizer.loadState({ tensors, steps: s.opt.steps });
  for (const [, t] of tensors) t.dispose();
  learner.resetCaptures();
  await gpu.sync();
}
