// ONNX graph normalizer: every backend node test in shared/onnx either normalizes or fails with an
// OnnxError naming its op; the real models normalize to the expected graphs; synthetic models (built
// with our encoder) exercise folding, fusions, sorting and the error paths.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { normalize, opVersion, samePads, type NormGraph, type NormalizeOptions } from '../../src/onnx/normalize.js';
import {
  OnnxError,
  attrToProto,
  decodeModel,
  loadExternalData,
  readModel,
  tensorToProto,
  type AttrValue,
  type OnnxModel,
  type OnnxTensor,
} from '../../src/onnx/reader.js';
import { DataType, encodeModelProto, type NodeProto, type ValueInfoProto } from '../../src/onnx/schema.js';
import { hasOnnxData, listBackendTests, loadTestDataSets, onnxDataDir } from '../../src/onnx/testdata.js';
import { Rng } from '../helpers.js';

const DATA = onnxDataDir();
const HAVE_DATA = hasOnnxData();
if (!HAVE_DATA) console.warn(`ONNX test data not found at ${DATA} (set WGTRAIN_ONNX_DATA): skipping the real-file tests`);

// ---- building small models with our encoder ---------------------------------------------------------

const ints = (value: number[]): AttrValue => ({ type: 'ints', value });
const int = (value: number): AttrValue => ({ type: 'int', value });
const flt = (value: number): AttrValue => ({ type: 'float', value });
const str = (value: string): AttrValue => ({ type: 'string', value });
const tensorAttr = (value: OnnxTensor): AttrValue => ({ type: 'tensor', value });

function node(op: string, input: string[], output: string[], attrs: Record<string, AttrValue> = {}, name = ''): NodeProto {
  return { op_type: op, input, output, name, attribute: Object.entries(attrs).map(([k, v]) => attrToProto(k, v)) };
}

function vi(name: string, shape: (number | string)[] | null, elem: number = DataType.FLOAT): ValueInfoProto {
  const dim = shape?.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d }));
  return { name, type: { tensor_type: { elem_type: elem, ...(dim ? { shape: { dim } } : {}) } } };
}

const rng = new Rng(1234);
function f32(name: string, dims: number[], values?: number[]): OnnxTensor {
  const n = dims.reduce((a, b) => a * b, 1);
  return { name, dims, dataType: DataType.FLOAT, data: Float32Array.from(values ?? Array.from({ length: n }, () => rng.uniform(-1, 1))) };
}
function i64(name: string, values: number[], dims = [values.length]): OnnxTensor {
  return { name, dims, dataType: DataType.INT64, data: values };
}

interface Spec { opset: number; nodes: NodeProto[]; inputs: ValueInfoProto[]; outputs: ValueInfoProto[]; inits?: OnnxTensor[] }

/** Encodes and decodes, so every synthetic test also exercises the encoder. */
function build(s: Spec): OnnxModel {
  return decodeModel(encodeModelProto({
    ir_version: 8,
    opset_import: [{ domain: '', version: s.opset }],
    graph: { name: 'test', node: s.nodes, input: s.inputs, output: s.outputs, initializer: (s.inits ?? []).map(tensorToProto) },
  }));
}

function ops(g: NormGraph): string[] { return g.nodes.map((n) => n.op); }

function histogram(g: NormGraph): Record<string, number> {
  const h: Record<string, number> = {};
  for (const n of g.nodes) h[n.op] = (h[n.op] ?? 0) + 1;
  return h;
}

function constantValues(g: NormGraph): number {
  let n = 0;
  for (const t of g.constants.values()) n += t.data.length;
  return n;
}

function expectOnnxError(f: () => unknown, ...res: RegExp[]): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(OnnxError);
    const msg = (e as Error).message;
    for (const re of res) expect(msg).toMatch(re);
    expect(msg).not.toContain('\n');
    return msg;
  }
  throw new Error(`expected an OnnxError matching ${res.join(', ')}`);
}

// ---- the ONNX backend node tests ----------------------------------------------------------------------

/**
 * The node tests a float32 CNN engine does not run, by design: integer types, training-mode outputs,
 * non-constant padding modes, Gather on run-time data, non-tensor types, ops outside the list.
 */
const EXPECTED_UNSUPPORTED = /_u?int(8|16|32|64)|training_mode|_mask|edge_pad|reflect_pad|wrap_pad|test_gather_|globalmaxpool|identity_opt|identity_sequence|upsample/;

interface Outcome { name: string; op: string; graph?: NormGraph; error?: unknown; outputDims?: number[][] }

function runSuite(suite: string): Outcome[] {
  return listBackendTests(join(DATA, suite)).map((t) => {
    const model = decodeModelFile(t.modelPath);
    const op = model.graph.nodes.at(-1)?.opType ?? '';
    let bind = new Map<string, OnnxTensor>();
    let outputDims: number[][] | undefined;
    try {
      // The backend tests feed weights, shapes, axes, pads, min/max as inputs; a real model has them as
      // initializers. Bind every input but the first to its value in test_data_set_0.
      const [set] = loadTestDataSets(t.dir);
      bind = new Map(model.graph.inputs.slice(1).map((v, k) => [v.name, set!.inputs[k + 1]!]));
      outputDims = set!.outputs.map((o) => o.dims);
    } catch {
      // Sequence/optional test data are not TensorProtos; those tests are refused anyway.
    }
    try {
      return { name: t.name, op, graph: normalize(model, { bindInputs: bind }), outputDims };
    } catch (error) {
      return { name: t.name, op, error };
    }
  });
}

const modelCache = new Map<string, OnnxModel>();
function decodeModelFile(path: string): OnnxModel {
  let m = modelCache.get(path);
  if (!m) {
    // Small files: the synchronous path (readModel is async only for the file and external data).
    m = decodeModel(new Uint8Array(readFileSync(path)));
    modelCache.set(path, m);
  }
  return m;
}

describe.skipIf(!HAVE_DATA)('normalize: ONNX backend node tests', () => {
  const results = new Map<string, Outcome[]>();
  const suite = (s: string) => {
    if (!results.has(s)) results.set(s, runSuite(s));
    return results.get(s)!;
  };

  for (const s of ['node', 'node_opset11', 'node_opset9']) {
    it(`${s}: every test normalizes or is refused with an OnnxError naming its op`, () => {
      const outcomes = suite(s);
      const ok = outcomes.filter((o) => o.graph);
      const refused = outcomes.filter((o) => o.error);
      console.log(`${s}: ${ok.length} normalize, ${refused.length} refused as unsupported ` +
        `(${refused.map((o) => o.name.replace(/^test_/, '')).join(', ')})`);
      for (const o of refused) {
        expect(o.error, o.name).toBeInstanceOf(OnnxError);
        const msg = (o.error as Error).message;
        expect(msg, o.name).toContain(`(${o.op}, opset `);
        expect(msg, o.name).toContain('Supported: ');
        expect(o.name, `${o.name} was refused: ${msg}`).toMatch(EXPECTED_UNSUPPORTED);
      }
      for (const o of ok) expect(o.name, `${o.name} should have been refused`).not.toMatch(EXPECTED_UNSUPPORTED);
      expect(ok.length).toBeGreaterThan(outcomes.length * 0.8);
    });
  }

  it('shape inference agrees with the dims of every reference output', () => {
    let checked = 0;
    for (const s of ['node', 'node_opset11', 'node_opset9']) {
      for (const o of suite(s)) {
        if (!o.graph || !o.outputDims) continue;
        o.graph.outputs.forEach((out, i) => expect(out.shape, `${s}/${o.name} output ${i}`).toEqual(o.outputDims![i]));
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(250);
  });

  it('one internal form whatever the opset (attributes vs inputs; defaults)', () => {
    const find = (s: string, name: string) => {
      const o = suite(s).find((x) => x.name === name);
      expect(o?.graph, `${s}/${name}`).toBeDefined();
      return o!.graph!;
    };
    // Same test written against three op versions: attributes (Pad-2, Clip-6, Unsqueeze-1, Dropout-7)
    // or constant inputs (Pad-11/25, Clip-11/13, Unsqueeze-13, Dropout-12) give the same node.
    for (const name of ['test_constant_pad', 'test_clip', 'test_clip_default_min', 'test_clip_splitbounds', 'test_dropout_default']) {
      const a = find('node_opset9', name).nodes[0]!;
      for (const s of ['node_opset11', 'node']) {
        const b = find(s, name).nodes[0]!;
        expect([b.op, b.attrs], `${s}/${name}`).toEqual([a.op, a.attrs]);
        expect(b.inputs.length).toBe(1);
      }
    }
    expect(find('node_opset9', 'test_unsqueeze').nodes[0]!.attrs).toEqual({ axes: [0] });
    expect(find('node', 'test_unsqueeze_negative_axes').nodes[0]!.attrs).toEqual({ axes: [3] }); // −2 of rank 5
    expect(find('node_opset11', 'test_unsqueeze_unsorted_axes').nodes[0]!.attrs).toEqual({ axes: [2, 4, 5] });
    expect(find('node', 'test_constant_pad_axes').nodes[0]!.attrs).toEqual({ pads: [0, 0, 0, 3, 0, 0, 0, 4], value: expect.closeTo(1.2, 6) });
    expect(find('node', 'test_clip_default_inbounds').nodes[0]!.attrs).toEqual({ min: -Infinity, max: Infinity });
    // Softmax: opset < 13 coerces to 2-D at axis (default 1); ≥ 13 is one axis (default −1).
    expect(find('node_opset9', 'test_softmax_default_axis').nodes[0]!.attrs).toEqual({ axis: 1, coerce2d: true });
    expect(find('node_opset11', 'test_softmax_axis_2').nodes[0]!.attrs).toEqual({ axis: 2, coerce2d: false }); // last axis: same thing
    expect(find('node', 'test_softmax_default_axis').nodes[0]!.attrs).toEqual({ axis: 2, coerce2d: false });
    expect(find('node', 'test_logsoftmax_axis_1').nodes[0]!.attrs).toEqual({ axis: 1, coerce2d: false });
    // Pooling: auto_pad resolved (odd pixel at the end for SAME_UPPER, the start for SAME_LOWER),
    // count_include_pad defaults to 0, ceil_mode kept.
    const upper = find('node', 'test_averagepool_2d_same_upper').nodes[0]!.attrs;
    expect(upper).toMatchObject({ pads: [0, 0, 1, 1], autoPad: 'NOTSET', countIncludePad: false, ceilMode: false });
    expect(find('node', 'test_maxpool_2d_same_lower').nodes[0]!.attrs).toMatchObject({ pads: [1, 1, 0, 0], autoPad: 'NOTSET' });
    expect(find('node_opset11', 'test_averagepool_2d_pads_count_include_pad').nodes[0]!.attrs).toMatchObject({ countIncludePad: true });
    expect(find('node', 'test_maxpool_2d_ceil').nodes[0]!.attrs).toMatchObject({ ceilMode: true });
    expect(find('node', 'test_conv_with_autopad_same').nodes[0]!.attrs).toMatchObject({ pads: [1, 1, 1, 1], autoPad: 'NOTSET' });
    // Folded entirely: Shape of a static shape, a Constant.
    const shape = find('node', 'test_shape_start_1');
    expect(shape.nodes).toEqual([]);
    expect(shape.constants.get('y')!.data).toEqual([4, 5]);
    expect(find('node', 'test_constant').nodes).toEqual([]);
    // A Reshape that keeps the first axis and flattens the rest is a Flatten.
    expect(ops(find('node', 'test_reshape_reduced_dims'))).toEqual(['Flatten']);
    expect(find('node', 'test_reshape_negative_dim').nodes[0]!.attrs).toEqual({ shape: [2, -1, 2], allowzero: false });
  });
});

// ---- real models ---------------------------------------------------------------------------------------

describe.skipIf(!HAVE_DATA)('normalize: real models', () => {
  it('mnist-8 (CNTK, opset 8): Reshape of a weight folded, Conv+Add and MatMul+Add fused', async () => {
    const m = await readModel(join(DATA, 'real/mnist-8/model.onnx'));
    const g = normalize(m);
    expect(g.opset).toBe(8);
    expect(g.inputs).toEqual([{ name: 'Input3', elemType: DataType.FLOAT, shape: [1, 1, 28, 28] }]);
    expect(ops(g)).toEqual(['Conv', 'Relu', 'MaxPool', 'Conv', 'Relu', 'MaxPool', 'Flatten', 'Gemm']);
    expect(constantValues(g)).toBe(5994);
    const [conv1] = g.nodes;
    expect(conv1!.inputs).toEqual(['Input3', 'Parameter5', 'Parameter6']);
    expect(conv1!.attrs).toMatchObject({ pads: [2, 2, 2, 2], autoPad: 'NOTSET' }); // SAME_UPPER, 5×5
    expect(g.constants.get('Parameter6')!.dims).toEqual([8]);
    expect(g.constants.has('Parameter193')).toBe(false); // only its reshaped copy is read
    expect(g.constants.get('Parameter193_reshape1')!.dims).toEqual([256, 10]);
    const gemm = g.nodes.at(-1)!;
    expect(gemm).toMatchObject({ op: 'Gemm', onnxOp: 'MatMul', attrs: { alpha: 1, beta: 1, transA: false, transB: false } });
    expect(gemm.inputs).toEqual(['Pooling160_Output_0_reshape0', 'Parameter193_reshape1', 'Parameter194']);
    expect(g.constants.get('Parameter194')!.dims).toEqual([10]);
    expect(g.values.get('Pooling160_Output_0')!.shape).toEqual([1, 16, 4, 4]);
    expect(g.outputs).toEqual([{ name: 'Plus214_Output_0', elemType: DataType.FLOAT, shape: [1, 10] }]);

    const raw = normalize(m, { fuseBias: false });
    expect(histogram(raw)).toEqual({ Conv: 2, Add: 3, Relu: 2, MaxPool: 2, Flatten: 1, MatMul: 1 });
  });

  it('the other real models, and resnet34_torchstyle', async () => {
    const cases: [string, Record<string, number>, number][] = [
      ['real/mnist-8_opt_wonnx', { Conv: 2, Relu: 2, MaxPool: 2, Flatten: 1, Gemm: 1 }, 5994],
      ['real/cnn_mnist_pytorch1.1', { Conv: 2, MaxPool: 2, Relu: 4, Flatten: 1, Gemm: 2, LogSoftmax: 1 }, 21840],
      // The BN γ/β come from Constant nodes: folded into constants.
      ['real/mnist_mlp_bn_pytorch1.7', { MatMul: 3, BatchNormalization: 2 }, 784 * 64 + 64 * 64 + 64 * 10 + 8 * 64],
      ['resnet34_torchstyle', { Conv: 36, Relu: 33, Add: 16, MaxPool: 1, GlobalAveragePool: 1, Flatten: 1, Gemm: 1 }, 21_789_160],
    ];
    for (const [dir, hist, params] of cases) {
      const g = normalize(await readModel(join(DATA, dir, 'model.onnx')));
      expect(histogram(g), dir).toEqual(hist);
      expect(constantValues(g), dir).toBe(params);
      const [set] = loadTestDataSets(join(DATA, dir.includes('wonnx') ? 'real/mnist-8' : dir));
      expect(g.outputs.map((o) => o.shape), dir).toEqual(set!.outputs.map((o) => o.dims));
    }
  });

  it('cnn_mnist_pytorch1.1: Constant [-1, 320] + Reshape becomes Flatten(axis 1)', async () => {
    const g = normalize(await readModel(join(DATA, 'real/cnn_mnist_pytorch1.1/model.onnx')));
    const flat = g.nodes.find((n) => n.onnxOp === 'Reshape')!;
    expect(flat).toMatchObject({ op: 'Flatten', attrs: { axis: 1 }, inputs: ['14'], outputs: ['16'] });
    expect(g.values.get('16')!.shape).toEqual([1, 320]);
  });

  it('resnet34_torchstyle with a symbolic batch: shapes carry the symbol', async () => {
    const g = normalize(await readModel(join(DATA, 'resnet34_torchstyle/model.onnx')), { inputShapes: { input: ['N', 3, 224, 224] } });
    expect(g.outputs[0]!.shape).toEqual(['N', 1000]);
    const gap = g.nodes.find((n) => n.op === 'GlobalAveragePool')!;
    expect(g.values.get(gap.outputs[0]!)!.shape).toEqual(['N', 512, 1, 1]);
    const pool = g.nodes.find((n) => n.op === 'MaxPool')!;
    expect(g.values.get(pool.outputs[0]!)!.shape).toEqual(['N', 64, 56, 56]);
  });

  it('torch ≥ 2.9 dynamo export (graph_only resnet18): ReduceMean + Reshape([1,512]) become GlobalAveragePool + Flatten', async () => {
    const dir = join(DATA, 'graph_only');
    const file = join(dir, readdirSync(dir, { recursive: true }).map(String).find((p) => p.endsWith('resnet18.onnx'))!);
    const m = await readModel(file, { skipExternalData: true });
    expectOnnxError(() => normalize(m), /resnet18\.onnx\.data/, /loadExternalData/);
    // Its data file is not in the repository: zeros stand in for the weights.
    await loadExternalData(m, async (_loc, _off, length) => new Uint8Array(length));
    const g = normalize(m);
    expect(histogram(g)).toEqual({ Conv: 20, Relu: 17, MaxPool: 1, Add: 8, GlobalAveragePool: 1, Flatten: 1, Gemm: 1 });
    expect(g.nodes.slice(-3).map((n) => [n.op, n.onnxOp])).toEqual([['GlobalAveragePool', 'ReduceMean'], ['Flatten', 'Reshape'], ['Gemm', 'Gemm']]);
    expect(g.nodes.at(-2)!.attrs).toEqual({ axis: 1 });
    expect(g.outputs[0]!.shape).toEqual([1, 1000]);
    expect(g.constants.has('val_226')).toBe(false); // the axes and shape constants are attributes now
  });
});

// ---- synthetic models ------------------------------------------------------------------------------------

describe('normalize: synthetic models', () => {
  it('op versions: the newest ≤ the opset', () => {
    expect(opVersion('Softmax', 12)).toBe(11);
    expect(opVersion('Softmax', 13)).toBe(13);
    expect(opVersion('Reshape', 17)).toBe(14);
    expect(opVersion('BatchNormalization', 8)).toBe(7);
    expect(opVersion('ConstantOfShape', 8)).toBeUndefined();
    expect(opVersion('Tanh', 13)).toBeUndefined(); // not supported
    expect(samePads([5], [3], [2], [1], true)).toEqual([1, 1]);
    expect(samePads([6], [3], [2], [1], true)).toEqual([0, 1]); // total 1: the odd pixel at the end
    expect(samePads([6], [3], [2], [1], false)).toEqual([1, 0]); // ... or at the start
  });

  /** x.view(x.size(0), -1) as torch exports it: Shape → Gather → Unsqueeze → Concat → Reshape. */
  function viewChain(opset: number, batch: number | string): OnnxModel {
    const unsqueeze = opset >= 13
      ? node('Unsqueeze', ['n', 'axes0'], ['n1'])
      : node('Unsqueeze', ['n'], ['n1'], { axes: ints([0]) });
    return build({
      opset,
      inputs: [vi('x', [batch, 3, 4, 4])],
      outputs: [vi('y', [batch, 5])],
      inits: [f32('conv.weight', [2, 3, 3, 3]), f32('fc.weight', [5, 32]), f32('fc.bias', [5]), ...(opset >= 13 ? [i64('axes0', [0])] : [])],
      nodes: [
        node('Conv', ['x', 'conv.weight'], ['c'], { pads: ints([1, 1, 1, 1]), kernel_shape: ints([3, 3]) }),
        node('Shape', ['c'], ['s']),
        node('Constant', [], ['zero'], { value: tensorAttr(i64('', [0], [])) }),
        node('Gather', ['s', 'zero'], ['n'], { axis: int(0) }),
        unsqueeze,
        node('Constant', [], ['minus1'], { value: tensorAttr(i64('', [-1])) }),
        node('Concat', ['n1', 'minus1'], ['target'], { axis: int(0) }),
        node('Reshape', ['c', 'target'], ['flat']),
        node('Gemm', ['flat', 'fc.weight', 'fc.bias'], ['y'], { transB: int(1) }),
      ],
    });
  }

  for (const opset of [11, 13]) {
    for (const batch of [2, 'N']) {
      it(`folds the Shape→Gather→Unsqueeze→Concat→Reshape chain (opset ${opset}, batch ${batch})`, () => {
        const g = normalize(viewChain(opset, batch));
        expect(ops(g)).toEqual(['Conv', 'Flatten', 'Gemm']);
        expect(g.nodes[1]).toMatchObject({ inputs: ['c'], outputs: ['flat'], attrs: { axis: 1 }, onnxOp: 'Reshape' });
        expect([...g.constants.keys()].sort()).toEqual(['conv.weight', 'fc.bias', 'fc.weight']);
        expect(g.values.get('flat')!.shape).toEqual([batch, 32]);
        expect(g.outputs[0]!.shape).toEqual([batch, 5]);
      });
    }
  }

  it('a symbolic target entry that is not a copy of the same input axis becomes −1, else an error', () => {
    // Reshape(x [N,3,4,4], [N·?]) cannot be expressed: two unknown entries.
    const m = build({
      opset: 13,
      inputs: [vi('x', ['N', 'C', 4, 4])],
      outputs: [vi('y', null)],
      nodes: [node('Shape', ['x'], ['s']), node('Reshape', ['x', 's'], ['y0']), node('Relu', ['y0'], ['y'])],
    });
    // [N, C, 4, 4] copies every axis: a no-op reshape.
    const g = normalize(m);
    expect(g.nodes[0]).toMatchObject({ op: 'Reshape', attrs: { shape: [0, 0, 4, 4], allowzero: false } });
    expect(g.values.get('y')!.shape).toEqual(['N', 'C', 4, 4]);
    const swapped = build({
      opset: 13,
      inputs: [vi('x', ['N', 'C', 4, 4])],
      outputs: [vi('y', null)],
      inits: [i64('perm', [1, 0, 2, 3])],
      nodes: [node('Shape', ['x'], ['s']), node('Gather', ['s', 'perm'], ['t']), node('Reshape', ['x', 't'], ['y'])],
    });
    expectOnnxError(() => normalize(swapped), /\(Shape, opset 13\)/, /run-time shape \[C, N, 4, 4\]/);
  });

  /** y = conv(x, W, B) with pads 1, stride 1 — a float64 reference. x [1,C,H,W], W [K,C,3,3]. */
  function conv3x3(x: ArrayLike<number>, C: number, H: number, Wd: number, w: ArrayLike<number>, b: ArrayLike<number> | null, K: number): Float64Array {
    const y = new Float64Array(K * H * Wd);
    for (let k = 0; k < K; k++) {
      for (let h = 0; h < H; h++) {
        for (let v = 0; v < Wd; v++) {
          let acc = b ? b[k]! : 0;
          for (let c = 0; c < C; c++) {
            for (let r = 0; r < 3; r++) {
              for (let s = 0; s < 3; s++) {
                const ih = h + r - 1, iw = v + s - 1;
                if (ih >= 0 && ih < H && iw >= 0 && iw < Wd) acc += x[(c * H + ih) * Wd + iw]! * w[((k * C + c) * 3 + r) * 3 + s]!;
              }
            }
          }
          y[(k * H + h) * Wd + v] = acc;
        }
      }
    }
    return y;
  }

  for (const withBias of [true, false]) {
    it(`foldBatchNorm: Conv${withBias ? '+bias' : ''} → BN folds into the conv weights (numerically)`, () => {
      const [C, K, H, W] = [2, 3, 5, 5];
      const eps = 1e-3;
      const w = f32('conv.weight', [K, C, 3, 3]);
      const b = f32('conv.bias', [K]);
      const gamma = f32('bn.weight', [K]), beta = f32('bn.bias', [K]), mean = f32('bn.running_mean', [K]);
      const variance = f32('bn.running_var', [K], [0.5, 1.7, 0.01]);
      const m = build({
        opset: 15,
        inputs: [vi('x', [1, C, H, W])],
        outputs: [vi('y', [1, K, H, W])],
        inits: [w, ...(withBias ? [b] : []), gamma, beta, mean, variance],
        nodes: [
          node('Conv', ['x', 'conv.weight', ...(withBias ? ['conv.bias'] : [])], ['c'], { pads: ints([1, 1, 1, 1]) }, 'conv'),
          node('BatchNormalization', ['c', 'bn.weight', 'bn.bias', 'bn.running_mean', 'bn.running_var'], ['bn'], { epsilon: flt(eps) }, 'bn'),
          node('Relu', ['bn'], ['y']),
        ],
      });
      expect(ops(normalize(m))).toEqual(['Conv', 'BatchNormalization', 'Relu']);
      const g = normalize(m, { foldBatchNorm: true });
      expect(ops(g)).toEqual(['Conv', 'Relu']);
      const biasName = withBias ? 'conv.bias' : 'bn.bias';
      expect(g.nodes[0]!.inputs).toEqual(['x', 'conv.weight', biasName]);
      expect(g.nodes[0]!.outputs).toEqual(['bn']);
      expect([...g.constants.keys()].sort()).toEqual([biasName, 'conv.weight'].sort());

      const x = Float32Array.from({ length: C * H * W }, () => rng.uniform(-2, 2));
      const conv = conv3x3(x, C, H, W, w.data as Float32Array, withBias ? (b.data as Float32Array) : null, K);
      const want = conv.map((v, i) => {
        const k = Math.floor(i / (H * W));
        return ((v - mean.data[k]!) / Math.sqrt(variance.data[k]! + eps)) * gamma.data[k]! + beta.data[k]!;
      });
      const got = conv3x3(x, C, H, W, g.constants.get('conv.weight')!.data as Float32Array, g.constants.get(biasName)!.data as Float32Array, K);
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!) / (Math.abs(want[i]!) + 1e-3));
      console.log(`foldBatchNorm (bias ${withBias}): max rel err ${worst.toExponential(2)}`);
      expect(worst).toBeLessThan(1e-5);
    });
  }

  it('sorts nodes listed out of order; refuses cycles and inputs nobody produces', () => {
    const unsorted = build({
      opset: 13,
      inputs: [vi('x', [1, 4])],
      outputs: [vi('y', [1, 4])],
      nodes: [node('Sigmoid', ['b'], ['y'], {}, 'last'), node('Relu', ['a'], ['b'], {}, 'middle'), node('Relu', ['x'], ['a'], {}, 'first')],
    });
    expect(normalize(unsorted).nodes.map((n) => n.name)).toEqual(['first', 'middle', 'last']);

    const cycle = build({
      opset: 13,
      inputs: [vi('x', [1, 4])],
      outputs: [vi('y', [1, 4])],
      nodes: [node('Add', ['x', 'b'], ['a'], {}, 'A'), node('Relu', ['a'], ['b'], {}, 'B'), node('Relu', ['b'], ['y'], {}, 'C')],
    });
    expectOnnxError(() => normalize(cycle), /cycle/, /'A'|'B'/);

    const dangling = build({
      opset: 13,
      inputs: [vi('x', [1, 4])],
      outputs: [vi('y', [1, 4])],
      nodes: [node('Add', ['x', 'ghost'], ['y'], {}, 'add')],
    });
    expectOnnxError(() => normalize(dangling), /node 'add' \(Add\) reads 'ghost'/);

    // A dead branch with an unsupported op is ignored: only what feeds an output counts.
    const dead = build({
      opset: 13,
      inputs: [vi('x', [1, 4])],
      outputs: [vi('y', [1, 4])],
      nodes: [node('Tanh', ['x'], ['unused']), node('Relu', ['x'], ['y'])],
    });
    expect(ops(normalize(dead))).toEqual(['Relu']);
  });

  it('unsupported ops, domains, attributes and types name the node, op, opset and the supported ops', () => {
    const one = (n: NodeProto, opset = 13, inits: OnnxTensor[] = [], inputs = [vi('x', [1, 2, 4, 4])]) =>
      build({ opset, inputs, outputs: [vi('y', null)], nodes: [n], inits });
    expectOnnxError(() => normalize(one(node('Tanh', ['x'], ['y'], {}, 't1'))), /node 't1' \(Tanh, opset 13\)/, /Supported: Conv, Gemm/);
    expectOnnxError(() => normalize(one({ ...node('FusedConv', ['x'], ['y']), domain: 'com.microsoft' })), /com\.microsoft/);
    expectOnnxError(() => normalize(one(node('ConstantOfShape', ['x'], ['y']), 8)), /ConstantOfShape does not exist in opset 8/);
    expectOnnxError(() => normalize(one(node('Pad', ['x', 'p'], ['y'], { mode: str('reflect') }), 13, [i64('p', [0, 0, 1, 1, 0, 0, 1, 1])])),
      /\(Pad, opset 13\).*mode 'reflect'/);
    expectOnnxError(() => normalize(one(node('Clip', ['x', 'lo'], ['y']), 13, [], [vi('x', [1, 2]), vi('lo', [])])),
      /\(Clip, opset 13\).*min \(input 1 'lo'\) must be a constant/);
    expectOnnxError(() => normalize(one(node('Relu', ['x'], ['y']), 13, [], [vi('x', [3], DataType.DOUBLE)])), /\(Relu, opset 13\).*DOUBLE.*float32/);
    expectOnnxError(() => normalize(one(node('BatchNormalization', ['x', 's', 'b', 'm', 'v'], ['y'], { spatial: int(0) }), 7,
      ['s', 'b', 'm', 'v'].map((k) => f32(k, [2])))), /spatial = 0/);
    // MaxPool's Indices output is fine while nothing reads it, refused when something does.
    expect(ops(normalize(one(node('MaxPool', ['x'], ['y', 'idx'], { kernel_shape: ints([2, 2]) }))))).toEqual(['MaxPool']);
    const maxIdx = build({
      opset: 13, inputs: [vi('x', [1, 2, 4, 4])], outputs: [vi('y', null), vi('idx', null)],
      nodes: [node('MaxPool', ['x'], ['y', 'idx'], { kernel_shape: ints([2, 2]) })],
    });
    expectOnnxError(() => normalize(maxIdx), /Indices output 'idx' is used/);
  });

  it('Identity folds away (torch 1.13 routes conv biases through it); a renamed graph output keeps an Identity', () => {
    const m = build({
      opset: 13,
      inputs: [vi('x', [1, 2, 4, 4])],
      outputs: [vi('y', null), vi('z', null)],
      inits: [f32('w', [3, 2, 1, 1]), f32('b', [3])],
      nodes: [
        node('Identity', ['b'], ['onnx::Conv_7']),
        node('Conv', ['x', 'w', 'onnx::Conv_7'], ['c']),
        node('Relu', ['c'], ['y']),
        node('Identity', ['y'], ['z']),
      ],
    });
    const g = normalize(m);
    expect(g.nodes.map((n) => [n.op, n.inputs, n.outputs])).toEqual([
      ['Conv', ['x', 'w', 'b'], ['c']], ['Relu', ['c'], ['y']], ['Identity', ['y'], ['z']],
    ]);
    expect(g.values.get('z')!.shape).toEqual([1, 3, 4, 4]);
  });

  it('ReduceMean over the spatial axes is GlobalAveragePool (keepdims 0 adds a Flatten); others are refused or kept', () => {
    const rm = (opset: number, axes: number[], keepdims: number) => build({
      opset,
      inputs: [vi('x', ['N', 8, 5, 5])],
      outputs: [vi('y', null)],
      inits: opset >= 18 ? [i64('axes', axes)] : [],
      nodes: [node('ReduceMean', opset >= 18 ? ['x', 'axes'] : ['x'], ['y'], { keepdims: int(keepdims), ...(opset < 18 ? { axes: ints(axes) } : {}) })],
    });
    for (const opset of [13, 18]) {
      const g = normalize(rm(opset, [-1, -2], 1));
      expect(ops(g)).toEqual(['GlobalAveragePool']);
      expect(g.outputs[0]!.shape).toEqual(['N', 8, 1, 1]);
      const flat = normalize(rm(opset, [2, 3], 0));
      expect(ops(flat)).toEqual(['GlobalAveragePool', 'Flatten']);
      expect(flat.outputs[0]!.shape).toEqual(['N', 8]);
      expect(normalize(rm(opset, [3], 1)).nodes[0]).toMatchObject({ op: 'ReduceMean', attrs: { axes: [3], keepdims: true } });
      expectOnnxError(() => normalize(rm(opset, [1], 1)), /\(ReduceMean, opset \d+\).*only spatial axes/);
    }
  });

  it('Squeeze of [N,C,1,1] to [N,C] is a Flatten; legacy (opset < 7) broadcasting becomes numpy-style', () => {
    const sq = build({
      opset: 11, inputs: [vi('x', ['N', 8, 1, 1])], outputs: [vi('y', null)],
      nodes: [node('Squeeze', ['x'], ['y'], { axes: ints([2, 3]) })],
    });
    expect(normalize(sq).nodes[0]).toMatchObject({ op: 'Flatten', attrs: { axis: 1 } });

    const legacy = build({
      opset: 6, inputs: [vi('x', [2, 3, 4, 5])], outputs: [vi('y', null)], inits: [f32('b', [3], [1, 2, 3])],
      nodes: [node('Add', ['x', 'b'], ['y'], { broadcast: int(1), axis: int(1) })],
    });
    const g = normalize(legacy);
    const add = g.nodes[0]!;
    expect(add.op).toBe('Add');
    expect(g.constants.get(add.inputs[1]!)!.dims).toEqual([3, 1, 1]);
    expect(g.outputs[0]!.shape).toEqual([2, 3, 4, 5]);
  });

  it('auto_pad stays symbolic when the input size is unknown; Pad-1/2 attributes', () => {
    const m = build({
      opset: 11,
      inputs: [vi('x', ['N', 3, 'H', 'W'])],
      outputs: [vi('y', null)],
      inits: [f32('w', [4, 3, 3, 3])],
      nodes: [node('Conv', ['x', 'w'], ['y'], { auto_pad: str('SAME_UPPER'), strides: ints([2, 2]) })],
    });
    const conv = normalize(m).nodes[0]!;
    expect(conv.attrs).toMatchObject({ kernelShape: [3, 3], autoPad: 'SAME_UPPER', pads: [0, 0, 0, 0], strides: [2, 2] });
    const known = normalize(m, { inputShapes: { x: ['N', 3, 7, 8] } });
    expect(known.nodes[0]!.attrs).toMatchObject({ autoPad: 'NOTSET', pads: [1, 0, 1, 1] }); // H: total 2; W: total 1, at the end
    expect(known.outputs[0]!.shape).toEqual(['N', 4, 4, 4]);

    for (const [opset, key] of [[1, 'paddings'], [2, 'pads']] as const) {
      const pad = build({
        opset, inputs: [vi('x', [1, 2, 3, 3])], outputs: [vi('y', null)],
        nodes: [node('Pad', ['x'], ['y'], { [key]: ints([0, 0, 1, 2, 0, 0, 3, 4]), value: flt(-1) })],
      });
      const g = normalize(pad);
      expect(g.nodes[0]).toMatchObject({ op: 'Pad', attrs: { pads: [0, 0, 1, 2, 0, 0, 3, 4], value: -1 } });
      expect(g.outputs[0]!.shape).toEqual([1, 2, 7, 9]);
    }
  });

  it('ConstantOfShape, Gather, Transpose and arithmetic on constants fold to constants', () => {
    const m = build({
      opset: 13,
      inputs: [vi('x', [2, 3])],
      outputs: [vi('y', null)],
      inits: [f32('a', [3], [1, 2, 3]), f32('b', [3], [10, 20, 30]), i64('rows', [1]), f32('w', [2, 3], [1, 2, 3, 4, 5, 6])],
      nodes: [
        node('Shape', ['x'], ['s']),
        node('ConstantOfShape', ['s'], ['half'], { value: tensorAttr(f32('', [1], [0.5])) }),
        node('Mul', ['a', 'b'], ['ab']), // [10, 40, 90]
        node('Add', ['half', 'ab'], ['bias']), // [2,3]: every row [10.5, 40.5, 90.5]
        node('Gather', ['bias', 'rows'], ['row'], { axis: int(0) }), // [1,3]
        node('Add', ['x', 'row'], ['xb']),
        node('Transpose', ['w'], ['wt']), // [3,2]
        node('MatMul', ['xb', 'wt'], ['y']),
      ],
    });
    const g = normalize(m, { fuseBias: false });
    expect(ops(g)).toEqual(['Add', 'MatMul']);
    const row = g.constants.get('row')!;
    expect(row.dims).toEqual([1, 3]);
    expect(Array.from(row.data)).toEqual([10.5, 40.5, 90.5]);
    const wt = g.constants.get('wt')!;
    expect(wt.dims).toEqual([3, 2]);
    expect(Array.from(wt.data)).toEqual([1, 4, 2, 5, 3, 6]);
    expect(g.outputs[0]!.shape).toEqual([2, 2]);
  });

  it('bound inputs become constants; pending external data is refused', () => {
    const m = build({
      opset: 13,
      inputs: [vi('x', [2, 3]), vi('shape', [2], DataType.INT64)],
      outputs: [vi('y', null)],
      nodes: [node('Reshape', ['x', 'shape'], ['y'])],
    });
    expectOnnxError(() => normalize(m), /shape \(input 1 'shape'\) must be a constant/);
    const opts: NormalizeOptions = { bindInputs: new Map([['shape', i64('shape', [3, 2])]]) };
    const g = normalize(m, opts);
    expect(g.inputs.map((i) => i.name)).toEqual(['x']);
    expect(g.nodes[0]).toMatchObject({ op: 'Reshape', inputs: ['x'], attrs: { shape: [3, 2], allowzero: false } });
    expect(g.outputs[0]!.shape).toEqual([3, 2]);

    const ext = build({ opset: 13, inputs: [vi('x', [2])], outputs: [vi('y', null)], nodes: [node('Add', ['x', 'w'], ['y'])] });
    ext.graph.initializers.set('w', { name: 'w', dims: [2], dataType: DataType.FLOAT, data: new Float32Array(0), external: { location: 'w.bin', offset: 0, length: 8 } });
    expectOnnxError(() => normalize(ext), /'w'.*'w\.bin'/);
  });
});
