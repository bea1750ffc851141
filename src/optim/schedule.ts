// Learning-rate (and momentum) schedules as functions of the *fraction of training done*, pos ∈ [0, 1].
// NOTE: using a fraction rather than a step count is what makes a resume with a different batch size
// exact in intent (finetune-semantics.md: step-based schedules break when the batch size changes).

export interface ScheduleValue { lr: number; /** β1 / momentum, when the schedule drives it. */ mom?: number }
export type Schedule = (pos: number) => ScheduleValue;

/** Cosine interpolation from a to b as p goes 0 → 1 (fastai SchedCos). */
export function cosAnneal(a: number, b: number, p: number): number {
  return a + ((1 + Math.cos(Math.PI * (1 - p))) * (b - a)) / 2;
}

export interface OneCycleOptions {
  /** Peak LR. */
  lrMax: number;
  /** Start LR = lrMax/div (fastai 25). */
  div?: number;
  /** End LR = lrMax/divFinal (fastai 1e5). */
  divFinal?: number;
  /** Fraction of training spent warming up (fastai 0.25). */
  pctStart?: number;
  /** Momentum at start, at the LR peak, at the end (fastai 0.95, 0.85, 0.95): inverse to the LR. */
  moms?: readonly [number, number, number];
}

/** fastai's one-cycle: cosine warm-up to lrMax over pctStart, cosine anneal to lrMax/divFinal. */
export function oneCycle({ lrMax, div = 25, divFinal = 1e5, pctStart = 0.25, moms = [0.95, 0.85, 0.95] }: OneCycleOptions): Schedule {
  return (pos) => {
    const p = clamp01(pos);
    if (p < pctStart) {
      const t = p / pctStart;
      return { lr: cosAnneal(lrMax / div, lrMax, t), mom: cosAnneal(moms[0], moms[1], t) };
    }
    const t = pctStart >= 1 ? 1 : (p - pctStart) / (1 - pctStart);
    return { lr: cosAnneal(lrMax, lrMax / divFinal, t), mom: cosAnneal(moms[1], moms[2], t) };
  };
}

/** Cosine decay from lr to lr·minFactor. */
export function cosine(lr: number, minFactor = 0): Schedule {
  return (pos) => ({ lr: cosAnneal(lr, lr * minFactor, clamp01(pos)) });
}

/** Step decay: lr·gamma^k after each boundary (fractions of training) is passed. */
export function stepDecay(lr: number, boundaries: readonly number[], gamma = 0.1): Schedule {
  return (pos) => ({ lr: lr * gamma ** boundaries.filter((b) => pos >= b).length });
}

export function constant(lr: number): Schedule {
  return () => ({ lr });
}

function clamp01(x: number): number { return Math.min(1, Math.max(0, x)); }
