// Reference: elementwise ops and reductions (float64 loops).

type Arr = ArrayLike<number>;

export function reluRef(x: Arr): Float64Array { return Float64Array.from(x, (v) => Math.max(v, 0)); }

export function reluBackwardRef(x: Arr, dY: Arr, alpha = 0): Float64Array {
  return Float64Array.from(x, (v, i) => (v > 0 ? dY[i]! : alpha * dY[i]!));
}

export function leakyReluRef(x: Arr, alpha: number): Float64Array { return Float64Array.from(x, (v) => (v > 0 ? v : alpha * v)); }

function bshape(a: readonly number[], b: readonly number[]): number[] {
  const r = Math.max(a.length, b.length);
  return Array.from({ length: r }, (_, i) => {
    const da = a[a.length - r + i] ?? 1, db = b[b.length - r + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) throw new Error('bad broadcast');
    return Math.max(da, db);
  });
}

/** Index into a (broadcast) operand of shape s for output coordinates c. */
function bindex(c: number[], s: readonly number[]): number {
  const off = c.length - s.length;
  let idx = 0;
  for (let i = 0; i < s.length; i++) idx = idx * s[i]! + (s[i] === 1 ? 0 : c[off + i]!);
  return idx;
}

function coords(i: number, shape: readonly number[]): number[] {
  const c = new Array<number>(shape.length);
  for (let k = shape.length - 1; k >= 0; k--) { c[k] = i % shape[k]!; i = Math.floor(i / shape[k]!); }
  return c;
}

export type BinaryOpRef = 'add' | 'sub' | 'mul' | 'div';
const F: Record<BinaryOpRef, (p: number, q: number) => number> = {
  add: (p, q) => p + q, sub: (p, q) => p - q, mul: (p, q) => p * q, div: (p, q) => p / q,
};

export function binaryRef(op: BinaryOpRef, a: Arr, as: readonly number[], b: Arr, bs: readonly number[]): { y: Float64Array; shape: number[] } {
  const shape = bshape(as, bs);
  const n = shape.reduce((p, q) => p * q, 1);
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const c = coords(i, shape);
    y[i] = F[op](a[bindex(c, as)]!, b[bindex(c, bs)]!);
  }
  return { y, shape };
}

/** Sum of x (shape xs) over the axes that `shape` broadcasts. */
export function sumToRef(x: Arr, xs: readonly number[], shape: readonly number[]): Float64Array {
  const y = new Float64Array(shape.reduce((p, q) => p * q, 1));
  for (let i = 0; i < x.length; i++) y[bindex(coords(i, xs), shape)]! += x[i]!;
  return y;
}
