// Modules → ONNX (opset 17, IR 8), by tracing.
//
// The model runs once in eval mode on a dummy batch of one image with every autograd op reported
// (autograd/variable.ts `traceOps`); each op becomes one ONNX node (or a few), parameters and
// buffers become initializers under their state_dict names, and anything else constant (a scale, a
// Reshape target) becomes a generated initializer. Works for every module the engine has: the
// layers of nn/, torchvision VGG16/ResNet34, imported graphs (OnnxModule) with new heads.
//
//   conv2d → Conv   linear → Gemm(transB = 1)   batchNorm (running stats) → BatchNormalization
//   (a fused ReLU, attrs.activation = 'relu', adds its Relu node: fusion never changes the file)
//   relu/leakyRelu/sigmoid/tanh/clip → same     maxPool2d/avgPool2d → MaxPool/AveragePool
//   globalAvgPool → GlobalAveragePool   adaptiveAvgPool2d → AveragePool (when the bins are even)
//   add/sub/mul/div → Add/Sub/Mul/Div   scale → Mul(scalar)   reshape → Flatten(1) or Reshape
//   transpose/concat/pad/slice/lrn → Transpose/Concat/Pad/Slice/LRN   softmax/logSoftmax → (axis −1)
//
// The batch dimension is symbolic ('N'). `metadata_props` carry what ONNX itself cannot: class names
// and preprocessing (wgtrain.classes, wgtrain.preprocessing as JSON), so a later import knows them.

import type { Gpu } from '../gpu/device.js';
import { Tensor } from '../gpu/tensor.js';
import * as ops from '../autograd/ops.js';
import { noGrad, releaseTape, traceOps, type OpTrace, type Variable } from '../autograd/variable.js';
import type { Module } from '../nn/module.js';
import { DataType } from './schema.js';
import { encodeModelProto, type AttributeProto, type ModelProto, type NodeProto, type TensorProto, type ValueInfoProto } from './schema.js';
import { OnnxError, attrToProto, tensorToProto, type AttrValue } from './reader.js';
import { VERSION } from '../version.js';

export const EXPORT_OPSET = 17;
export const EXPORT_IR = 8;

export interface ExportOptions {
  /** Input shape of one sample [C, H, W]. */
  sampleShape: readonly [number, number, number];
  inputName?: string;
  outputName?: string;
  /** Extra metadata_props (strings); wgtrain.classes / wgtrain.preprocessing are the conventions. */
  metadata?: Record<string, string>;
  graphName?: string;
}

type Pair = number | readonly number[] | undefined;
const pair = (v: Pair, d: number): [number, number] => (v === undefined ? [d, d] : typeof v === 'number' ? [v, v] : [v[0]!, v[1] ?? v[0]!]);
const pads4 = (p: Pair): number[] => {
  if (p === undefined) return [0, 0, 0, 0];
  if (typeof p === 'number') return [p, p, p, p];
  return p.length === 2 ? [p[0]!, p[1]!, p[0]!, p[1]!] : [...p];
};

/** Builds ONNX bytes for `model` (which is left in eval mode). */
export async function exportOnnx(gpu: Gpu, model: Module, o: ExportOptions): Promise<Uint8Array> {
  const inputName = o.inputName ?? 'input', outputName = o.outputName ?? 'logits';
  // Names of everything the model owns, by tensor.
  const tensorNames = new Map<Tensor, string>();
  for (const [n, t] of model.stateDict()) tensorNames.set(t, n);
  const names = new Map<Variable, string>();
  const nodes: NodeProto[] = [];
  const inits = new Map<string, { tensor: Tensor | null; proto?: TensorProto }>();
  let k = 0;
  const fresh = (base: string) => `${base}_${k++}`;

  /** The ONNX name of an op input: a previous output, a parameter/buffer, or a new constant. */
  const nameOf = (v: Variable): string => {
    const n = names.get(v);
    if (n) return n;
    const tn = tensorNames.get(v.data);
    if (tn) { inits.set(tn, { tensor: v.data }); names.set(v, tn); return tn; }
    const c = fresh(v.name ? v.name.replace(/[^A-Za-z0-9_.:/-]/g, '_') : 'const');
    inits.set(c, { tensor: v.data });
    names.set(v, c);
    return c;
  };
  const bufferName = (t: Tensor): string => {
    const tn = tensorNames.get(t) ?? fresh('buffer');
    inits.set(tn, { tensor: t });
    return tn;
  };
  const constInit = (base: string, dataType: number, dims: number[], data: number[]): string => {
    const name = fresh(base);
    inits.set(name, { tensor: null, proto: tensorToProto({ name, dims, dataType, data }) });
    return name;
  };
  const attr = (name: string, a: AttrValue): AttributeProto => attrToProto(name, a);
  const ints = (name: string, v: number[]): AttributeProto => attr(name, { type: 'ints', value: v });
  const int = (name: string, v: number): AttributeProto => attr(name, { type: 'int', value: v });
  const float = (name: string, v: number): AttributeProto => attr(name, { type: 'float', value: v });
  const emit = (op: string, inputs: string[], out: string, attrs: AttributeProto[] = []) => {
    nodes.push({ op_type: op, name: `${op}_${nodes.length}`, input: inputs, output: [out], attribute: attrs });
  };

  const onOp = (t: OpTrace) => {
    const out = fresh(t.op);
    names.set(t.output, out);
    const a = t.attrs as Record<string, any>;
    const ins = () => t.inputs.map(nameOf);
    const x = () => nameOf(t.inputs[0]!);
    switch (t.op) {
      case 'relu': emit('Relu', [x()], out); break;
      case 'leakyRelu': emit('LeakyRelu', [x()], out, [float('alpha', a.alpha)]); break;
      case 'sigmoid': emit('Sigmoid', [x()], out); break;
      case 'tanh': emit('Tanh', [x()], out); break;
      case 'clip': {
        const lo = Number.isFinite(a.lo) ? constInit('clip_min', DataType.FLOAT, [], [a.lo]) : '';
        const hi = Number.isFinite(a.hi) ? constInit('clip_max', DataType.FLOAT, [], [a.hi]) : '';
        emit('Clip', [x(), lo, hi], out);
        break;
      }
      case 'add': case 'sub': case 'mul': case 'div':
        emit(t.op[0]!.toUpperCase() + t.op.slice(1), ins(), out); break;
      case 'scale': emit('Mul', [x(), constInit('scale', DataType.FLOAT, [], [a.alpha])], out); break;
      case 'reshape': {
        const xs = t.inputs[0]!.shape, ys = a.shape as number[];
        if (xs.length > 2 && ys.length === 2 && ys[0] === xs[0]) emit('Flatten', [x()], out, [int('axis', 1)]);
        else {
          // The batch dimension (dim 0, when kept) is written as 0: "copy it", so any batch size works.
          const target = ys.map((d, i) => (i === 0 && d === xs[0] ? 0 : d));
          emit('Reshape', [x(), constInit('shape', DataType.INT64, [target.length], target)], out);
        }
        break;
      }
      case 'conv2d': {
        const w = t.inputs[1]!.shape;
        emit('Conv', ins(), out, [
          ints('kernel_shape', [w[2]!, w[3]!]), ints('strides', pair(a.stride, 1)), ints('dilations', pair(a.dilation, 1)),
          ints('pads', pads4(a.padding)), int('group', a.groups ?? 1),
        ]);
        break;
      }
      case 'linear': emit('Gemm', ins(), out, [float('alpha', 1), float('beta', 1), int('transB', 1)]); break;
      case 'batchNorm':
        if (a.stats !== 'running') throw new OnnxError('export traced a BatchNorm using batch statistics: export runs the model in eval mode; a custom module kept it in training mode');
        emit('BatchNormalization', [x(), nameOf(t.inputs[1]!), nameOf(t.inputs[2]!), bufferName(a.runningMean), bufferName(a.runningVar)], out,
          [float('epsilon', a.eps), float('momentum', 0.9)]);
        break;
      case 'maxPool2d': {
        const kk = pair(a.kernel, 1);
        emit('MaxPool', [x()], out, [ints('kernel_shape', kk), ints('strides', pair(a.stride, kk[0])), ints('pads', pads4(a.padding)),
          ints('dilations', pair(a.dilation, 1)), int('ceil_mode', a.ceilMode ? 1 : 0)]);
        break;
      }
      case 'avgPool2d': {
        const kk = pair(a.kernel, 1);
        emit('AveragePool', [x()], out, [ints('kernel_shape', kk), ints('strides', pair(a.stride, kk[0])), ints('pads', pads4(a.padding)),
          int('ceil_mode', a.ceilMode ? 1 : 0), int('count_include_pad', a.countIncludePad === false ? 0 : 1)]);
        break;
      }
      case 'globalAvgPool': emit('GlobalAveragePool', [x()], out); break;
      case 'adaptiveAvgPool2d': {
        const [H, W] = t.inputs[0]!.shape.slice(2) as [number, number];
        const [oh, ow] = pair(a.out, 1);
        if (H % oh || W % ow) throw new OnnxError(`cannot export adaptive average pooling of ${H}×${W} to ${oh}×${ow} (uneven bins); export at an input size where the map divides evenly`);
        emit('AveragePool', [x()], out, [ints('kernel_shape', [H / oh, W / ow]), ints('strides', [H / oh, W / ow])]);
        break;
      }
      case 'softmax': emit('Softmax', [x()], out, [int('axis', -1)]); break;
      case 'logSoftmax': emit('LogSoftmax', [x()], out, [int('axis', -1)]); break;
      case 'transpose': emit('Transpose', [x()], out, [ints('perm', [...a.perm])]); break;
      case 'concat': emit('Concat', ins(), out, [int('axis', a.axis)]); break;
      case 'pad': emit('Pad', [x(), constInit('pads', DataType.INT64, [a.pads.length], [...a.pads]), constInit('pad_value', DataType.FLOAT, [], [a.value ?? 0])], out); break;
      case 'slice': {
        const n = a.starts.length;
        const axes = a.axes ?? a.starts.map((_: number, i: number) => i), steps = a.steps ?? a.starts.map(() => 1);
        // NOTE: the launcher's "down to index 0" end of −1 (negative steps) is ONNX's INT64_MIN-ish end.
        const ends = a.ends.map((e: number, i: number) => (e < 0 && steps[i] < 0 ? -Number.MAX_SAFE_INTEGER : e));
        emit('Slice', [x(), constInit('starts', DataType.INT64, [n], [...a.starts]), constInit('ends', DataType.INT64, [n], ends),
          constInit('axes', DataType.INT64, [n], [...axes]), constInit('steps', DataType.INT64, [n], [...steps])], out);
        break;
      }
      case 'lrn': emit('LRN', [x()], out, [int('size', a.size), float('alpha', a.alpha ?? 1e-4), float('beta', a.beta ?? 0.75), float('bias', a.bias ?? 1)]); break;
      case 'dropout': emit('Identity', [x()], out); break;
      default:
        throw new OnnxError(`cannot export op '${t.op}' to ONNX`);
    }
    // A fused activation (conv2d, linear or batchNorm with `activation: 'relu'`, one kernel here)
    // is two nodes in ONNX: the op above wrote the pre-activation value, the Relu reads it. Names are
    // drawn in the same order as for the unfused ops, so the file is the same either way.
    if (a.activation === 'relu') {
      const r = fresh('relu');
      emit('Relu', [out], r);
      names.set(t.output, r);
    }
  };

  const [C, H, W] = o.sampleShape;
  const xt = Tensor.zeros(gpu, [1, C, H, W]);
  const xv = ops.constant(xt);
  names.set(xv, inputName);
  model.eval();
  let y: Variable;
  try {
    y = noGrad(() => traceOps(onOp, () => model.call(xv)));
  } catch (e) {
    releaseTape(); xt.dispose();
    throw e;
  }
  const yName = names.get(y);
  if (!yName || yName === inputName) throw new OnnxError('the model computes nothing from its input');
  // Rename the final value to the public output name.
  for (const nd of nodes) nd.output = nd.output!.map((s) => (s === yName ? outputName : s));
  const outShape = [...y.shape];
  // Read every initializer back from the GPU.
  const initializer: TensorProto[] = [];
  for (const [name, it] of inits) {
    if (it.proto) { initializer.push(it.proto); continue; }
    const data = await it.tensor!.read();
    initializer.push(tensorToProto({ name, dims: [...it.tensor!.shape], dataType: DataType.FLOAT, data }));
  }
  releaseTape();
  xt.dispose();

  const vi = (name: string, dims: (number | string)[]): ValueInfoProto => ({
    name, type: { tensor_type: { elem_type: DataType.FLOAT, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) } } },
  });
  const proto: ModelProto = {
    ir_version: EXPORT_IR, producer_name: 'wgtrain', producer_version: VERSION,
    opset_import: [{ domain: '', version: EXPORT_OPSET }],
    metadata_props: Object.entries(o.metadata ?? {}).map(([key, value]) => ({ key, value })),
    graph: {
      name: o.graphName ?? 'wgtrain', node: nodes, initializer,
      input: [vi(inputName, ['N', C, H, W])], output: [vi(outputName, ['N', ...outShape.slice(1)])],
    },
  };
  return encodeModelProto(proto);
}
