// Two small concurrency helpers for the loader and the dataset scan.

/**
 * Runs at most `n` tasks at once; the rest wait in FIFO order. FIFO matters to the loader: the
 * items of an earlier batch are queued first, so they are decoded first and batches finish in order.
 */
export class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(readonly n: number) {
    if (!(Number.isInteger(n) && n >= 1)) throw new Error(`Limiter: need n ≥ 1, got ${n}`);
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.n) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
    try {
      return await task();
    } finally {
      // Hand the slot straight to the next waiter (active stays the same), or free it.
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}

/** Maps `xs` through an async `fn` with at most `n` calls in flight; results in input order. */
export function mapLimit<T, U>(xs: readonly T[], n: number, fn: (x: T, i: number) => Promise<U>): Promise<U[]> {
  const limiter = new Limiter(n);
  return Promise.all(xs.map((x, i) => limiter.run(() => fn(x, i))));
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
