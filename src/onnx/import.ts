// ONNX → trainable modules.
//
// The normalized graph (normalize.ts) becomes an `OnnxModule`: one child module per node, run in
// topological order by autograd ops, so every layer can be frozen, grouped, trained and exported
// again. Weights become named Parameters that keep their ONNX initializer names (`fc.weight`,
// `onnx::Conv_193`, `vgg0_conv0_weight`); BatchNorm running statistics become buffers; other
// constants (a Mul's scale, a Sub's mean) become non-trainable buffers.
//
//   Conv                → conv2d (weight, bias)          Gemm / MatMul(x, W) → linear (weight [out, in], bias)
//   BatchNormalization  → batchNorm (γ, β; stats policy)  Relu, LeakyRelu, Sigmoid, Clip → activations
//   MaxPool, AveragePool, GlobalAveragePool → pooling     Add, Sub, Mul, Div, Sum → broadcasting binary ops
//   Flatten, Reshape, Squeeze, Unsqueeze → reshape (no copy)   Transpose, Concat, Pad → data movement
//   Dropout → dropout (training only)   Softmax, LogSoftmax → along the last axis   LRN → lrn
//
// Fusion (nn/layers.ts `setFusion`): a Conv, Gemm/MatMul, or BatchNormalization using running
// statistics whose output is read only by the Relu after it runs with that Relu as one fused kernel;
// never when the pre-ReLU value is read elsewhere (another node, a graph output, a cut point, runTo's
// target). The module, its parameters and an export are the same either way.
//
// NOTE on Gemm: Y = α·op(A)·op(B) + β·C is stored as a Linear with W = α·op(B)ᵀ ([out, in], what
// torch exports with transB = 1) and b = β·C: trainable either way, and exported back as
// Gemm(transB = 1, α = β = 1). A Gemm/MatMul whose B is an activation (not a weight) is unsupported.
//
// Layer groups (for freeze/unfreeze and discriminative LRs): recognised torchvision ResNet34 →
// stem+layer1+layer2 | layer3+layer4 | head; VGG16 → features | head; any other graph → body | head,
// with the body split in two halves by convolution count when it has 4 or more convolutions.

import type { Gpu } from '../gpu/device.js';
import { Tensor } from '../gpu/tensor.js';
import * as ops from '../autograd/ops.js';
import { Variable } from '../autograd/variable.js';
import { Module, Parameter } from '../nn/module.js';
import { Dropout, fusionEnabled, type BnPolicy } from '../nn/layers.js';
import type { Grouped } from '../nn/groups.js';
import { Rng } from '../util/rng.js';
import { OnnxError, type OnnxModel, type OnnxTensor } from './reader.js';
import { normalize, SUPPORTED_OPS, type NormGraph, type NormNode, type NormalizeOptions } from './normalize.js';

export type ModelFamily = 'resnet34' | 'vgg16' | 'other';

export interface ImportOptions extends NormalizeOptions {
  /**
   * 'onnx' (default): parameters keep their initializer names. 'torchvision': a recognised
   * ResNet34/VGG16 gets torchvision's names (`layer3.1.conv2.weight`, `features.0.bias`).
   */
  names?: 'onnx' | 'torchvision';
}

/** One node of the graph as a module (its parameters and buffers live here). */
export class NodeModule extends Module {
  /** Weight-like inputs as Parameters / constant inputs as tensors, by ONNX input name. */
  readonly params = new Map<string, Parameter>();
  readonly consts = new Map<string, Tensor>();
  /** BatchNorm: which statistics to normalise with in training mode (see BatchNorm2d). */
  bnPolicy: BnPolicy = 'auto';
  dropout: Dropout | null = null;
  group = 0;

  constructor(readonly node: NormNode) { super(); }

  addParam(localName: string, onnxName: string, t: Tensor): Parameter {
    const p = this.param(localName, t);
    p.name = onnxName;
    this.params.set(onnxName, p);
    return p;
  }

  setDropout(d: Dropout) { this.dropout = this.child('dropout', d); }

  addConst(localName: string, onnxName: string, t: Tensor) {
    this.buffer(localName, t);
    this.consts.set(onnxName, t);
  }

  forward(): Variable { throw new Error('NodeModule.forward: use OnnxModule'); }
}

/** An imported ONNX graph, trainable. */
export class OnnxModule extends Module implements Grouped {
  readonly layers: NodeModule[] = [];
  /** Graph output the forward returns (after cutAt: the new head's). */
  output: string;
  readonly input: string;
  family: ModelFamily;
  /** Parameter/buffer → its public name (ONNX initializer name or torchvision name). */
  private readonly names = new Map<Parameter | Tensor, string>();
  /** Whether BatchNorm layers exist (false when they were folded into convolutions on export). */
  readonly hasBatchNorm: boolean;
  private numGroups = 2;

  constructor(readonly gpu: Gpu, readonly graph: NormGraph, readonly opset: number, readonly metadata: Record<string, string>, o: ImportOptions = {}) {
    super();
    if (graph.inputs.length !== 1) {
      throw new OnnxError(`the model has ${graph.inputs.length} inputs (${graph.inputs.map((v) => v.name).join(', ')}); wgtrain trains image classifiers with exactly one input`);
    }
    this.input = graph.inputs[0]!.name;
    this.output = graph.outputs[0]!.name;
    graph.nodes.forEach((n, i) => {
      const m = this.buildLayer(n);
      this.layers.push(m);
      this.child(`n${i}`, m);
    });
    this.hasBatchNorm = graph.nodes.some((n) => n.op === 'BatchNormalization');
    this.family = detectFamily(graph);
    if (o.names === 'torchvision') this.renameTorchvision();
    this.assignGroups();
  }

  // ---- building -----------------------------------------------------------------------------------

  private fail(n: NormNode, why: string): never {
    throw new OnnxError(`node '${n.name}' (${n.onnxOp}, opset ${this.opset}): ${why}. Supported: ${SUPPORTED_OPS}`);
  }

  private constOf(n: NormNode, name: string | undefined): OnnxTensor | undefined {
    return name ? this.graph.constants.get(name) : undefined;
  }

  private tensor(t: OnnxTensor, shape = t.dims, data: ArrayLike<number> = t.data as ArrayLike<number>): Tensor {
    // NOTE: no copy when the reader already holds float32 (uploads read the array directly).
    return Tensor.from(this.gpu, data instanceof Float32Array ? data : Float32Array.from(data), shape.length ? shape : [1]);
  }

  private buildLayer(n: NormNode): NodeModule {
    const m = new NodeModule(n);
    const named = (p: Parameter | Tensor, name: string) => { this.names.set(p, name); };
    const needConst = (i: number, what: string) => {
      const t = this.constOf(n, n.inputs[i]);
      if (!t) this.fail(n, `its ${what} must be a weight (initializer), not computed at run time`);
      return t;
    };
    switch (n.op) {
      case 'Conv': {
        if (n.attrs.kernelShape.length !== 2) this.fail(n, `only 2-D convolutions are supported (kernel_shape has ${n.attrs.kernelShape.length} axes)`);
        const w = needConst(1, 'weight');
        named(m.addParam('weight', w.name, this.tensor(w)), w.name);
        const b = this.constOf(n, n.inputs[2]);
        if (n.inputs[2] && !b) this.fail(n, 'its bias must be a weight');
        if (b) named(m.addParam('bias', b.name, this.tensor(b)), b.name);
        break;
      }
      case 'Gemm': case 'MatMul': {
        const B = needConst(1, 'second operand (the weight)');
        if (B.dims.length !== 2) this.fail(n, `the weight must be 2-D, got [${B.dims}]`);
        const [r, c] = B.dims as [number, number];
        const a = n.op === 'Gemm' ? n.attrs : { alpha: 1, beta: 1, transA: false, transB: false };
        // W [out, in] = α · (transB ? B : Bᵀ)
        const src = B.data as ArrayLike<number>;
        const out = a.transB ? r : c, inF = a.transB ? c : r;
        let W: Float32Array;
        if (a.transB && a.alpha === 1 && src instanceof Float32Array) W = src;   // torch's layout already
        else {
          W = new Float32Array(out * inF);
          for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) W[o * inF + i] = a.alpha * src[a.transB ? o * inF + i : i * c + o]!;
        }
        named(m.addParam('weight', B.name, Tensor.from(this.gpu, W, [out, inF])), B.name);
        const C = n.op === 'Gemm' ? this.constOf(n, n.inputs[2]) : undefined;
        if (n.op === 'Gemm' && n.inputs[2] && !C) this.fail(n, 'its bias C must be a weight');
        if (C) {
          const cs = C.data as ArrayLike<number>;
          if (cs.length !== out && cs.length !== 1) this.fail(n, `bias C has ${cs.length} values for ${out} outputs (only per-output or scalar C is supported)`);
          named(m.addParam('bias', C.name, Tensor.from(this.gpu, Float32Array.from({ length: out }, (_, i) => a.beta * cs[cs.length === 1 ? 0 : i]!), [out])), C.name);
        }
        break;
      }
      case 'BatchNormalization': {
        const [, s, b, mean, v] = n.inputs.map((name, i) => (i === 0 ? undefined : needConst(i, ['', 'scale', 'bias', 'mean', 'variance'][i]!)));
        named(m.addParam('weight', s!.name, this.tensor(s!)), s!.name);
        named(m.addParam('bias', b!.name, this.tensor(b!)), b!.name);
        const rm = this.tensor(mean!), rv = this.tensor(v!);
        m.addConst('running_mean', mean!.name, rm); named(rm, mean!.name);
        m.addConst('running_var', v!.name, rv); named(rv, v!.name);
        break;
      }
      case 'Dropout':
        m.setDropout(new Dropout(n.attrs.ratio, this.layers.length));
        break;
      case 'AveragePool':
        if (n.attrs.dilations.some((d) => d !== 1)) this.fail(n, 'dilated average pooling is not supported');
        if (n.attrs.kernelShape.length !== 2) this.fail(n, 'only 2-D pooling is supported');
        break;
      case 'MaxPool':
        if (n.attrs.kernelShape.length !== 2) this.fail(n, 'only 2-D pooling is supported');
        break;
      case 'ReduceMean':
        this.fail(n, `ReduceMean over axes [${n.attrs.axes}] (only a mean over all spatial axes, i.e. global average pooling, is supported)`);
        break;
      default:
        break;
    }
    // Constant operands of elementwise ops, Concat, Sum: non-trainable buffers.
    if (['Add', 'Sub', 'Mul', 'Div', 'Sum', 'Concat'].includes(n.op)) {
      n.inputs.forEach((name, i) => {
        const t = this.constOf(n, name);
        if (t) { const tt = this.tensor(t); m.addConst(`const${i}`, t.name, tt); named(tt, t.name); }
      });
    }
    return m;
  }

  // ---- running ------------------------------------------------------------------------------------

  forward(x: Variable): Variable { return this.runTo(x, this.output); }

  /** The value the classifier head reads (after cutAt: the features a frozen base produces). */
  get headInput(): string {
    const last = this.activeLayers().at(-1)!;
    return last.node.inputs[0]!;
  }

  /** Runs the graph up to (and including) the node producing `target`; returns that value. */
  runTo(x: Variable, target: string): Variable {
    const values = new Map<string, Variable>([[this.input, x]]);
    const get = (name: string, m: NodeModule): Variable => {
      const v = values.get(name);
      if (v) return v;
      const c = m.consts.get(name);
      if (c) return ops.constant(c, name);
      const p = m.params.get(name);
      if (p) return p;
      throw new OnnxError(`node '${m.node.name}' reads '${name}', which nothing produced`);
    };
    const readers = fusionEnabled() ? this.readers(target) : null;
    for (let i = 0; i < this.layers.length; i++) {
      const m = this.layers[i]!, next = this.layers[i + 1];
      if (readers && next && this.fusesRelu(m, next, readers)) {
        // m's output feeds only this Relu: run the pair as one fused kernel, skip the Relu node.
        values.set(next.node.outputs[0]!, this.runNode(m, (name) => get(name, m), true));
        i++;
        if (next.node.outputs[0] === target) break;
        continue;
      }
      const y = this.runNode(m, (name) => get(name, m));
      values.set(m.node.outputs[0]!, y);
      if (m.node.outputs[0] === target) break;
    }
    const out = values.get(target);
    if (!out) throw new OnnxError(`the graph never computes '${target}'`);
    return out;
  }

  /**
   * How many readers each value has that the graph cannot see past: node inputs, the graph's outputs,
   * the module's output (a cut point) and `target` (what runTo was asked for, e.g. features).
   */
  private readers(target: string): Map<string, number> {
    const r = new Map<string, number>();
    const add = (name: string) => r.set(name, (r.get(name) ?? 0) + 1);
    for (const m of this.layers) m.node.inputs.forEach(add);
    for (const v of this.graph.outputs) add(v.name);
    add(this.output);
    add(target);
    return r;
  }

  /** The BatchNorm statistics node m uses now (see BatchNorm2d.stats). */
  private bnStats(m: NodeModule): 'batch' | 'running' {
    const n = m.node;
    const gamma = m.params.get(n.inputs[1]!)!, beta = m.params.get(n.inputs[2]!)!;
    return !m.training ? 'running' : m.bnPolicy === 'auto' ? (gamma.trainable || beta.trainable ? 'batch' : 'running') : m.bnPolicy;
  }

  /**
   * Whether node m and the Relu after it may run as one fused kernel: m is a Conv, a Gemm / MatMul,
   * or a BatchNormalization using running statistics, and its only output has exactly one reader, that Relu
   * (so the pre-ReLU value is not a graph output, a cut point, runTo's target, or read by any other node).
   */
  private fusesRelu(m: NodeModule, next: NodeModule, readers: Map<string, number>): boolean {
    if (next.node.op !== 'Relu' || m.node.outputs.length !== 1) return false;
    const out = m.node.outputs[0]!;
    if (next.node.inputs[0] !== out || readers.get(out) !== 1) return false;
    const op = m.node.op;
    return op === 'Conv' || op === 'Gemm' || op === 'MatMul' || (op === 'BatchNormalization' && this.bnStats(m) === 'running');
  }

  /** Runs one node; `relu`: also apply the ReLU that follows it, fused (Conv, Gemm, MatMul, BatchNormalization). */
  private runNode(m: NodeModule, get: (name: string) => Variable, relu = false): Variable {
    const n = m.node;
    const x = () => get(n.inputs[0]!);
    if (relu && !['Conv', 'Gemm', 'MatMul', 'BatchNormalization'].includes(n.op)) throw new Error(`runNode: no fused ReLU for ${n.op}`);
    switch (n.op) {
      case 'Conv': {
        const a = n.attrs;
        const xv = x();
        const pads = resolvePads(a, xv.shape);
        return ops.conv2d(xv, m.params.get(n.inputs[1]!)!, n.inputs[2] ? m.params.get(n.inputs[2])! : null,
          { stride: pair(a.strides), dilation: pair(a.dilations), padding: pads, groups: a.group, ...(relu ? { activation: 'relu' } : {}) });
      }
      case 'Gemm': case 'MatMul': {
        let xv = x();
        if (xv.shape.length !== 2) this.fail(n, `the activation must be 2-D [N, features], got [${xv.shape}]`);
        if (n.op === 'Gemm' && n.attrs.transA) xv = ops.transpose(xv, [1, 0]);
        const b = n.op === 'Gemm' && n.inputs[2] ? m.params.get(n.inputs[2])! : null;
        return ops.linear(xv, m.params.get(n.inputs[1]!)!, b, relu ? 'relu' : undefined);
      }
      case 'BatchNormalization': {
        const xv = x();
        const gamma = m.params.get(n.inputs[1]!)!, beta = m.params.get(n.inputs[2]!)!;
        // NOTE: BatchNormalization on [N, C] (after a dense layer) runs as [N, C, 1, 1].
        const x4 = xv.shape.length === 2 ? ops.reshape(xv, [xv.shape[0]!, xv.shape[1]!, 1, 1]) : xv;
        // (There the ReLU stays a separate op after the reshape back, so an export keeps the node order.)
        const flat = xv.shape.length === 2;
        const y = ops.batchNorm(x4, {
          gamma, beta, runningMean: m.consts.get(n.inputs[3]!)!, runningVar: m.consts.get(n.inputs[4]!)!,
          eps: n.attrs.epsilon, momentum: 1 - n.attrs.momentum, stats: this.bnStats(m), relu: relu && !flat,
        });
        if (!flat) return y;
        const y2 = ops.reshape(y, xv.shape);
        return relu ? ops.relu(y2) : y2;
      }
      case 'Relu': return ops.relu(x());
      case 'LeakyRelu': return ops.leakyRelu(x(), n.attrs.alpha);
      case 'Sigmoid': return ops.sigmoid(x());
      case 'Clip': return ops.clip(x(), n.attrs.min, n.attrs.max, n.attrs.min === 0 && n.attrs.max === 6 ? 'hardtanh' : 'clamp');
      case 'MaxPool': {
        const a = n.attrs, xv = x();
        return ops.maxPool2d(xv, { kernel: pair(a.kernelShape), stride: pair(a.strides), dilation: pair(a.dilations), padding: resolvePads(a, xv.shape), ceilMode: a.ceilMode });
      }
      case 'AveragePool': {
        const a = n.attrs, xv = x();
        return ops.avgPool2d(xv, { kernel: pair(a.kernelShape), stride: pair(a.strides), padding: resolvePads(a, xv.shape), ceilMode: a.ceilMode, countIncludePad: a.countIncludePad });
      }
      case 'GlobalAveragePool': return ops.globalAvgPool(x());
      case 'Add': case 'Sub': case 'Mul': case 'Div':
        return ops.binary(n.op.toLowerCase() as 'add', get(n.inputs[0]!), get(n.inputs[1]!));
      case 'Sum': return n.inputs.map(get).reduce((a, b) => ops.add(a, b));
      case 'Flatten': {
        const xv = x(), ax = n.attrs.axis < 0 ? n.attrs.axis + xv.shape.length : n.attrs.axis;
        const lead = xv.shape.slice(0, ax).reduce((a, b) => a * b, 1);
        return ops.reshape(xv, [lead, xv.size / lead]);
      }
      case 'Reshape': return ops.reshape(x(), reshapeTarget(x().shape, n.attrs.shape, n.attrs.allowzero, () => this.fail(n, `cannot reshape [${x().shape}] to [${n.attrs.shape}]`)));
      case 'Squeeze': {
        const xv = x(), axes = n.attrs.axes?.map((a) => (a < 0 ? a + xv.shape.length : a));
        return ops.reshape(xv, xv.shape.filter((d, i) => (axes ? !axes.includes(i) : d !== 1)));
      }
      case 'Unsqueeze': {
        const xv = x(), rank = xv.shape.length + n.attrs.axes.length;
        const axes = n.attrs.axes.map((a) => (a < 0 ? a + rank : a));
        const shape: number[] = [];
        let k = 0;
        for (let i = 0; i < rank; i++) shape.push(axes.includes(i) ? 1 : xv.shape[k++]!);
        return ops.reshape(xv, shape);
      }
      case 'Transpose': {
        const xv = x();
        return ops.transpose(xv, n.attrs.perm ?? xv.shape.map((_, i) => xv.shape.length - 1 - i));
      }
      case 'Concat': {
        const vs = n.inputs.map(get);
        return ops.concat(vs, n.attrs.axis < 0 ? n.attrs.axis + vs[0]!.shape.length : n.attrs.axis);
      }
      case 'Pad': return ops.pad(x(), n.attrs.pads, n.attrs.value);
      case 'Dropout': return m.dropout!.call(x());
      case 'Softmax': case 'LogSoftmax': {
        const xv = x(), r = xv.shape.length;
        const ax = n.attrs.axis < 0 ? n.attrs.axis + r : n.attrs.axis;
        if (!n.attrs.coerce2d && ax !== r - 1) this.fail(n, `softmax over axis ${ax} of a rank-${r} tensor (only the last axis is supported)`);
        const lead = xv.shape.slice(0, ax).reduce((a, b) => a * b, 1);
        const x2 = ops.reshape(xv, [lead, xv.size / lead]);
        const y = n.op === 'Softmax' ? ops.softmax(x2) : ops.logSoftmax(x2);
        return ops.reshape(y, xv.shape);
      }
      case 'LRN': return ops.lrn(x(), { size: n.attrs.size, alpha: n.attrs.alpha, beta: n.attrs.beta, bias: n.attrs.bias });
      case 'Identity': return x();
      case 'ReduceMean': return this.fail(n, 'unsupported ReduceMean');
      default: return this.fail(n, 'unsupported op');
    }
  }

  // ---- names, groups, families ----------------------------------------------------------------------

  override namedParameters(): [string, Parameter][] {
    return this.layers.flatMap((m) => m.parameters().map((p): [string, Parameter] => [this.names.get(p) ?? p.name, p]));
  }

  override namedBuffers(): [string, Tensor][] {
    return this.layers.flatMap((m) => m.namedBuffers().map(([, t]): [string, Tensor] => [this.names.get(t)!, t]));
  }

  override stateDict(): [string, Tensor][] {
    return this.layers.flatMap((m) => [
      ...m.parameters().map((p): [string, Tensor] => [this.names.get(p) ?? p.name, p.data]),
      ...m.namedBuffers().map(([, t]): [string, Tensor] => [this.names.get(t)!, t]),
    ]);
  }

  /** The public name of a parameter or buffer. */
  nameOf(t: Parameter | Tensor): string | undefined { return this.names.get(t); }

  layerGroups(): Module[][] {
    const groups: Module[][] = Array.from({ length: this.numGroups }, () => []);
    for (const m of this.activeLayers()) if (m.parameters().length) groups[m.group]!.push(m);
    return groups;
  }

  /** Layers that run (up to the output node). */
  activeLayers(): NodeModule[] {
    const i = this.layers.findIndex((m) => m.node.outputs[0] === this.output);
    return i < 0 ? this.layers : this.layers.slice(0, i + 1);
  }

  private assignGroups() {
    const active = this.activeLayers();
    const dense = active.filter((m) => (m.node.op === 'Gemm' || m.node.op === 'MatMul'));
    const lastDense = dense.at(-1);
    const convs = active.filter((m) => m.node.op === 'Conv');
    let bodySplit: number | null = null; // index into convs where group 1 starts
    if (this.family === 'resnet34') bodySplit = 16;                 // conv1 + layer1 (6) + layer2 (8 + downsample)
    else if (this.family === 'vgg16') bodySplit = null;
    else if (convs.length >= 4) bodySplit = Math.floor(convs.length / 2);
    this.numGroups = bodySplit === null ? 2 : 3;
    const head = this.numGroups - 1;
    // VGG16's head is its whole classifier (every Gemm); elsewhere the last dense layer.
    const headStart = this.family === 'vgg16' && dense.length ? active.indexOf(dense[0]!) : lastDense ? active.indexOf(lastDense) : active.length;
    let convSeen = 0;
    for (const [i, m] of active.entries()) {
      if (m.node.op === 'Conv') convSeen++;
      if (i >= headStart) m.group = head;
      else m.group = bodySplit !== null && convSeen > bodySplit ? 1 : 0;
    }
  }

  /** torchvision names for a recognised ResNet34 / VGG16 (by position of each weight-bearing node). */
  private renameTorchvision() {
    const active = this.layers.filter((m) => m.params.size > 0);
    let names: string[];
    if (this.family === 'resnet34') {
      names = ['conv1'];
      const bn: string[] = ['bn1'];
      [3, 4, 6, 3].forEach((nb, li) => {
        for (let b = 0; b < nb; b++) {
          const p = `layer${li + 1}.${b}`;
          names.push(`${p}.conv1`, `${p}.conv2`);
          bn.push(`${p}.bn1`, `${p}.bn2`);
          if (b === 0 && li > 0) { names.push(`${p}.downsample.0`); bn.push(`${p}.downsample.1`); }
        }
      });
      // Interleave BatchNorms (when present) after their convolutions.
      if (this.hasBatchNorm) names = names.flatMap((c, i) => [c, bn[i]!]);
      names.push('fc');
    } else if (this.family === 'vgg16') {
      names = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28].map((i) => `features.${i}`).concat(['classifier.0', 'classifier.3', 'classifier.6']);
    } else {
      throw new OnnxError('torchvision names are available only for a recognised ResNet34 or VGG16 graph; this one is not (use the ONNX names)');
    }
    if (names.length !== active.length) throw new OnnxError(`cannot map torchvision names: ${active.length} weight-bearing layers for ${names.length} torchvision layers`);
    active.forEach((m, i) => {
      const prefix = names[i]!;
      for (const [local, p] of m.namedParameters()) this.names.set(p, `${prefix}.${local}`);
      for (const [local, t] of m.namedBuffers()) this.names.set(t, `${prefix}.${local}`);
    });
  }

  // ---- cutting and new heads ------------------------------------------------------------------------

  /**
   * Cuts the network and attaches a new classifier of `numClasses` outputs (PyTorch default init,
   * seeded). `at`: 'before-last-gemm' (replace the final dense layer, dropping anything after it,
   * e.g. a Softmax) or a node name (keep everything up to and including it; its output, flattened,
   * feeds the new head).
   */
  cutAt(at: string, numClasses: number, seed = 0): this {
    if (!Number.isInteger(numClasses) || numClasses < 2) throw new OnnxError(`a classifier needs at least 2 classes, got ${numClasses}`);
    let keep: number, inFeatures: number, headName: string;
    if (at === 'before-last-gemm') {
      const i = findLastIndex(this.layers, (m) => m.node.op === 'Gemm' || m.node.op === 'MatMul');
      if (i < 0) throw new OnnxError('the model has no Gemm/MatMul layer to replace; cut at a named node instead (see `wgtrain inspect`)');
      const old = this.layers[i]!;
      inFeatures = old.params.get(old.node.inputs[1]!)!.shape[1]!;
      keep = i;
      headName = this.names.get(old.params.get(old.node.inputs[1]!)!)!.replace(/\.?weight$|_weight$/, '') || 'head';
      // The new head reads what the old one read.
      this.output = old.node.inputs[0]!;
    } else {
      const i = this.layers.findIndex((m) => m.node.name === at || m.node.outputs[0] === at);
      if (i < 0) throw new OnnxError(`no node named '${at}' (see \`wgtrain inspect\` for node names)`);
      keep = i + 1;
      this.output = this.layers[i]!.node.outputs[0]!;
      const shape = this.graph.values.get(this.output)?.shape;
      if (!shape || shape.slice(1).some((d) => typeof d !== 'number')) throw new OnnxError(`the size of '${this.output}' is not known statically; cut at another node`);
      inFeatures = (shape.slice(1) as number[]).reduce((a, b) => a * b, 1);
      headName = 'head';
    }
    // Drop everything after the cut.
    for (const [i, m] of this.layers.splice(keep).entries()) { this.removeChild(`n${keep + i}`); m.dispose(); }
    this.attachHead(headName, inFeatures, numClasses, seed);
    this.assignGroups();
    return this;
  }

  private attachHead(name: string, inFeatures: number, numClasses: number, seed: number) {
    const feat = this.output;
    const flatName = `${name}/flatten`, outName = `${name}/logits`;
    const rank = this.graph.values.get(feat)?.shape?.length ?? 2;
    if (rank !== 2) {
      const flat = new NodeModule({ op: 'Flatten', name: flatName, inputs: [feat], outputs: [flatName], attrs: { axis: 1 }, onnxOp: 'Flatten', version: 13 });
      this.layers.push(flat); this.child(`n${this.layers.length - 1}`, flat);
    }
    const node: NormNode = { op: 'Gemm', name: `${name}/gemm`, inputs: [rank !== 2 ? flatName : feat, `${name}.weight`, `${name}.bias`], outputs: [outName], attrs: { alpha: 1, beta: 1, transA: false, transB: true }, onnxOp: 'Gemm', version: 13 };
    const m = new NodeModule(node);
    const bound = 1 / Math.sqrt(inFeatures), rng = new Rng(seed);
    const w = m.addParam('weight', `${name}.weight`, Tensor.from(this.gpu, rng.array(numClasses * inFeatures, -bound, bound), [numClasses, inFeatures]));
    const b = m.addParam('bias', `${name}.bias`, Tensor.from(this.gpu, rng.array(numClasses, -bound, bound), [numClasses]));
    this.names.set(w, `${name}.weight`); this.names.set(b, `${name}.bias`);
    this.layers.push(m); this.child(`n${this.layers.length - 1}`, m);
    this.output = outName;
    this.graph.values.set(outName, { name: outName, elemType: 1, shape: ['N', numClasses] });
  }

  /** Sets the BatchNorm statistics policy of every BatchNorm layer. */
  setBnPolicy(p: BnPolicy) { for (const m of this.layers) m.bnPolicy = p; }

  /** Number of outputs of the final layer (classes), when known. */
  get numOutputs(): number | undefined {
    const last = this.activeLayers().at(-1);
    if (last && (last.node.op === 'Gemm' || last.node.op === 'MatMul')) return last.params.get(last.node.inputs[1]!)!.shape[0];
    const s = this.graph.values.get(this.output)?.shape;
    const d = s?.at(-1);
    return typeof d === 'number' ? d : undefined;
  }
}

/** Reads an ONNX model (already decoded) into a trainable module. */
export function importModel(gpu: Gpu, model: OnnxModel, o: ImportOptions = {}): OnnxModule {
  const graph = normalize(model, o);
  return new OnnxModule(gpu, graph, graph.opset, model.metadata, o);
}

// ---- helpers ------------------------------------------------------------------------------------

function pair(v: readonly number[]): [number, number] { return [v[0]!, v[1] ?? v[0]!]; }

/** Explicit [top, left, bottom, right] pads; SAME_* resolved from the actual input size. */
function resolvePads(a: { pads: number[]; autoPad: string; kernelShape: number[]; strides: number[]; dilations: number[] }, xShape: readonly number[]): [number, number, number, number] {
  if (a.autoPad === 'NOTSET') return [a.pads[0] ?? 0, a.pads[1] ?? 0, a.pads[2] ?? 0, a.pads[3] ?? 0];
  const out: number[] = [0, 0, 0, 0];
  for (let i = 0; i < 2; i++) {
    const inp = xShape[2 + i]!, s = a.strides[i] ?? 1, k = a.kernelShape[i]!, d = a.dilations[i] ?? 1;
    const o = Math.ceil(inp / s);
    const total = Math.max(0, (o - 1) * s + (k - 1) * d + 1 - inp);
    const small = Math.floor(total / 2), big = total - small;
    out[i] = a.autoPad === 'SAME_UPPER' ? small : big;
    out[i + 2] = a.autoPad === 'SAME_UPPER' ? big : small;
  }
  return out as [number, number, number, number];
}

/** ONNX Reshape target: 0 copies the input dimension (unless allowzero), −1 is inferred. */
function reshapeTarget(xShape: readonly number[], target: readonly number[], allowzero: boolean, fail: () => never): number[] {
  const size = xShape.reduce((a, b) => a * b, 1);
  const shape = target.map((d, i) => (d === 0 && !allowzero ? xShape[i]! : d));
  const known = shape.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
  const inferred = shape.filter((d) => d === -1).length;
  if (inferred > 1 || (inferred === 1 && (known === 0 || size % known !== 0))) fail();
  const out = shape.map((d) => (d === -1 ? size / known : d));
  if (out.reduce((a, b) => a * b, 1) !== size) fail();
  return out;
}

function findLastIndex<T>(a: readonly T[], f: (x: T) => boolean): number {
  for (let i = a.length - 1; i >= 0; i--) if (f(a[i]!)) return i;
  return -1;
}

/** torchvision ResNet34 (BN folded or not) / VGG16 by their op counts. */
export function detectFamily(g: NormGraph): ModelFamily {
  const count = (op: string) => g.nodes.filter((n) => n.op === op).length;
  const conv = count('Conv'), gemm = count('Gemm') + count('MatMul'), add = count('Add') + count('Sum');
  if (conv === 36 && add === 16 && gemm === 1 && count('MaxPool') === 1) return 'resnet34';
  if (conv === 13 && count('MaxPool') === 5 && gemm === 3 && add === 0) return 'vgg16';
  return 'other';
}
