// Define-by-run autograd (micrograd's idea, on GPU tensors).
//
// A Variable wraps a GPU Tensor. Every op that has at least one input requiring a gradient pushes a
// Node onto the tape: its inputs, its output, and a closure that, given dOut, launches the backward
// kernels and returns one gradient per input (null where the input needs none). `backward(loss)`
// walks the tape in reverse, sums gradients per Variable, and accumulates them into leaves' `.grad`.
//
// NOTE on memory: the tape owns every intermediate it recorded (activations, saved tensors,
// intermediate gradients). backward() releases all of them, except Variables the caller asks to
// keep; so GPU memory after step N equals memory after step 2 (tested).
// NOTE on frozen layers: an op whose inputs all have requiresGrad = false records nothing, and a
// backward closure is told which inputs need a gradient, so a frozen conv launches no weight-grad
// kernel and the lowest trainable layer launches no input-grad kernel.

import type { Gpu } from '../gpu/device.js';
import { Tensor, type Shape } from '../gpu/tensor.js';
import { add, fill } from '../kernels/elementwise.js';

export type GradFn = (dOut: Tensor, needs: readonly boolean[]) => (Tensor | null)[];

interface Node {
  inputs: readonly Variable[];
  output: Variable;
  backward: GradFn;
  /** Tensors the backward reads (saved activations, argmax, …), released after backward. */
  saved: readonly Tensor[];
  name: string;
}

export class Variable {
  /** Accumulated gradient (leaves only), same shape as data. */
  grad: Tensor | null = null;
  /** Set for Variables produced by a recorded op. */
  node: Node | null = null;

  constructor(public data: Tensor, public requiresGrad = false, public name = '') {}

  get shape(): Shape { return this.data.shape; }
  get size(): number { return this.data.size; }
  get isLeaf(): boolean { return this.node === null; }

  read(): Promise<Float32Array> { return this.data.read(); }

  /** Releases the data and gradient buffers. */
  dispose() {
    this.data.dispose();
    this.zeroGrad();
  }

  /** Drops the accumulated gradient (the next backward starts from zero). */
  zeroGrad() {
    this.grad?.dispose();
    this.grad = null;
  }
}

// ---- the tape ---------------------------------------------------------------------------------

let tape: Node[] = [];
/** Every Variable created while recording, so the tape can free the ones nobody keeps. */
let created: Variable[] = [];
let gradEnabled = true;

/** True when ops should record (not inside noGrad). */
export function isGradEnabled(): boolean { return gradEnabled; }

/** Runs fn without recording: inference, metrics, the frozen base in feature-extraction mode. */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try { return fn(); } finally { gradEnabled = prev; }
}

/**
 * Wraps an op's output. If any input requires a gradient (and grad is enabled) the op is recorded
 * with its backward closure and the Tensors it saved; otherwise the saved Tensors are released at
 * once (nothing will ever read them).
 */
export function record(name: string, out: Tensor, inputs: readonly Variable[], backward: GradFn, saved: readonly Tensor[] = [], attrs: Readonly<Record<string, unknown>> = {}): Variable {
  const needs = gradEnabled && inputs.some((v) => v.requiresGrad);
  const v = new Variable(out, needs);
  tracer?.({ op: name, inputs, output: v, attrs });
  if (needs) {
    v.node = { inputs, output: v, backward, saved, name };
    tape.push(v.node);
  } else {
    for (const t of saved) if (t !== out && !inputs.some((i) => i.data === t)) t.dispose();
  }
  created.push(v);
  return v;
}

// ---- op tracing (ONNX export, `explain`, traces) ---------------------------------------------------

/** One op as the tracer sees it: our op name, its Variable inputs, output, and attributes. */
export interface OpTrace { op: string; inputs: readonly Variable[]; output: Variable; attrs: Readonly<Record<string, unknown>> }

let tracer: ((t: OpTrace) => void) | null = null;

/** Runs fn with every op reported to `onOp` (in execution order). */
export function traceOps<T>(onOp: (t: OpTrace) => void, fn: () => T): T {
  const prev = tracer;
  tracer = onOp;
  try { return fn(); } finally { tracer = prev; }
}

/** Number of recorded nodes (for tests). */
export function tapeLength(): number { return tape.length; }

/**
 * Backpropagates from a scalar (or from `grad` when given). Gradients are accumulated into
 * `.grad` of every leaf that requires one. Then the tape is freed: every intermediate Variable's
 * data and every saved tensor, except the Variables listed in `keep` (and leaves, which the tape
 * never owned).
 */
export function backward(root: Variable, opts: { grad?: Tensor; keep?: readonly Variable[] } = {}) {
  if (!root.requiresGrad) throw new Error('backward: the loss does not depend on any trainable parameter (is everything frozen?)');
  const grads = new Map<Variable, Tensor>();
  if (opts.grad) grads.set(root, opts.grad);
  else {
    if (root.size !== 1) throw new Error(`backward: loss must be a scalar, got shape [${root.shape.join(', ')}]`);
    grads.set(root, onesLike(root.data.gpu, root.shape));
  }
  // Reverse creation order is a valid reverse topological order for a define-by-run tape.
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i]!;
    const dOut = grads.get(node.output);
    if (!dOut) continue; // output does not reach the loss
    grads.delete(node.output);
    const needs = node.inputs.map((v) => v.requiresGrad);
    const dIns = node.backward(dOut, needs);
    // A backward may hand dOut's buffer on under another shape (reshape): then it stays alive.
    if (!dIns.some((g) => g?.buffer === dOut.buffer)) dOut.dispose();
    node.inputs.forEach((inp, k) => {
      const g = dIns[k];
      if (!g) return;
      if (!needs[k]) { g.dispose(); return; }
      accumulate(grads, inp, g);
    });
  }
  // What remains in `grads` belongs to leaves: move it into .grad (accumulating across calls).
  for (const [v, g] of grads) {
    if (v.isLeaf) {
      if (v.grad) { const s = add(v.grad, g); v.grad.dispose(); g.dispose(); v.grad = s; } else v.grad = g;
    } else g.dispose();
  }
  releaseTape(opts.keep ?? [root]);
}

function accumulate(grads: Map<Variable, Tensor>, v: Variable, g: Tensor) {
  const prev = grads.get(v);
  if (!prev) { grads.set(v, g); return; }
  const s = add(prev, g);
  prev.dispose(); g.dispose();
  grads.set(v, s);
}

/**
 * Frees everything the tape owns: saved tensors, and the data of every non-kept Variable created
 * since the last release. Called by backward(); call it directly after a forward-only step.
 */
export function releaseTape(keep: readonly Variable[] = []) {
  const keepSet = new Set(keep);
  const keptData = new Set(keep.map((v) => v.data.buffer));
  const freed = new Set<GPUBuffer>();
  const free = (t: Tensor) => {
    if (!t.owner) return; // a view: its base owns (and frees) the buffer
    if (keptData.has(t.buffer) || freed.has(t.buffer) || t.isDisposed) return;
    freed.add(t.buffer);
    t.dispose();
  };
  for (const node of tape) for (const t of node.saved) free(t);
  for (const v of created) {
    if (keepSet.has(v)) { v.node = null; continue; }
    free(v.data);
    v.node = null;
  }
  tape = [];
  created = [];
}

function onesLike(gpu: Gpu, shape: Shape): Tensor { return fill(Tensor.empty(gpu, shape), 1); }
