// Learning rates across parameter groups (discriminative LRs), fastai semantics
// (finetune-semantics.md):
//   a number         every group gets it
//   a list           exactly one per group
//   slice(min, max)  group i of n gets min·(max/min)^(i/(n−1))   (geometric spread, head = max)
//   slice(max)       max/10 for every group but the last, max for the last
// On the command line a range is written `A:B` (slice(A, B)) or `:B` (slice(B)).

export type LrSpec = number | readonly number[] | { readonly min?: number; readonly max: number };

/** fastai's `slice(max)` or `slice(min, max)`. */
export function slice(a: number, b?: number): LrSpec {
  return b === undefined ? { max: a } : { min: a, max: b };
}

/** Per-group LRs for `n` groups. */
export function spreadLr(lr: LrSpec, n: number): number[] {
  if (!Number.isInteger(n) || n < 1) throw new Error(`spreadLr: need at least one group, got ${n}`);
  if (typeof lr === 'number') return Array(n).fill(checkLr(lr));
  if (Array.isArray(lr)) {
    if (lr.length !== n) throw new Error(`a list of learning rates needs one per layer group: got ${lr.length} for ${n} groups`);
    return lr.map(checkLr);
  }
  const { min, max } = lr as { min?: number; max: number };
  checkLr(max);
  if (min === undefined) return Array.from({ length: n }, (_, i) => (i === n - 1 ? max : max / 10));
  checkLr(min);
  if (n === 1) return [max];
  return Array.from({ length: n }, (_, i) => min * (max / min) ** (i / (n - 1)));
}

function checkLr(x: number): number {
  if (!(Number.isFinite(x) && x > 0)) throw new Error(`learning rate must be a positive number, got ${x}`);
  return x;
}

/** Parses a CLI LR: `3e-4`, `1e-5:1e-3` (slice(min, max)) or `:1e-3` (slice(max)). */
export function parseLr(s: string): LrSpec {
  const num = (t: string) => {
    const v = Number(t);
    if (t.trim() === '' || !Number.isFinite(v) || v <= 0) throw new Error(`--lr: '${s}' is not a learning rate; use a number like 1e-3 or a range like 1e-5:1e-3`);
    return v;
  };
  if (!s.includes(':')) return num(s);
  const [a, b] = s.split(':') as [string, string];
  if (a.trim() === '') return { max: num(b) };
  const min = num(a), max = num(b);
  if (min > max) throw new Error(`--lr: range '${s}' goes down; write it low:high (the low LR goes to the first layer group)`);
  return { min, max };
}
