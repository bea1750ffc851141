// Reference: concat, transpose, constant pad, slice and their backwards (float64 loops over
// coordinates, written from the definitions rather than from the GPU's strided-copy formulation).

type Arr = ArrayLike<number>;
type Shape = readonly number[];

const size = (s: Shape) => s.reduce((p, q) => p * q, 1);

/** Coordinates of flat index i in a row-major shape. */
function coordsOf(i: number, shape: Shape): number[] {
  const c = new Array<number>(shape.length);
  for (let k = shape.length - 1; k >= 0; k--) { c[k] = i % shape[k]!; i = Math.floor(i / shape[k]!); }
  return c;
}

/** Flat index of coordinates c in a row-major shape. */
function flatOf(c: readonly number[], shape: Shape): number {
  let i = 0;
  for (let k = 0; k < shape.length; k++) i = i * shape[k]! + c[k]!;
  return i;
}

/** y.shape[k] = x.shape[perm[k]]; y[c] = x[c'] with c'[perm[k]] = c[k]. */
export function transposeRef(x: Arr, xShape: Shape, perm: readonly number[]): { y: Float64Array; shape: number[] } {
  const shape = perm.map((p) => xShape[p]!);
  const y = new Float64Array(size(shape));
  for (let i = 0; i < y.length; i++) {
    const c = coordsOf(i, shape);
    const cx = new Array<number>(xShape.length);
    perm.forEach((p, k) => { cx[p] = c[k]!; });
    y[i] = x[flatOf(cx, xShape)]!;
  }
  return { y, shape };
}

/** dX[c'] = dY[c] for the pairs the forward moved (a scatter; the forward is a gather). */
export function transposeBackwardRef(dY: Arr, xShape: Shape, perm: readonly number[]): Float64Array {
  const yShape = perm.map((p) => xShape[p]!);
  const dx = new Float64Array(size(xShape));
  for (let i = 0; i < dY.length; i++) {
    const c = coordsOf(i, yShape);
    const cx = new Array<number>(xShape.length);
    perm.forEach((p, k) => { cx[p] = c[k]!; });
    dx[flatOf(cx, xShape)] = dY[i]!;
  }
  return dx;
}

/** Joins inputs along `axis` (already non-negative). */
export function concatRef(inputs: readonly { x: Arr; shape: Shape }[], axis: number): { y: Float64Array; shape: number[] } {
  const shape = [...inputs[0]!.shape];
  shape[axis] = inputs.reduce((s, t) => s + t.shape[axis]!, 0);
  const y = new Float64Array(size(shape));
  let off = 0;
  for (const t of inputs) {
    for (let i = 0; i < t.x.length; i++) {
      const c = coordsOf(i, t.shape);
      c[axis]! += off;
      y[flatOf(c, shape)] = t.x[i]!;
    }
    off += t.shape[axis]!;
  }
  return { y, shape };
}

/** dX_j = the part of dY that came from input j. */
export function concatBackwardRef(dY: Arr, shapes: readonly Shape[], axis: number): Float64Array[] {
  const yShape = [...shapes[0]!];
  yShape[axis] = shapes.reduce((s, t) => s + t[axis]!, 0);
  let off = 0;
  return shapes.map((s) => {
    const dx = new Float64Array(size(s));
    for (let i = 0; i < dx.length; i++) {
      const c = coordsOf(i, s);
      c[axis]! += off;
      dx[i] = dY[flatOf(c, yShape)]!;
    }
    off += s[axis]!;
    return dx;
  });
}

/** ONNX constant Pad: pads = [begin_0 … begin_{r−1}, end_0 … end_{r−1}], negative pads crop. */
export function padRef(x: Arr, xShape: Shape, pads: readonly number[], value = 0): { y: Float64Array; shape: number[] } {
  const r = xShape.length;
  const shape = xShape.map((d, k) => d + pads[k]! + pads[r + k]!);
  const y = new Float64Array(size(shape));
  for (let i = 0; i < y.length; i++) {
    const cx = coordsOf(i, shape).map((c, k) => c - pads[k]!);
    y[i] = cx.every((c, k) => c >= 0 && c < xShape[k]!) ? x[flatOf(cx, xShape)]! : value;
  }
  return { y, shape };
}

/** dX[c] = dY[c + begin] (each x element went to one y element, or was cropped: gradient 0). */
export function padBackwardRef(dY: Arr, xShape: Shape, pads: readonly number[]): Float64Array {
  const r = xShape.length;
  const yShape = xShape.map((d, k) => d + pads[k]! + pads[r + k]!);
  const dx = new Float64Array(size(xShape));
  for (let i = 0; i < dx.length; i++) {
    const cy = coordsOf(i, xShape).map((c, k) => c + pads[k]!);
    if (cy.every((c, k) => c >= 0 && c < yShape[k]!)) dx[i] = dY[flatOf(cy, yShape)]!;
  }
  return dx;
}

/** Resolved slice bounds along some axes (see kernels/shape.ts SliceSpec). */
export interface SliceSpecRef { starts: readonly number[]; ends: readonly number[]; axes?: readonly number[]; steps?: readonly number[] }

/** Per axis of x: the list of source indices the slice takes. */
function sliceIndices(xShape: Shape, spec: SliceSpecRef): number[][] {
  const idx = xShape.map((d) => Array.from({ length: d }, (_, i) => i));
  spec.starts.forEach((start, j) => {
    const ax = spec.axes?.[j] ?? j, end = spec.ends[j]!, step = spec.steps?.[j] ?? 1;
    const taken: number[] = [];
    for (let i = start; step > 0 ? i < end : i > end; i += step) taken.push(i);
    idx[ax < 0 ? ax + xShape.length : ax] = taken;
  });
  return idx;
}

export function sliceRef(x: Arr, xShape: Shape, spec: SliceSpecRef): { y: Float64Array; shape: number[] } {
  const idx = sliceIndices(xShape, spec);
  const shape = idx.map((l) => l.length);
  const y = new Float64Array(size(shape));
  for (let i = 0; i < y.length; i++) y[i] = x[flatOf(coordsOf(i, shape).map((c, k) => idx[k]![c]!), xShape)]!;
  return { y, shape };
}

/** dX: zeros, with dY added at the positions the slice took. */
export function sliceBackwardRef(dY: Arr, xShape: Shape, spec: SliceSpecRef): Float64Array {
  const idx = sliceIndices(xShape, spec);
  const shape = idx.map((l) => l.length);
  const dx = new Float64Array(size(xShape));
  for (let i = 0; i < dY.length; i++) dx[flatOf(coordsOf(i, shape).map((c, k) => idx[k]![c]!), xShape)]! += dY[i]!;
  return dx;
}
