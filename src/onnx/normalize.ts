// ONNX graph normalizer: OnnxModel (reader.ts) -> NormGraph, one internal form for every opset.
//
// ---- the normalized graph (what the importer and the exporter work with) ------------------------
//
//   NormGraph
//     inputs     the values a caller feeds (graph inputs minus initializers and bound inputs)
//     outputs    the graph outputs, in order
//     constants  every constant a node reads: weights (initializer names kept), folded constants
//     nodes      NormNode[], in topological order: each input is a graph input, a constant, or the
//                output of an EARLIER node
//     values     element type and shape of every value (inputs, constants, node outputs) that
//                shape inference could determine. A Dim is a number, or a string symbol for a size
//                known only at run time ('batch' from the file's dim_param, '?3' when anonymous).
//                Two equal symbols are the same size.
//
//   NormNode { op, name, inputs, outputs, attrs, onnxOp, version }
//     op       one of the ops in OpAttrs below (the importer switches on it, exhaustively)
//     inputs   only TENSOR inputs remain: data and weights (Conv [X, W, B?], Gemm [A, B, C?],
//              BatchNormalization [X, scale, B, mean, var], all others [X] or their operands).
//              Inputs that are really attributes (Reshape shape, Unsqueeze/Squeeze axes, Pad pads and
//              value, Clip min/max, Dropout ratio, ReduceMean axes) are moved into `attrs`, whichever
//              opset put them where.
//     attrs    typed per op, defaults filled in, axes non-negative whenever the input rank is known
//     onnxOp / version   the ONNX op it came from and the op version the model's opset selects
//                        (the newest version ≤ the default-domain opset)
//
// What normalize() does, in order:
//   1. liveness (only nodes that feed a graph output count) and topological order: sorted if the
//      file was not; a cycle or an input nobody produces is an OnnxError
//   2. one pass in that order, per node: resolve the op version, read its attributes into the
//      uniform form, fold what is constant (Constant, Identity, Shape, Gather, ConstantOfShape,
//      Unsqueeze/Squeeze/Concat/Reshape/Flatten/Transpose of constants, arithmetic on constants),
//      infer output shapes, resolve auto_pad to explicit pads when the input size is known.
//      The x.view(x.size(0), -1) chain Shape→Gather→Unsqueeze→Concat→Reshape folds even when the
//      batch size is symbolic: Shape yields a partly symbolic vector, and a Reshape target entry
//      equal to the same input dimension becomes 0 ("copy this dimension").
//   3. canonical forms: a Reshape (or Squeeze) from [N, d1, d2, …] to [N, d1·d2·…] becomes
//      Flatten(axis 1); ReduceMean over all spatial axes becomes GlobalAveragePool (+ Flatten when
//      keepdims = 0); Softmax-1/11 on the last axis loses its 2-D coercion.
//   4. fusions (option fuseBias, default on): Conv → Add(per-channel constant) becomes the Conv's
//      bias; MatMul(2-D, constant [K,N]) → Add(constant [N] or [1,N]) becomes Gemm. Optional
//      foldBatchNorm: Conv → BatchNormalization folds into the Conv's weight and bias (inference).
//   5. constants nobody reads any more are dropped.
//
// Anything outside this (an op, an attribute value, a data type) is an OnnxError naming the node,
// its op type and opset, and the supported ops.
//
// NOTE: exporters trace with one example input, often batch 1, and some bake it in (torch ≥ 2.9 writes
// Reshape(x, [1, 512])). Turning such a Reshape into Flatten(axis 1) is what makes the graph work for
// any batch size; a Reshape that survives keeps its literal target, batch entry included.
// NOTE: the normalizer does not restrict ranks: 1-D and 3-D pooling normalize like 2-D. What the
// engine's kernels can run is the importer's check.

import { DataType, dataTypeName } from './schema.js';
import {
  OnnxError,
  isFloatType,
  numel,
  pendingExternalTensors,
  type AttrValue,
  type OnnxGraph,
  type OnnxModel,
  type OnnxNode,
  type OnnxTensor,
  type TensorValues,
} from './reader.js';

// ---- public types ---------------------------------------------------------------------------------

/** A tensor dimension: a size, or a symbol for a size known only at run time. */
export type Dim = number | string;

export interface NormValue {
  name: string;
  /** ONNX DataType code (FLOAT = 1); 0 when unknown. */
  elemType: number;
  /** null when even the rank is unknown. */
  shape: Dim[] | null;
}

/** 'NOTSET': `pads` are authoritative. SAME_*: left only when the input size was unknown. */
export type AutoPad = 'NOTSET' | 'SAME_UPPER' | 'SAME_LOWER';

/** Sliding-window geometry, one entry per spatial axis (2 for images: [H, W]). */
export interface WindowAttrs {
  kernelShape: number[];
  strides: number[];
  dilations: number[];
  /** [begin_0, begin_1, …, end_0, end_1, …]: for 2-D, [top, left, bottom, right] (ONNX order). */
  pads: number[];
  autoPad: AutoPad;
}

export interface ConvAttrs extends WindowAttrs { group: number }
export interface PoolAttrs extends WindowAttrs {
  /** Output size rounds up (a window starting in the right padding is dropped). */
  ceilMode: boolean;
}
export interface AveragePoolAttrs extends PoolAttrs {
  /** NOTE: ONNX's default is false; torch and MXNet exports set it true. */
  countIncludePad: boolean;
}
export interface SoftmaxAttrs {
  axis: number;
  /**
   * Opset < 13 semantics: the input is viewed as 2-D [prod(dims[:axis]), prod(dims[axis:])] and the
   * softmax runs over the second dimension (many axes at once). false: over `axis` alone (opset ≥ 13).
   * Cleared when the two agree (axis is the last one).
   */
  coerce2d: boolean;
}

type NoAttrs = Record<string, never>;

/** The ops of the normalized graph and their attributes. */
export interface OpAttrs {
  Conv: ConvAttrs;
  MaxPool: PoolAttrs;
  AveragePool: AveragePoolAttrs;
  GlobalAveragePool: NoAttrs;
  /** Y = alpha · op(A) · op(B) + beta · C, op = transpose when trans*. */
  Gemm: { alpha: number; beta: number; transA: boolean; transB: boolean };
  MatMul: NoAttrs;
  Relu: NoAttrs;
  LeakyRelu: { alpha: number };
  Sigmoid: NoAttrs;
  Clip: { min: number; max: number };
  BatchNormalization: { epsilon: number; momentum: number };
  Add: NoAttrs;
  Sub: NoAttrs;
  Mul: NoAttrs;
  Div: NoAttrs;
  Sum: NoAttrs;
  Flatten: { axis: number };
  /** ONNX Reshape semantics: 0 copies the input dimension (unless allowzero), −1 is inferred. */
  Reshape: { shape: number[]; allowzero: boolean };
  Transpose: { perm: number[] | null };
  /** null: every dimension of size 1. */
  Squeeze: { axes: number[] | null };
  /** Axes in the OUTPUT, ascending. */
  Unsqueeze: { axes: number[] };
  Concat: { axis: number };
  /** Constant padding only; pads = [begin per axis…, end per axis…] over ALL axes. */
  Pad: { pads: number[]; value: number };
  /** Inference: identity. Kept so that an importer can rebuild the module for training. */
  Dropout: { ratio: number };
  Softmax: SoftmaxAttrs;
  LogSoftmax: SoftmaxAttrs;
  LRN: { size: number; alpha: number; beta: number; bias: number };
  /** Spatial axes only (a subset of 2…rank−1); all of them become GlobalAveragePool instead. */
  ReduceMean: { axes: number[]; keepdims: boolean };
  /** Only where a graph output is another value under a new name. */
  Identity: NoAttrs;
}

export type NormOp = keyof OpAttrs;

interface NodeBase {
  name: string;
  inputs: string[];
  outputs: string[];
  /** The ONNX op this node came from (ReduceMean for a GlobalAveragePool made from one). */
  onnxOp: string;
  /** The ONNX op version in effect: the newest version ≤ the model's default-domain opset. */
  version: number;
}

export type NormNode = { [K in NormOp]: NodeBase & { op: K; attrs: OpAttrs[K] } }[NormOp];

export interface NormGraph {
  name: string;
  /** Default-domain opset of the model. */
  opset: number;
  inputs: NormValue[];
  outputs: NormValue[];
  constants: Map<string, OnnxTensor>;
  nodes: NormNode[];
  values: Map<string, NormValue>;
}

export interface NormalizeOptions {
  /**
   * Freeze graph inputs to known values: they become constants and leave `inputs` (the ONNX backend
   * tests feed weights, shapes and axes as inputs; a real model has them as initializers).
   */
  bindInputs?: Map<string, OnnxTensor>;
  /** Override the declared shapes of graph inputs (e.g. a fixed batch size) for shape inference. */
  inputShapes?: Record<string, Dim[]>;
  /** Merge Conv→Add(bias) into Conv and MatMul→Add(bias) into Gemm. Default true. */
  fuseBias?: boolean;
  /** Fold Conv→BatchNormalization into the Conv (inference only: BN cannot train after). Default false. */
  foldBatchNorm?: boolean;
}

// ---- op versions ----------------------------------------------------------------------------------

/**
 * Versions of each supported op in the default domain (since_version of every revision). Revisions
 * from 19 on of the shape ops only add element types. Ops marked `foldOnly` must fold to constants.
 */
const OP_VERSIONS: Record<string, number[]> = {
  Conv: [1, 11, 22],
  Gemm: [1, 6, 7, 9, 11, 13],
  MatMul: [1, 9, 13],
  Relu: [1, 6, 13, 14],
  LeakyRelu: [1, 6, 16],
  Sigmoid: [1, 6, 13],
  Clip: [1, 6, 11, 12, 13],
  MaxPool: [1, 8, 10, 11, 12, 22],
  AveragePool: [1, 7, 10, 11, 19, 22],
  GlobalAveragePool: [1, 22],
  BatchNormalization: [1, 6, 7, 9, 14, 15],
  Add: [1, 6, 7, 13, 14],
  Sub: [1, 6, 7, 13, 14],
  Mul: [1, 6, 7, 13, 14],
  Div: [1, 6, 7, 13, 14],
  Sum: [1, 6, 8, 13],
  Flatten: [1, 9, 11, 13, 21, 23, 24, 25],
  Reshape: [1, 5, 13, 14, 19, 21, 23, 24, 25],
  Transpose: [1, 13, 21, 23, 24, 25],
  Squeeze: [1, 11, 13, 21, 23, 24, 25],
  Unsqueeze: [1, 11, 13, 21, 23, 24, 25],
  Concat: [1, 4, 11, 13],
  Pad: [1, 2, 11, 13, 18, 19, 21, 23, 24, 25],
  Dropout: [1, 6, 7, 10, 12, 13, 22],
  Softmax: [1, 11, 13],
  LogSoftmax: [1, 11, 13],
  LRN: [1, 13],
  Identity: [1, 13, 14, 16, 19, 21, 23, 24, 25],
  Constant: [1, 9, 11, 12, 13, 19, 21, 23, 24, 25],
  Shape: [1, 13, 15, 19, 21, 23, 24, 25],
  Gather: [1, 11, 13],
  ConstantOfShape: [9, 20, 21, 23, 24, 25],
  ReduceMean: [1, 11, 13, 18],
};

/** The list every "unsupported" error ends with. */
export const SUPPORTED_OPS = 'Conv, Gemm, MatMul, Relu, LeakyRelu, Sigmoid, Clip, MaxPool, AveragePool, ' +
  'GlobalAveragePool, BatchNormalization, Add, Sum, Mul, Sub, Div, Flatten, Reshape, Transpose, Squeeze, ' +
  'Unsqueeze, Concat, Pad (constant mode), Dropout, Softmax, LogSoftmax, LRN, Identity, Constant, ' +
  'ReduceMean (spatial axes), and Shape/Gather/ConstantOfShape where they fold to constants';

/** The newest version of `op` that is ≤ `opset`, or undefined when the op did not exist yet. */
export function opVersion(op: string, opset: number): number | undefined {
  const versions = OP_VERSIONS[op];
  if (!versions) return undefined;
  let v: number | undefined;
  for (const x of versions) if (x <= opset) v = x;
  return v;
}

// ---- entry point ----------------------------------------------------------------------------------

export function normalize(model: OnnxModel, opts: NormalizeOptions = {}): NormGraph {
  const opset = model.opsets.get('');
  if (opset === undefined) {
    throw new OnnxError(`the model imports no default-domain ONNX opset (it imports: ${[...model.opsets.keys()].join(', ') || 'none'}): ` +
      'it is not a standard ONNX model');
  }
  const pending = pendingExternalTensors(model);
  if (pending.length > 0) {
    throw new OnnxError(`tensor '${pending[0]!.name}' (and ${pending.length - 1} more) still has its data in ` +
      `'${pending[0]!.external!.location}': read the model with readModel(path) or call loadExternalData first`);
  }
  return new Normalizer(model.graph, opset, opts).run();
}

// ---- the normalizer ---------------------------------------------------------------------------------

/** A 1-D (or scalar) integer vector known only partly: the output of Shape on a symbolic shape. */
interface SymVec { values: Dim[]; scalar: boolean; origin: string }

class Normalizer {
  private readonly consts = new Map<string, OnnxTensor>();
  private readonly syms = new Map<string, SymVec>();
  private readonly values = new Map<string, NormValue>();
  /** Identity and no-op folding: value name -> the name it stands for. */
  private readonly alias = new Map<string, string>();
  private readonly nodes: NormNode[] = [];
  private readonly names = new Set<string>();
  /** Readers of each value among the live nodes (+1 per graph output). */
  private consumers = new Map<string, number>();
  /** Graph inputs that are sequences, optionals, maps: refused where a node reads them. */
  private readonly nonTensorInputs = new Map<string, string>();
  private fresh = 0;

  constructor(private readonly g: OnnxGraph, private readonly opset: number, private readonly opts: NormalizeOptions) {}

  run(): NormGraph {
    const bound = this.opts.bindInputs ?? new Map<string, OnnxTensor>();
    for (const [name, t] of this.g.initializers) this.setConst(name, t);
    for (const [name, t] of bound) this.setConst(name, { ...t, name });
    const inputs: NormValue[] = [];
    for (const vi of this.g.inputs) {
      if (bound.has(vi.name)) continue;
      const declared = this.opts.inputShapes?.[vi.name];
      const shape = declared ? [...declared] : vi.shape?.map((d) => d ?? this.freshDim()) ?? null;
      const v: NormValue = { name: vi.name, elemType: vi.elemType, shape };
      this.values.set(vi.name, v);
      inputs.push(v);
      if (vi.kind !== 'tensor') this.nonTensorInputs.set(vi.name, vi.kind);
    }

    const live = liveNodes(this.g, new Set([...this.g.initializers.keys(), ...bound.keys(), ...inputs.map((i) => i.name)]));
    this.consumers = countConsumers(live, this.g.outputs.map((o) => o.name));
    const fileIndex = new Map(this.g.nodes.map((n, i) => [n, i]));
    for (const n of live) this.visit(n, fileIndex.get(n)!);

    // Graph outputs: a folded or aliased output needs its own name back.
    const outputs: NormValue[] = [];
    for (const o of this.g.outputs) {
      const src = this.resolve(o.name);
      if (this.syms.has(src)) throw this.runtimeShapeError(this.syms.get(src)!, `graph output '${o.name}'`);
      const c = this.consts.get(src);
      if (c && src !== o.name) this.setConst(o.name, { ...c, name: o.name });
      else if (!c && src !== o.name) this.emitIdentity(src, o.name);
      const k = this.consts.get(o.name);
      const v: NormValue | undefined = k ? { name: o.name, elemType: k.dataType, shape: [...k.dims] } : this.values.get(o.name);
      const declared = o.shape?.map((d) => d ?? this.freshDim()) ?? null;
      outputs.push({ name: o.name, elemType: v?.elemType || o.elemType, shape: v?.shape ?? declared });
    }

    if (this.opts.fuseBias ?? true) fuseBiases(this.nodes, this.consts, this.values, outputs);
    if (this.opts.foldBatchNorm) foldBatchNorms(this.nodes, this.consts, outputs);

    // Keep only the constants something still reads.
    const read = new Set<string>(outputs.map((o) => o.name));
    for (const n of this.nodes) n.inputs.forEach((i) => read.add(i));
    const constants = new Map([...this.consts].filter(([name]) => read.has(name)));
    for (const n of this.nodes) n.outputs.forEach((o) => read.add(o));
    const values = new Map([...this.values].filter(([name]) => read.has(name)));
    for (const [name, t] of constants) values.set(name, { name, elemType: t.dataType, shape: [...t.dims] });
    return { name: this.g.name, opset: this.opset, inputs, outputs, constants, nodes: this.nodes, values };
  }

  // ---- per-node dispatch ---------------------------------------------------------------------------

  /** `index`: the node's position in the file, for naming unnamed nodes (Conv_12). */
  private visit(node: OnnxNode, index: number): void {
    const name = this.uniqueName(node.name || `${node.opType}_${index}`);
    const where = `node '${name}' (${node.domain ? `${node.domain}.` : ''}${node.opType}, opset ${this.opset})`;
    if (node.domain !== '') throw new OnnxError(`${where}: operators from domain '${node.domain}' are not supported. Supported: ${SUPPORTED_OPS}`);
    const version = opVersion(node.opType, this.opset);
    if (version === undefined) {
      const why = OP_VERSIONS[node.opType] ? `does not exist in opset ${this.opset}` : 'is not supported';
      throw new OnnxError(`${where}: op ${node.opType} ${why}. Supported: ${SUPPORTED_OPS}`);
    }
    for (const i of node.inputs) {
      const kind = this.nonTensorInputs.get(i);
      if (kind) throw new OnnxError(`${where}: input '${i}' has type ${kind}, not tensor. Supported: tensors only`);
    }
    const n = new NodeView(node, name, version, where, this);
    const handler = HANDLERS[node.opType];
    if (!handler) throw n.unsupported(`op ${node.opType} is not supported`);
    handler(n);
  }

  // ---- state used by the handlers --------------------------------------------------------------------

  resolve(name: string): string {
    let n = name;
    for (let a = this.alias.get(n); a !== undefined; a = this.alias.get(n)) n = a;
    return n;
  }

  const(name: string): OnnxTensor | undefined { return name ? this.consts.get(this.resolve(name)) : undefined; }
  sym(name: string): SymVec | undefined { return name ? this.syms.get(this.resolve(name)) : undefined; }

  /** Shape of a value, when known (constants: their dims). */
  shape(name: string): Dim[] | null {
    const r = this.resolve(name);
    const c = this.consts.get(r);
    if (c) return [...c.dims];
    const s = this.syms.get(r);
    if (s) return s.scalar ? [] : [s.values.length];
    return this.values.get(r)?.shape ?? null;
  }

  elemType(name: string): number {
    const r = this.resolve(name);
    return this.consts.get(r)?.dataType ?? (this.syms.has(r) ? DataType.INT64 : this.values.get(r)?.elemType ?? 0);
  }

  setConst(name: string, t: OnnxTensor): void { this.consts.set(name, t.name === name ? t : { ...t, name }); }
  setSym(name: string, s: SymVec): void { this.syms.set(name, s); }
  setAlias(name: string, target: string): void { this.alias.set(name, this.resolve(target)); }
  consumerCount(name: string): number { return this.consumers.get(name) ?? 0; }

  freshDim(): string { return `?${++this.fresh}`; }

  uniqueName(base: string): string {
    let name = base;
    for (let k = 1; this.names.has(name); k++) name = `${base}_${k}`;
    this.names.add(name);
    return name;
  }

  runtimeShapeError(s: SymVec, what: string): OnnxError {
    return new OnnxError(`${s.origin}: ${what} depends on the run-time shape [${s.values.join(', ')}], which wgtrain cannot ` +
      `compute ahead of time; export with a fixed input shape or without shape arithmetic. Supported: ${SUPPORTED_OPS}`);
  }

  /** Appends a node, checking its input types and inferring its output's shape. */
  emit<K extends NormOp>(view: NodeView, op: K, inputs: string[], attrs: OpAttrs[K], outputs = [view.node.outputs[0]!], name = view.name): void {
    for (const i of inputs) {
      const s = this.sym(i);
      if (s) throw this.runtimeShapeError(s, `${view.where}: input '${i}'`);
      const t = this.elemType(i);
      const c = this.const(i);
      const ok = c ? isFloatType(c.dataType) : t === 0 || t === DataType.FLOAT;
      if (!ok) throw view.unsupported(`input '${i}' has element type ${dataTypeName(t)}; wgtrain computes in float32 only`);
    }
    const node = { op, name, inputs, outputs, attrs, onnxOp: view.node.opType, version: view.version } as NormNode;
    const shape = inferShape(node, (v) => this.shape(v), () => this.freshDim(), view.where);
    this.values.set(outputs[0]!, { name: outputs[0]!, elemType: DataType.FLOAT, shape });
    this.nodes.push(node);
  }

  emitIdentity(from: string, to: string): void {
    const node: NormNode = { op: 'Identity', name: this.uniqueName(`Identity_${to}`), inputs: [from], outputs: [to], attrs: {}, onnxOp: 'Identity', version: opVersion('Identity', this.opset) ?? 1 };
    this.values.set(to, { name: to, elemType: this.elemType(from), shape: this.shape(from) });
    this.nodes.push(node);
  }
}

/** Nodes that contribute to a graph output, topologically sorted (file order kept when it is valid). */
function liveNodes(g: OnnxGraph, available: Set<string>): OnnxNode[] {
  const producer = new Map<string, number>();
  g.nodes.forEach((n, i) => {
    for (const o of n.outputs) {
      if (!o) continue;
      if (producer.has(o) || available.has(o)) {
        throw new OnnxError(`value '${o}' is produced twice (by node '${n.name || n.opType}' and another node or an input): the graph is malformed`);
      }
      producer.set(o, i);
    }
  });
  const describe = (i: number) => `node '${g.nodes[i]!.name || `#${i}`}' (${g.nodes[i]!.opType})`;
  const live = new Set<number>();
  const stack: number[] = [];
  const need = (v: string, by: string) => {
    if (!v || available.has(v)) return;
    const p = producer.get(v);
    if (p === undefined) {
      throw new OnnxError(`${by} reads '${v}', which no node, graph input or initializer provides: the graph is incomplete`);
    }
    if (!live.has(p)) { live.add(p); stack.push(p); }
  };
  for (const o of g.outputs) need(o.name, `graph output '${o.name}'`);
  while (stack.length) {
    const i = stack.pop()!;
    for (const v of g.nodes[i]!.inputs) need(v, describe(i));
  }
  const order = [...live].sort((a, b) => a - b);
  // Kahn's algorithm, always taking the earliest ready node in file order.
  const indeg = new Map<number, number>();
  const users = new Map<number, number[]>();
  for (const i of order) {
    const deps = new Set(g.nodes[i]!.inputs.filter((v) => v && !available.has(v)).map((v) => producer.get(v)!));
    indeg.set(i, deps.size);
    for (const d of deps) users.set(d, [...(users.get(d) ?? []), i]);
  }
  const ready = order.filter((i) => indeg.get(i) === 0);
  const sorted: OnnxNode[] = [];
  while (ready.length) {
    const i = ready.shift()!;
    sorted.push(g.nodes[i]!);
    for (const u of users.get(i) ?? []) {
      const d = indeg.get(u)! - 1;
      indeg.set(u, d);
      if (d === 0) {
        let at = ready.findIndex((r) => r > u);
        if (at < 0) at = ready.length;
        ready.splice(at, 0, u);
      }
    }
  }
  if (sorted.length < order.length) {
    const stuck = order.filter((i) => indeg.get(i)! > 0).slice(0, 5).map(describe);
    throw new OnnxError(`the graph has a cycle (through ${stuck.join(', ')}): ONNX graphs must be acyclic`);
  }
  return sorted;
}

function countConsumers(nodes: OnnxNode[], graphOutputs: string[]): Map<string, number> {
  const c = new Map<string, number>();
  const add = (v: string) => { if (v) c.set(v, (c.get(v) ?? 0) + 1); };
  nodes.forEach((n) => n.inputs.forEach(add));
  graphOutputs.forEach(add);
  return c;
}

// ---- a node being converted: attribute and input access with good errors -------------------------------

class NodeView {
  constructor(
    readonly node: OnnxNode,
    readonly name: string,
    readonly version: number,
    readonly where: string,
    readonly ctx: Normalizer,
  ) {}

  unsupported(what: string): OnnxError {
    return new OnnxError(`${this.where}: ${what}. Supported: ${SUPPORTED_OPS}`);
  }

  malformed(what: string): OnnxError {
    return new OnnxError(`${this.where}: ${what}: the model is malformed`);
  }

  /** Resolved name of input i ('' when absent). */
  input(i: number): string {
    const v = this.node.inputs[i] ?? '';
    return v ? this.ctx.resolve(v) : '';
  }

  requireInput(i: number, what: string): string {
    const v = this.input(i);
    if (!v) throw this.malformed(`${what} (input ${i}) is missing`);
    return v;
  }

  get output(): string { return this.node.outputs[0]!; }

  /** Extra outputs (MaxPool Indices, Dropout mask, BN running stats) are fine only when nothing reads them. */
  onlyFirstOutputUsed(what: string): void {
    for (const o of this.node.outputs.slice(1)) {
      if (o && this.ctx.consumerCount(o) > 0) throw this.unsupported(`its ${what} output '${o}' is used`);
    }
  }

  private attr(name: string): AttrValue | undefined { return this.node.attrs[name]; }

  int(name: string, def: number): number {
    const a = this.attr(name);
    if (a === undefined) return def;
    if (a.type !== 'int') throw this.malformed(`attribute ${name} should be an int, not ${a.type}`);
    return a.value;
  }

  float(name: string, def: number): number {
    const a = this.attr(name);
    if (a === undefined) return def;
    if (a.type === 'float' || a.type === 'int') return a.value;
    throw this.malformed(`attribute ${name} should be a float, not ${a.type}`);
  }

  ints(name: string): number[] | undefined {
    const a = this.attr(name);
    if (a === undefined) return undefined;
    if (a.type !== 'ints') throw this.malformed(`attribute ${name} should be a list of ints, not ${a.type}`);
    return [...a.value];
  }

  string(name: string, def: string): string {
    const a = this.attr(name);
    if (a === undefined) return def;
    if (a.type !== 'string') throw this.malformed(`attribute ${name} should be a string, not ${a.type}`);
    return a.value;
  }

  has(name: string): boolean { return this.attr(name) !== undefined; }

  /** A constant input (i) that this op reads as an attribute; undefined when the input is absent. */
  constInput(i: number, what: string): OnnxTensor | undefined {
    const v = this.input(i);
    if (!v) return undefined;
    const c = this.ctx.const(v);
    if (c) return c;
    const s = this.ctx.sym(v);
    if (s) throw this.ctx.runtimeShapeError(s, `${this.where}: ${what} '${v}'`);
    throw this.unsupported(`${what} (input ${i} '${v}') must be a constant (an initializer or a Constant node), ` +
      'not computed at run time');
  }

  constInts(i: number, what: string): number[] | undefined {
    const c = this.constInput(i, what);
    if (!c) return undefined;
    if (isFloatType(c.dataType)) throw this.malformed(`${what} should be integers, not ${dataTypeName(c.dataType)}`);
    return Array.from(c.data as ArrayLike<number>);
  }

  constScalar(i: number, what: string): number | undefined {
    const c = this.constInput(i, what);
    if (!c) return undefined;
    if (c.data.length !== 1) throw this.malformed(`${what} should be a scalar, has ${c.data.length} values`);
    return (c.data as ArrayLike<number>)[0]!;
  }

  rank(i: number): number | undefined {
    const v = this.input(i);
    return v ? this.ctx.shape(v)?.length : undefined;
  }

  emit<K extends NormOp>(op: K, inputs: string[], attrs: OpAttrs[K]): void {
    this.ctx.emit(this, op, inputs, attrs);
  }

  /** Replaces this node's output by a constant. */
  fold(t: Omit<OnnxTensor, 'name'>): void {
    this.ctx.setConst(this.output, { ...t, name: this.output });
  }
}

// ---- handlers, one per ONNX op -----------------------------------------------------------------------

type Handler = (n: NodeView) => void;

const HANDLERS: Record<string, Handler> = {
  Constant(n) {
    const keys = Object.keys(n.node.attrs);
    const one = (k: string) => n.node.attrs[k]!;
    if (keys.length !== 1) throw n.malformed(`expected exactly one value attribute, got [${keys.join(', ')}]`);
    const a = one(keys[0]!);
    switch (keys[0]) {
      case 'value':
        if (a.type !== 'tensor') throw n.malformed('attribute value should be a tensor');
        return n.fold(a.value);
      case 'value_float': return n.fold({ dims: [], dataType: DataType.FLOAT, data: Float32Array.of(n.float('value_float', 0)) });
      case 'value_floats': {
        if (a.type !== 'floats') throw n.malformed('attribute value_floats should be floats');
        return n.fold({ dims: [a.value.length], dataType: DataType.FLOAT, data: Float32Array.from(a.value) });
      }
      case 'value_int': return n.fold({ dims: [], dataType: DataType.INT64, data: [n.int('value_int', 0)] });
      case 'value_ints': {
        const v = n.ints('value_ints')!;
        return n.fold({ dims: [v.length], dataType: DataType.INT64, data: v });
      }
      default: throw n.unsupported(`a Constant given by attribute ${keys[0]} is not supported (only numeric tensors)`);
    }
  },

  Identity(n) {
    n.ctx.setAlias(n.output, n.requireInput(0, 'input'));
  },

  Shape(n) {
    const x = n.requireInput(0, 'data');
    const shape = n.ctx.shape(x);
    if (!shape) throw n.unsupported(`the rank of '${x}' is unknown, so its Shape cannot be folded (Shape is supported only where it folds)`);
    const r = shape.length;
    const clampAxis = (a: number) => Math.min(Math.max(a < 0 ? a + r : a, 0), r);
    const start = clampAxis(n.int('start', 0));
    const end = clampAxis(n.int('end', r));
    const values = shape.slice(start, Math.max(start, end));
    if (values.every((d) => typeof d === 'number')) {
      return n.fold({ dims: [values.length], dataType: DataType.INT64, data: values as number[] });
    }
    n.ctx.setSym(n.output, { values, scalar: false, origin: n.where });
  },

  Gather(n) {
    const data = n.requireInput(0, 'data');
    const indices = n.constInts(1, 'indices');
    if (!indices) throw n.malformed('indices (input 1) are missing');
    const idxShape = n.ctx.const(n.input(1))!.dims;
    const axis = n.int('axis', 0);
    const c = n.ctx.const(data);
    if (c) return n.fold(gatherConst(c, indices, idxShape, axis, n));
    const s = n.ctx.sym(data);
    if (s && !s.scalar && (axis === 0 || axis === -1) && idxShape.length <= 1) {
      const len = s.values.length;
      const values = indices.map((i) => {
        const j = i < 0 ? i + len : i;
        if (j < 0 || j >= len) throw n.malformed(`index ${i} is out of range for length ${len}`);
        return s.values[j]!;
      });
      if (values.every((d) => typeof d === 'number')) {
        return n.fold({ dims: [...idxShape], dataType: DataType.INT64, data: values as number[] });
      }
      return n.ctx.setSym(n.output, { values, scalar: idxShape.length === 0, origin: s.origin });
    }
    throw n.unsupported('Gather is supported only where its data is a constant (or a shape), so that it folds away');
  },

  ConstantOfShape(n) {
    const dims = n.constInts(0, 'shape');
    if (!dims) throw n.malformed('shape (input 0) is missing');
    const a = n.node.attrs.value;
    let dataType: number = DataType.FLOAT;
    let v = 0;
    if (a) {
      if (a.type !== 'tensor' || a.value.data.length !== 1) throw n.malformed('attribute value should be a one-element tensor');
      dataType = a.value.dataType;
      v = (a.value.data as ArrayLike<number>)[0]!;
    }
    n.fold(filled(dims, dataType, v));
  },

  Unsqueeze(n) {
    const x = n.requireInput(0, 'data');
    const axesIn = n.version >= 13 ? n.constInts(1, 'axes') : n.ints('axes');
    if (!axesIn) throw n.malformed('axes are missing');
    const rank = n.ctx.shape(x)?.length;
    const axes = rank === undefined ? axesIn : normAxes(axesIn, rank + axesIn.length, n).sort((a, b) => a - b);
    const c = n.ctx.const(x);
    if (c) return n.fold({ ...c, dims: unsqueezeDims(c.dims, axes) as number[] });
    const s = n.ctx.sym(x);
    if (s && s.scalar && axes.length === 1 && axes[0] === 0) return n.ctx.setSym(n.output, { ...s, scalar: false });
    n.emit('Unsqueeze', [x], { axes });
  },

  Squeeze(n) {
    const x = n.requireInput(0, 'data');
    const axesIn = n.version >= 13 ? n.constInts(1, 'axes') : n.ints('axes');
    const shape = n.ctx.shape(x);
    const axes = axesIn && shape ? normAxes(axesIn, shape.length, n).sort((a, b) => a - b) : axesIn ?? null;
    const c = n.ctx.const(x);
    if (c) return n.fold({ ...c, dims: squeezeDims(c.dims, axes) as number[] });
    const s = n.ctx.sym(x);
    if (s && !s.scalar && s.values.length === 1) return n.ctx.setSym(n.output, { ...s, scalar: true });
    if (shape && shape.length >= 2 && isFlattenOf(shape, squeezeDims(shape, axes))) return n.emit('Flatten', [x], { axis: 1 });
    n.emit('Squeeze', [x], { axes });
  },

  Concat(n) {
    const ins = n.node.inputs.map((_, i) => n.input(i)).filter((v) => v);
    const axisIn = n.int('axis', n.version < 4 ? 1 : NaN);
    if (Number.isNaN(axisIn)) throw n.malformed('attribute axis is required');
    const rank = n.ctx.shape(ins[0]!)?.length;
    const axis = rank === undefined ? axisIn : normAxis(axisIn, rank, n);
    const consts = ins.map((i) => n.ctx.const(i));
    if (consts.every((c) => c)) return n.fold(concatConst(consts as OnnxTensor[], axis, n));
    // A shape vector assembled from pieces, some symbolic.
    if (ins.every((i) => n.ctx.sym(i) || n.ctx.const(i)?.dims.length === 1) && ins.some((i) => n.ctx.sym(i))) {
      const values: Dim[] = [];
      let origin = '';
      for (const i of ins) {
        const s = n.ctx.sym(i);
        if (s) { values.push(...s.values); origin ||= s.origin; } else values.push(...(n.ctx.const(i)!.data as number[]));
      }
      return n.ctx.setSym(n.output, { values, scalar: false, origin });
    }
    n.emit('Concat', ins, { axis });
  },

  Reshape(n) {
    const x = n.requireInput(0, 'data');
    const allowzero = n.int('allowzero', 0) !== 0;
    let spec: number[];
    if (n.version < 5) {
      spec = n.ints('shape') ?? [];
    } else {
      const s = n.ctx.sym(n.input(1));
      spec = s ? symbolicReshapeTarget(s, n.ctx.shape(x), allowzero, n) : n.constInts(1, 'shape') ?? [];
    }
    const c = n.ctx.const(x);
    if (c) return n.fold({ ...c, dims: reshapeDims(c.dims, spec, allowzero, () => '?', n.where) as number[] });
    const inShape = n.ctx.shape(x);
    if (inShape && inShape.length >= 2) {
      const out = reshapeDims(inShape, spec, allowzero, () => n.ctx.freshDim(), n.where);
      if (isFlattenOf(inShape, out)) return n.emit('Flatten', [x], { axis: 1 });
    }
    n.emit('Reshape', [x], { shape: spec, allowzero });
  },

  Flatten(n) {
    const x = n.requireInput(0, 'input');
    const rank = n.ctx.shape(x)?.length;
    const axisIn = n.int('axis', 1);
    const axis = rank === undefined ? axisIn : axisIn < 0 ? axisIn + rank : axisIn;
    if (rank !== undefined && (axis < 0 || axis > rank)) throw n.malformed(`axis ${axisIn} is out of range for rank ${rank}`);
    const c = n.ctx.const(x);
    if (c) return n.fold({ ...c, dims: [numel(c.dims.slice(0, axis)), numel(c.dims.slice(axis))] });
    n.emit('Flatten', [x], { axis });
  },

  Transpose(n) {
    const x = n.requireInput(0, 'data');
    const rank = n.ctx.shape(x)?.length;
    const permIn = n.ints('perm');
    const perm = permIn ?? (rank === undefined ? null : Array.from({ length: rank }, (_, i) => rank - 1 - i));
    if (perm && rank !== undefined && (perm.length !== rank || [...perm].sort((a, b) => a - b).some((p, i) => p !== i))) {
      throw n.malformed(`perm [${perm}] is not a permutation of ${rank} axes`);
    }
    const c = n.ctx.const(x);
    if (c && perm) return n.fold(transposeConst(c, perm));
    n.emit('Transpose', [x], { perm });
  },

  Add: (n) => binary(n, 'Add'),
  Sub: (n) => binary(n, 'Sub'),
  Mul: (n) => binary(n, 'Mul'),
  Div: (n) => binary(n, 'Div'),

  Sum(n) {
    const ins = n.node.inputs.map((_, i) => n.input(i)).filter((v) => v);
    const consts = ins.map((i) => n.ctx.const(i));
    if (consts.every((c) => c)) return n.fold((consts as OnnxTensor[]).reduce((a, b) => ({ ...elementwiseConst('Add', a, b, n), name: '' })));
    n.emit('Sum', ins, {});
  },

  Conv(n) {
    const x = n.requireInput(0, 'X');
    const w = n.requireInput(1, 'W');
    const b = n.input(2);
    const wShape = n.ctx.shape(w);
    const k = n.ints('kernel_shape') ?? wShape?.slice(2);
    if (!k || k.some((d) => typeof d !== 'number')) throw n.unsupported('the kernel size is unknown (no kernel_shape and W has no static shape)');
    const win = windowAttrs(n, k as number[], n.ctx.shape(x));
    n.emit('Conv', b ? [x, w, b] : [x, w], { ...win, group: n.int('group', 1) });
  },

  MaxPool(n) {
    n.onlyFirstOutputUsed('Indices');
    const x = n.requireInput(0, 'X');
    const k = n.ints('kernel_shape');
    if (!k) throw n.malformed('attribute kernel_shape is required');
    if (n.int('storage_order', 0) !== 0) throw n.unsupported('storage_order 1 (column-major indices) is not supported');
    n.emit('MaxPool', [x], { ...windowAttrs(n, k, n.ctx.shape(x)), ceilMode: n.int('ceil_mode', 0) !== 0 });
  },

  AveragePool(n) {
    const x = n.requireInput(0, 'X');
    const k = n.ints('kernel_shape');
    if (!k) throw n.malformed('attribute kernel_shape is required');
    n.emit('AveragePool', [x], {
      ...windowAttrs(n, k, n.ctx.shape(x)),
      ceilMode: n.int('ceil_mode', 0) !== 0,
      countIncludePad: n.int('count_include_pad', 0) !== 0,
    });
  },

  GlobalAveragePool(n) {
    n.emit('GlobalAveragePool', [n.requireInput(0, 'X')], {});
  },

  Gemm(n) {
    const a = n.requireInput(0, 'A');
    const b = n.requireInput(1, 'B');
    const c = n.input(2);
    n.emit('Gemm', c ? [a, b, c] : [a, b], {
      alpha: n.float('alpha', 1),
      beta: n.float('beta', 1),
      transA: n.int('transA', 0) !== 0,
      transB: n.int('transB', 0) !== 0,
    });
  },

  MatMul(n) {
    n.emit('MatMul', [n.requireInput(0, 'A'), n.requireInput(1, 'B')], {});
  },

  Relu: (n) => n.emit('Relu', [n.requireInput(0, 'X')], {}),
  Sigmoid: (n) => n.emit('Sigmoid', [n.requireInput(0, 'X')], {}),
  LeakyRelu: (n) => n.emit('LeakyRelu', [n.requireInput(0, 'X')], { alpha: n.float('alpha', 0.01) }),

  Clip(n) {
    const x = n.requireInput(0, 'input');
    // Clip-1/6: attributes; Clip-11+: optional inputs (absent = unbounded).
    const min = n.version < 11 ? n.float('min', -Infinity) : n.constScalar(1, 'min') ?? -Infinity;
    const max = n.version < 11 ? n.float('max', Infinity) : n.constScalar(2, 'max') ?? Infinity;
    n.emit('Clip', [x], { min, max });
  },

  BatchNormalization(n) {
    const ins = [0, 1, 2, 3, 4].map((i) => n.requireInput(i, ['X', 'scale', 'B', 'mean', 'var'][i]!));
    if (n.version >= 14 && n.int('training_mode', 0) !== 0) {
      throw n.unsupported('training_mode = 1 (batch statistics in the graph) is not supported; export the model in eval mode');
    }
    if (n.version < 9 && n.int('spatial', 1) === 0) throw n.unsupported('spatial = 0 (per-activation statistics) is not supported');
    // NOTE: BN-1/6 also have is_test; with is_test = 0 the extra outputs are running statistics. We
    // compute inference semantics either way and refuse only when those outputs are read.
    n.onlyFirstOutputUsed('running-statistics');
    n.emit('BatchNormalization', ins, { epsilon: n.float('epsilon', 1e-5), momentum: n.float('momentum', 0.9) });
  },

  Dropout(n) {
    n.onlyFirstOutputUsed('mask');
    const x = n.requireInput(0, 'data');
    const ratio = n.version < 12 ? n.float('ratio', 0.5) : n.constScalar(1, 'ratio') ?? 0.5;
    const training = n.version >= 12 ? n.constScalar(2, 'training_mode') ?? 0 : 0;
    if (training !== 0) throw n.unsupported('training_mode = true (random output at inference) is not supported');
    if (n.ctx.const(x)) return n.ctx.setAlias(n.output, x);
    n.emit('Dropout', [x], { ratio });
  },

  Softmax: (n) => softmax(n, 'Softmax'),
  LogSoftmax: (n) => softmax(n, 'LogSoftmax'),

  LRN(n) {
    const size = n.int('size', 0);
    if (size <= 0) throw n.malformed('attribute size is required');
    n.emit('LRN', [n.requireInput(0, 'X')], { size, alpha: n.float('alpha', 1e-4), beta: n.float('beta', 0.75), bias: n.float('bias', 1) });
  },

  Pad(n) {
    const x = n.requireInput(0, 'data');
    const mode = n.string('mode', 'constant');
    if (mode !== 'constant') throw n.unsupported(`mode '${mode}' is not supported (only 'constant')`);
    let pads: number[] | undefined;
    let value: number;
    if (n.version < 11) {
      pads = n.ints(n.version < 2 ? 'paddings' : 'pads');
      value = n.float('value', 0);
    } else {
      pads = n.constInts(1, 'pads');
      value = n.constScalar(2, 'constant_value') ?? 0;
      const axes = n.version >= 18 ? n.constInts(3, 'axes') : undefined;
      if (axes && pads) {
        // Pad-18: pads cover only `axes`; expand to every axis.
        const rank = n.rank(0);
        if (rank === undefined) throw n.unsupported('Pad with axes needs the input rank, which is unknown');
        const ax = normAxes(axes, rank, n);
        const full = new Array<number>(2 * rank).fill(0);
        ax.forEach((a, i) => { full[a] = pads![i]!; full[a + rank] = pads![i + ax.length]!; });
        pads = full;
      }
    }
    if (!pads) throw n.malformed('pads are missing');
    const rank = n.rank(0);
    if (rank !== undefined && pads.length !== 2 * rank) throw n.malformed(`pads has ${pads.length} entries for rank ${rank}`);
    if (pads.some((p) => p < 0)) throw n.unsupported(`negative pads [${pads}] (cropping) are not supported`);
    n.emit('Pad', [x], { pads, value });
  },

  ReduceMean(n) {
    const x = n.requireInput(0, 'data');
    const keepdims = n.int('keepdims', 1) !== 0;
    const axesIn = n.version >= 18 ? n.constInts(1, 'axes') : n.ints('axes');
    const rank = n.rank(0);
    if (rank === undefined) throw n.unsupported('ReduceMean needs the input rank, which is unknown');
    if (!axesIn || axesIn.length === 0) {
      if (n.version >= 18 && n.int('noop_with_empty_axes', 0) !== 0) return n.ctx.setAlias(n.output, x);
      throw n.unsupported('ReduceMean over all axes is not supported (only spatial axes)');
    }
    const axes = normAxes(axesIn, rank, n).sort((a, b) => a - b);
    if (rank < 3 || axes.some((a) => a < 2)) {
      throw n.unsupported(`ReduceMean over axes [${axesIn}] of a rank-${rank} tensor is not supported (only spatial axes 2…${rank - 1})`);
    }
    if (axes.length === rank - 2) {
      // Mean over every spatial axis = global average pooling (torch ≥ 2.9 exports adaptive_avg_pool2d(1) so).
      if (keepdims) return n.emit('GlobalAveragePool', [x], {});
      const pooled = n.ctx.uniqueName(`${n.output}_gap`);
      n.ctx.emit(n, 'GlobalAveragePool', [x], {}, [pooled], n.ctx.uniqueName(`${n.name}_gap`));
      return n.emit('Flatten', [pooled], { axis: 1 });
    }
    n.emit('ReduceMean', [x], { axes, keepdims });
  },
};

function binary(n: NodeView, op: 'Add' | 'Sub' | 'Mul' | 'Div'): void {
  const a = n.requireInput(0, 'A');
  let b = n.requireInput(1, 'B');
  const ca = n.ctx.const(a);
  let cb = n.ctx.const(b);
  // Opset < 7: broadcasting only when broadcast = 1, B aligned to A at `axis` (default: trailing).
  if (n.version < 7 && n.int('broadcast', 0) !== 0 && n.has('axis')) {
    const ra = n.rank(0);
    if (!cb || ra === undefined) throw n.unsupported('legacy broadcasting (broadcast = 1 with axis) needs a constant B and a known rank of A');
    const axis = normAxis(n.int('axis', 0), ra, n);
    const dims = [...cb.dims, ...new Array<number>(ra - axis - cb.dims.length).fill(1)];
    cb = { ...cb, name: n.ctx.uniqueName(`${b}_bcast`), dims };
    n.ctx.setConst(cb.name, cb);
    b = cb.name;
  }
  if (ca && cb) return n.fold(elementwiseConst(op, ca, cb, n));
  n.emit(op, [a, b], {});
}

function softmax(n: NodeView, op: 'Softmax' | 'LogSoftmax'): void {
  const x = n.requireInput(0, 'input');
  const coerce = n.version < 13;
  const axisIn = n.int('axis', coerce ? 1 : -1);
  const rank = n.rank(0);
  const axis = rank === undefined ? axisIn : normAxis(axisIn, rank, n);
  // Coercing to 2-D at the last axis is the same as a softmax over that axis.
  n.emit(op, [x], { axis, coerce2d: coerce && !(rank !== undefined && axis === rank - 1) });
}

/** Kernel geometry with defaults, and auto_pad resolved to explicit pads when the input size is known. */
function windowAttrs(n: NodeView, kernelShape: number[], xShape: Dim[] | null): WindowAttrs {
  const sp = kernelShape.length;
  const ones = () => new Array<number>(sp).fill(1);
  const strides = n.ints('strides') ?? ones();
  const dilations = n.ints('dilations') ?? ones();
  let pads = n.ints('pads') ?? new Array<number>(2 * sp).fill(0);
  if (strides.length !== sp || dilations.length !== sp || pads.length !== 2 * sp) {
    throw n.malformed(`kernel_shape [${kernelShape}], strides [${strides}], dilations [${dilations}] and pads [${pads}] disagree on the number of spatial axes`);
  }
  const mode = n.string('auto_pad', 'NOTSET');
  if (mode === 'VALID') return { kernelShape, strides, dilations, pads: new Array<number>(2 * sp).fill(0), autoPad: 'NOTSET' };
  if (mode === 'NOTSET') return { kernelShape, strides, dilations, pads, autoPad: 'NOTSET' };
  if (mode !== 'SAME_UPPER' && mode !== 'SAME_LOWER') throw n.malformed(`auto_pad '${mode}' is not an ONNX value`);
  const spatial = xShape?.slice(2);
  if (!spatial || spatial.length !== sp || spatial.some((d) => typeof d !== 'number')) {
    return { kernelShape, strides, dilations, pads: new Array<number>(2 * sp).fill(0), autoPad: mode };
  }
  pads = samePads(spatial as number[], kernelShape, strides, dilations, mode === 'SAME_UPPER');
  return { kernelShape, strides, dilations, pads, autoPad: 'NOTSET' };
}

/**
 * auto_pad SAME: out = ⌈in / s⌉; total pad = max(0, (out − 1)·s + (k − 1)·d + 1 − in); the odd pixel
 * goes at the end for SAME_UPPER, at the start for SAME_LOWER.
 */
export function samePads(inSize: number[], k: number[], s: number[], d: number[], upper: boolean): number[] {
  const sp = inSize.length;
  const pads = new Array<number>(2 * sp).fill(0);
  for (let i = 0; i < sp; i++) {
    const out = Math.ceil(inSize[i]! / s[i]!);
    const total = Math.max(0, (out - 1) * s[i]! + (k[i]! - 1) * d[i]! + 1 - inSize[i]!);
    const small = Math.floor(total / 2);
    pads[i] = upper ? small : total - small;
    pads[i + sp] = total - pads[i]!;
  }
  return pads;
}

// ---- axes and dims -------------------------------------------------------------------------------

function normAxis(axis: number, rank: number, n: NodeView): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw n.malformed(`axis ${axis} is out of range for rank ${rank}`);
  return a;
}

function normAxes(axes: number[], rank: number, n: NodeView): number[] {
  const out = axes.map((a) => normAxis(a, rank, n));
  if (new Set(out).size !== out.length) throw n.malformed(`axes [${axes}] repeat an axis`);
  return out;
}

function unsqueezeDims(dims: readonly Dim[], axes: number[]): Dim[] {
  const out = [...dims];
  for (const a of [...axes].sort((x, y) => x - y)) out.splice(a, 0, 1);
  return out;
}

function squeezeDims(dims: readonly Dim[], axes: number[] | null): Dim[] {
  return dims.filter((d, i) => (axes ? !axes.includes(i) : d !== 1));
}

/** True when `out` is `shape` flattened after its first axis: [d0, d1·d2·…]. */
function isFlattenOf(shape: Dim[], out: Dim[]): boolean {
  if (out.length !== 2 || out[0] !== shape[0]) return false;
  const rest = shape.slice(1);
  if (rest.every((d) => typeof d === 'number')) return out[1] === numel(rest as number[]);
  // Symbolic: equal only if it is the same single symbol (times ones).
  const syms = rest.filter((d) => d !== 1);
  return syms.length === 1 && out[1] === syms[0];
}

/** Product of dims: a number, the single symbol when the rest are 1s, else a new unknown. */
function dimProduct(dims: Dim[], fresh: () => string): Dim {
  const notOne = dims.filter((d) => d !== 1);
  if (notOne.every((d) => typeof d === 'number')) return numel(notOne as number[]);
  return notOne.length === 1 ? notOne[0]! : fresh();
}

/**
 * Reshape output dims. Target entries: > 0 as given; 0 copies the input dim (unless allowzero); −1 is
 * whatever remains. Symbols cancel when the same symbol is on both sides (input [N,512,1,1],
 * target [0,−1] gives [N,512]).
 */
function reshapeDims(inDims: Dim[], spec: number[], allowzero: boolean, fresh: () => string, where: string): Dim[] {
  const out: Dim[] = spec.map((s, i) => (s === 0 && !allowzero ? inDims[i] ?? fresh() : s));
  const minus = spec.indexOf(-1);
  if (minus < 0) return out;
  if (spec.lastIndexOf(-1) !== minus) throw new OnnxError(`${where}: Reshape target [${spec}] has two −1 entries: the model is malformed`);
  const symsIn = inDims.filter((d): d is string => typeof d === 'string');
  const numIn = numel(inDims.filter((d): d is number => typeof d === 'number'));
  let numOut = 1;
  const symsOut: string[] = [];
  out.forEach((d, i) => {
    if (i === minus) return;
    if (typeof d === 'number') numOut *= d;
    else symsOut.push(d);
  });
  for (const s of [...symsOut]) {
    const j = symsIn.indexOf(s);
    if (j >= 0) { symsIn.splice(j, 1); symsOut.splice(symsOut.indexOf(s), 1); }
  }
  if (symsOut.length > 0) out[minus] = fresh();
  else if (symsIn.length === 0) {
    if (numOut === 0 || numIn % numOut !== 0) throw new OnnxError(`${where}: cannot reshape [${inDims}] to [${spec}]: the model is malformed`);
    out[minus] = numIn / numOut;
  } else if (symsIn.length === 1 && numIn === numOut) out[minus] = symsIn[0]!;
  else out[minus] = fresh();
  return out;
}

/**
 * A Reshape target computed from a partly symbolic shape vector: an entry equal to the same input
 * dimension becomes 0 ("copy"), a single remaining unknown becomes −1.
 */
function symbolicReshapeTarget(s: SymVec, inShape: Dim[] | null, allowzero: boolean, n: NodeView): number[] {
  let unknown = 0;
  const spec = s.values.map((d, i) => {
    if (typeof d === 'number') return d;
    if (!allowzero && inShape?.[i] === d) return 0;
    unknown++;
    return -1;
  });
  if (unknown > 1 || (unknown === 1 && s.values.filter((d) => d === -1).length > 0)) {
    throw n.ctx.runtimeShapeError(s, `${n.where}: the Reshape target`);
  }
  return spec;
}

// ---- shape inference ---------------------------------------------------------------------------------

function broadcastShapes(shapes: (Dim[] | null)[], fresh: () => string, where: string): Dim[] | null {
  if (shapes.some((s) => s === null)) return null;
  const rank = Math.max(...shapes.map((s) => s!.length));
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    let d: Dim = 1;
    for (const s of shapes as Dim[][]) {
      const e = s[i - rank + s.length] ?? 1;
      if (e === 1 || e === d) continue;
      if (d === 1) d = e;
      else if (typeof d === 'number' && typeof e === 'number') {
        throw new OnnxError(`${where}: shapes ${shapes.map((x) => `[${x}]`).join(' and ')} do not broadcast: the model is malformed`);
      } else if (typeof d !== 'number') d = typeof e === 'number' ? e : fresh();
    }
    out.push(d);
  }
  return out;
}

/** Output size of a sliding window along one axis (floor or ceil mode, ONNX / PyTorch rule). */
function windowOut(size: Dim, k: number, s: number, d: number, pb: number, pe: number, ceil: boolean, fresh: () => string): Dim {
  if (typeof size !== 'number') return fresh();
  const span = size + pb + pe - ((k - 1) * d + 1);
  if (!ceil) return Math.floor(span / s) + 1;
  let out = Math.ceil(span / s) + 1;
  // NOTE: the last window must start inside the input or its left padding.
  if ((out - 1) * s >= size + pb) out--;
  return out;
}

/** Output shape of a normalized node, from its inputs' shapes. */
function inferShape(node: NormNode, shapeOf: (v: string) => Dim[] | null, fresh: () => string, where: string): Dim[] | null {
  const x = shapeOf(node.inputs[0]!);
  switch (node.op) {
    case 'Relu': case 'LeakyRelu': case 'Sigmoid': case 'Clip': case 'BatchNormalization': case 'Dropout':
    case 'Softmax': case 'LogSoftmax': case 'LRN': case 'Identity':
      return x;
    case 'Add': case 'Sub': case 'Mul': case 'Div': case 'Sum':
      return broadcastShapes(node.inputs.map(shapeOf), fresh, where);
    case 'Conv': case 'MaxPool': case 'AveragePool': {
      if (!x) return null;
      const a = node.attrs;
      const sp = a.kernelShape.length;
      const ceil = node.op !== 'Conv' && node.attrs.ceilMode;
      const channels = node.op === 'Conv' ? shapeOf(node.inputs[1]!)?.[0] ?? fresh() : x[1]!;
      const spatial = x.slice(2).map((d, i) => {
        if (a.autoPad !== 'NOTSET') return typeof d === 'number' ? Math.ceil(d / a.strides[i]!) : fresh();
        return windowOut(d, a.kernelShape[i]!, a.strides[i]!, a.dilations[i]!, a.pads[i]!, a.pads[i + sp]!, ceil, fresh);
      });
      return [x[0]!, channels, ...spatial];
    }
    case 'GlobalAveragePool':
      return x ? [x[0]!, x[1]!, ...x.slice(2).map(() => 1)] : null;
    case 'ReduceMean':
      return x ? (node.attrs.keepdims ? x.map((d, i) => (node.attrs.axes.includes(i) ? 1 : d)) : x.filter((_, i) => !node.attrs.axes.includes(i))) : null;
    case 'Gemm': {
      const b = shapeOf(node.inputs[1]!);
      const m = x ? (node.attrs.transA ? x[1] : x[0]) : undefined;
      const nn = b ? (node.attrs.transB ? b[0] : b[1]) : undefined;
      return [m ?? fresh(), nn ?? fresh()];
    }
    case 'MatMul': {
      const b = shapeOf(node.inputs[1]!);
      if (!x || !b) return null;
      // numpy matmul: 1-D operands get a 1 prepended (A) / appended (B), removed again afterwards.
      const a2 = x.length === 1 ? [1, x[0]!] : x;
      const b2 = b.length === 1 ? [b[0]!, 1] : b;
      const batch = broadcastShapes([a2.slice(0, -2), b2.slice(0, -2)], fresh, where)!;
      const out = [...batch, a2[a2.length - 2]!, b2[b2.length - 1]!];
      if (x.length === 1) out.splice(out.length - 2, 1);
      if (b.length === 1) out.pop();
      return out;
    }
    case 'Flatten':
      return x ? [dimProduct(x.slice(0, node.attrs.axis), fresh), dimProduct(x.slice(node.attrs.axis), fresh)] : [fresh(), fresh()];
    case 'Reshape':
      return x ? reshapeDims(x, node.attrs.shape, node.attrs.allowzero, fresh, where)
        : node.attrs.shape.map((s) => (s > 0 ? s : fresh()));
    case 'Transpose':
      return x ? (node.attrs.perm ?? x.map((_, i) => x.length - 1 - i)).map((p) => x[p]!) : null;
    case 'Squeeze':
      return x ? squeezeDims(x, node.attrs.axes) : null;
    case 'Unsqueeze':
      return x ? unsqueezeDims(x, node.attrs.axes) : null;
    case 'Concat': {
      const shapes = node.inputs.map(shapeOf);
      if (shapes.some((s) => !s)) return null;
      const ax = node.attrs.axis;
      const parts = shapes.map((s) => s![ax]!);
      const sum = parts.every((d) => typeof d === 'number') ? (parts as number[]).reduce((a, b) => a + b, 0) : fresh();
      return shapes[0]!.map((d, i) => (i === ax ? sum : d));
    }
    case 'Pad': {
      if (!x) return null;
      const r = x.length;
      return x.map((d, i) => (typeof d === 'number' ? d + node.attrs.pads[i]! + node.attrs.pads[i + r]! : fresh()));
    }
    default:
      return (node satisfies never, null);
  }
}

// ---- constant evaluation (small tensors: shapes, axes, the occasional reshaped weight) ----------------

function toNumbers(t: OnnxTensor): ArrayLike<number> { return t.data as ArrayLike<number>; }

/**
 * n zeros in the container reader.ts uses for this data type (Float32Array for float types, so a
 * folded weight stays compact).
 */
function alloc(dataType: number, n: number): TensorValues {
  if (isFloatType(dataType)) return new Float32Array(n);
  if (dataType === DataType.INT64 || dataType === DataType.UINT32 || dataType === DataType.UINT64) return new Array<number>(n).fill(0);
  return new Int32Array(n);
}

function filled(dims: number[], dataType: number, v: number): Omit<OnnxTensor, 'name'> {
  return { dims, dataType, data: alloc(dataType, numel(dims)).fill(v) };
}

function strides(dims: readonly number[]): number[] {
  const s = new Array<number>(dims.length).fill(1);
  for (let i = dims.length - 2; i >= 0; i--) s[i] = s[i + 1]! * dims[i + 1]!;
  return s;
}

function gatherConst(data: OnnxTensor, indices: number[], idxDims: number[], axisIn: number, n: NodeView): Omit<OnnxTensor, 'name'> {
  const r = data.dims.length;
  const axis = normAxis(axisIn, r, n);
  const outer = numel(data.dims.slice(0, axis));
  const len = data.dims[axis]!;
  const inner = numel(data.dims.slice(axis + 1));
  const src = toNumbers(data);
  const out = alloc(data.dataType, outer * indices.length * inner);
  let k = 0;
  for (let o = 0; o < outer; o++) {
    for (const iRaw of indices) {
      const i = iRaw < 0 ? iRaw + len : iRaw;
      if (i < 0 || i >= len) throw n.malformed(`Gather index ${iRaw} is out of range for length ${len}`);
      for (let j = 0; j < inner; j++) out[k++] = src[(o * len + i) * inner + j]!;
    }
  }
  const dims = [...data.dims.slice(0, axis), ...idxDims, ...data.dims.slice(axis + 1)];
  return { dims, dataType: data.dataType, data: out };
}

function concatConst(parts: OnnxTensor[], axis: number, n: NodeView): Omit<OnnxTensor, 'name'> {
  const first = parts[0]!;
  const outer = numel(first.dims.slice(0, axis));
  for (const p of parts) {
    if (p.dims.length !== first.dims.length) throw n.malformed('Concat inputs differ in rank');
  }
  const dims = first.dims.map((d, i) => (i === axis ? parts.reduce((s, p) => s + p.dims[axis]!, 0) : d));
  const out = alloc(first.dataType, numel(dims));
  let k = 0;
  for (let o = 0; o < outer; o++) {
    for (const p of parts) {
      const block = numel(p.dims.slice(axis));
      const src = toNumbers(p);
      for (let j = 0; j < block; j++) out[k++] = src[o * block + j]!;
    }
  }
  return { dims, dataType: first.dataType, data: out };
}

function transposeConst(t: OnnxTensor, perm: number[]): Omit<OnnxTensor, 'name'> {
  const dims = perm.map((p) => t.dims[p]!);
  const inStrides = strides(t.dims);
  const src = toNumbers(t);
  const total = numel(dims);
  const out = alloc(t.dataType, total);
  const idx = new Array<number>(dims.length).fill(0);
  for (let k = 0; k < total; k++) {
    let off = 0;
    for (let d = 0; d < dims.length; d++) off += idx[d]! * inStrides[perm[d]!]!;
    out[k] = src[off]!;
    for (let d = dims.length - 1; d >= 0; d--) {
      if (++idx[d]! < dims[d]!) break;
      idx[d] = 0;
    }
  }
  return { dims, dataType: t.dataType, data: out };
}

function elementwiseConst(op: 'Add' | 'Sub' | 'Mul' | 'Div', a: OnnxTensor, b: OnnxTensor, n: NodeView): Omit<OnnxTensor, 'name'> {
  const dims = broadcastShapes([a.dims, b.dims], () => '?', n.where) as number[];
  const r = dims.length;
  const pad = (d: number[]) => [...new Array<number>(r - d.length).fill(1), ...d];
  const ad = pad(a.dims), bd = pad(b.dims);
  const as = strides(ad).map((s, i) => (ad[i] === 1 ? 0 : s));
  const bs = strides(bd).map((s, i) => (bd[i] === 1 ? 0 : s));
  const av = toNumbers(a), bv = toNumbers(b);
  const isInt = !isFloatType(a.dataType);
  const total = numel(dims);
  const out = alloc(a.dataType, total);
  const idx = new Array<number>(r).fill(0);
  for (let k = 0; k < total; k++) {
    let ia = 0, ib = 0;
    for (let d = 0; d < r; d++) { ia += idx[d]! * as[d]!; ib += idx[d]! * bs[d]!; }
    const x = av[ia]!, y = bv[ib]!;
    // NOTE: integer Div truncates toward zero (C semantics), as ONNX runtimes do.
    out[k] = op === 'Add' ? x + y : op === 'Sub' ? x - y : op === 'Mul' ? x * y : isInt ? Math.trunc(x / y) : x / y;
    for (let d = r - 1; d >= 0; d--) {
      if (++idx[d]! < dims[d]!) break;
      idx[d] = 0;
    }
  }
  return { dims, dataType: a.dataType, data: out };
}

// ---- fusions --------------------------------------------------------------------------------------------

/** How many nodes read each value, plus one for each graph output. */
function readers(nodes: NormNode[], outputs: NormValue[]): Map<string, number> {
  const c = new Map<string, number>();
  for (const n of nodes) for (const i of n.inputs) c.set(i, (c.get(i) ?? 0) + 1);
  for (const o of outputs) c.set(o.name, (c.get(o.name) ?? 0) + 1);
  return c;
}

/**
 * Conv(no bias) → Add(constant shaped [K,1,1] or [1,K,1,1]) becomes Conv with bias [K] (CNTK / MXNet
 * exports keep the bias apart). MatMul(A [M,K], constant B [K,N]) → Add(constant [N] or [1,N]) becomes
 * Gemm(A, B, C) — a Linear layer. The bias keeps the Add constant's name.
 */
function fuseBiases(nodes: NormNode[], consts: Map<string, OnnxTensor>, values: Map<string, NormValue>, outputs: NormValue[]): void {
  const uses = readers(nodes, outputs);
  const producerOf = new Map<string, NormNode>();
  for (const n of nodes) producerOf.set(n.outputs[0]!, n);
  for (let i = 0; i < nodes.length; i++) {
    const add = nodes[i]!;
    if (add.op !== 'Add') continue;
    for (const [mine, other] of [[0, 1], [1, 0]] as const) {
      const prev = producerOf.get(add.inputs[mine]!);
      const bias = consts.get(add.inputs[other]!);
      if (!prev || !bias || uses.get(prev.outputs[0]!) !== 1 || uses.get(bias.name) !== 1) continue;
      const yShape = values.get(prev.outputs[0]!)?.shape;
      if (prev.op === 'Conv' && prev.inputs.length === 2 && yShape) {
        const k = yShape[1];
        const bd = [...new Array<number>(Math.max(0, yShape.length - bias.dims.length)).fill(1), ...bias.dims];
        if (typeof k !== 'number' || bd.length !== yShape.length || bd[1] !== k || numel(bd) !== k) continue;
        consts.set(bias.name, { ...bias, dims: [k] });
        prev.inputs.push(bias.name);
      } else if (prev.op === 'MatMul' && yShape?.length === 2 && values.get(prev.inputs[0]!)?.shape?.length === 2) {
        const w = consts.get(prev.inputs[1]!);
        const nOut = yShape[1];
        if (!w || w.dims.length !== 2 || typeof nOut !== 'number' || numel(bias.dims) !== nOut
          || !(bias.dims.length === 1 || (bias.dims.length === 2 && bias.dims[0] === 1))) continue;
        consts.set(bias.name, { ...bias, dims: [nOut] });
        const gemm: NormNode = { op: 'Gemm', name: prev.name, inputs: [...prev.inputs, bias.name], outputs: prev.outputs,
          attrs: { alpha: 1, beta: 1, transA: false, transB: false }, onnxOp: 'MatMul', version: prev.version };
        nodes[nodes.indexOf(prev)] = gemm;
        producerOf.set(prev.outputs[0]!, gemm);
      } else continue;
      // The fused node now writes the Add's output; the Add goes.
      const fused = producerOf.get(add.inputs[mine]!)!;
      values.set(add.outputs[0]!, { ...values.get(add.outputs[0]!)!, name: add.outputs[0]! });
      values.delete(fused.outputs[0]!);
      fused.outputs = [add.outputs[0]!];
      producerOf.set(add.outputs[0]!, fused);
      nodes.splice(i, 1);
      i--;
      break;
    }
  }
}

/**
 * Conv → BatchNormalization folded into the Conv (inference semantics):
 *   s = scale / √(var + ε);   W'[k] = W[k] · s[k];   b'[k] = (b[k] − mean[k]) · s[k] + β[k]
 * computed in float64. W' keeps the weight's name (as torch's exporter does); the new bias takes the
 * BN bias's name. Skipped where the Conv output or its weights are read elsewhere.
 */
function foldBatchNorms(nodes: NormNode[], consts: Map<string, OnnxTensor>, outputs: NormValue[]): void {
  const uses = readers(nodes, outputs);
  const producerOf = new Map<string, NormNode>();
  for (const n of nodes) producerOf.set(n.outputs[0]!, n);
  for (let i = 0; i < nodes.length; i++) {
    const bn = nodes[i]!;
    if (bn.op !== 'BatchNormalization') continue;
    const conv = producerOf.get(bn.inputs[0]!);
    if (!conv || conv.op !== 'Conv' || uses.get(conv.outputs[0]!) !== 1) continue;
    const [, wName, bName] = conv.inputs;
    const w = consts.get(wName!);
    const b = bName ? consts.get(bName) : undefined;
    const [scale, beta, mean, variance] = bn.inputs.slice(1).map((v) => consts.get(v));
    if (!w || !scale || !beta || !mean || !variance || uses.get(wName!) !== 1) continue;
    // The new bias overwrites the conv bias, or takes over β's name: neither may be read elsewhere.
    if (bName ? !b || uses.get(bName) !== 1 : uses.get(beta.name) !== 1) continue;
    const K = w.dims[0]!;
    const per = numel(w.dims) / K;
    const wv = toNumbers(w);
    const W2 = new Float32Array(wv.length);
    const b2 = new Float32Array(K);
    for (let k = 0; k < K; k++) {
      const s = toNumbers(scale)[k]! / Math.sqrt(toNumbers(variance)[k]! + bn.attrs.epsilon);
      for (let j = 0; j < per; j++) W2[k * per + j] = wv[k * per + j]! * s;
      b2[k] = ((b ? toNumbers(b)[k]! : 0) - toNumbers(mean)[k]!) * s + toNumbers(beta)[k]!;
    }
    consts.set(wName!, { ...w, dataType: DataType.FLOAT, data: W2 });
    const biasName = bName ?? beta.name;
    consts.set(biasName, { name: biasName, dims: [K], dataType: DataType.FLOAT, data: b2 });
    conv.inputs = [conv.inputs[0]!, wName!, biasName];
    conv.outputs = [bn.outputs[0]!];
    producerOf.set(bn.outputs[0]!, conv);
    nodes.splice(i, 1);
    i--;
  }
}
