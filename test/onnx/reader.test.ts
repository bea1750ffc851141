// ONNX reader: the real files in shared/onnx (skipped with a notice where absent), and synthetic files
// built with our own encoder: external data, fp16, unaligned raw_data, truncated bytes.

import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  OnnxError,
  attrToProto,
  decodeModel,
  loadExternalData,
  pendingExternalTensors,
  readModel,
  readTensorProto,
  tensorToProto,
  type OnnxModel,
  type OnnxTensor,
} from '../../src/onnx/reader.js';
import {
  AttributeType,
  DataType,
  decodeTensorProto,
  encodeModelProto,
  encodeTensorProto,
  type GraphProto,
  type ModelProto,
  type TensorProto,
} from '../../src/onnx/schema.js';
import { hasOnnxData, loadTestDataSets, onnxDataDir } from '../../src/onnx/testdata.js';

const DATA = onnxDataDir();
const HAVE_DATA = hasOnnxData();
if (!HAVE_DATA) console.warn(`ONNX test data not found at ${DATA} (set WGTRAIN_ONNX_DATA): skipping the real-file tests`);

/** Expects `f` to throw (or reject with) an OnnxError whose message matches `re`; returns the message. */
async function expectOnnxError(f: () => unknown, re: RegExp): Promise<string> {
  try {
    await f();
  } catch (e) {
    expect(e).toBeInstanceOf(OnnxError);
    const msg = (e as Error).message;
    expect(msg).toMatch(re);
    expect(msg).not.toContain('\n');
    return msg;
  }
  throw new Error(`expected an OnnxError matching ${re}`);
}

function histogram(m: OnnxModel): Record<string, number> {
  const h: Record<string, number> = {};
  for (const n of m.graph.nodes) h[n.opType] = (h[n.opType] ?? 0) + 1;
  return h;
}

function floatParams(m: OnnxModel): number {
  let n = 0;
  for (const t of m.graph.initializers.values()) if (t.data instanceof Float32Array) n += t.data.length;
  return n;
}

/** A one-node model around the given tensors (enough for the reader). */
function tinyModel(initializers: TensorProto[], extra: Partial<GraphProto> = {}): ModelProto {
  return {
    ir_version: 8,
    producer_name: 'wgtrain-test',
    opset_import: [{ domain: '', version: 17 }],
    graph: {
      name: 'g',
      node: [{ op_type: 'Identity', input: ['x'], output: ['y'], name: 'id' }],
      input: [{ name: 'x', type: { tensor_type: { elem_type: DataType.FLOAT, shape: { dim: [{ dim_param: 'N' }, { dim_value: 3 }] } } } }],
      output: [{ name: 'y', type: { tensor_type: { elem_type: DataType.FLOAT } } }],
      initializer: initializers,
      ...extra,
    },
  };
}

describe.skipIf(!HAVE_DATA)('reader: real files in shared/onnx', () => {
  it('mnist-8 (CNTK, IR 3): opset 8, float_data/int64_data, initializer inputs dropped', async () => {
    const m = await readModel(join(DATA, 'real/mnist-8/model.onnx'));
    expect(m.irVersion).toBe(3);
    expect(m.producerName).toBe('CNTK');
    expect(m.opsets.get('')).toBe(8);
    expect(m.graph.inputs.map((i) => i.name)).toEqual(['Input3']);
    expect(m.graph.inputs[0]!.shape).toEqual([1, 1, 28, 28]);
    expect(histogram(m)).toEqual({ Reshape: 2, Conv: 2, Add: 3, Relu: 2, MaxPool: 2, MatMul: 1 });
    expect(m.graph.initializers.get('Pooling160_Output_0_reshape0_shape')!.data).toEqual([1, 256]);
    const p6 = m.graph.initializers.get('Parameter6')!;
    expect(p6.dims).toEqual([8, 1, 1]);
    expect(p6.data[0]).toBeCloseTo(-0.1615397185, 9);
    expect(floatParams(m)).toBe(8 * 25 + 8 + 16 * 8 * 25 + 16 + 16 * 4 * 4 * 10 + 10);
    const conv = m.graph.nodes.find((n) => n.opType === 'Conv')!;
    expect(conv.attrs.auto_pad).toEqual({ type: 'string', value: 'SAME_UPPER' });
    expect(conv.attrs.kernel_shape).toEqual({ type: 'ints', value: [5, 5] });
  });

  it('the other real models: op histograms and parameter counts', async () => {
    const cases: [string, Record<string, number>, number][] = [
      ['real/mnist-8_opt_wonnx/model.onnx', { Conv: 2, Relu: 2, MaxPool: 2, Reshape: 1, Gemm: 1 }, 5994],
      ['real/cnn_mnist_pytorch1.1/model.onnx', { Conv: 2, MaxPool: 2, Relu: 4, Constant: 1, Reshape: 1, Gemm: 2, LogSoftmax: 1 },
        10 * 25 + 10 + 20 * 10 * 25 + 20 + 50 * 320 + 50 + 10 * 50 + 10],
      ['real/mnist_mlp_bn_pytorch1.7/model.onnx', { MatMul: 3, Constant: 4, BatchNormalization: 2 }, 784 * 64 + 64 * 64 + 64 * 10 + 4 * 64],
    ];
    for (const [file, hist, params] of cases) {
      const m = await readModel(join(DATA, file));
      expect(histogram(m), file).toEqual(hist);
      expect(floatParams(m), file).toBe(params);
    }
  });

  it('resnet34_torchstyle: the torch.onnx.export graph, BN folded into 36 convs', async () => {
    const m = await readModel(join(DATA, 'resnet34_torchstyle/model.onnx'));
    expect(m.opsets.get('')).toBe(17);
    expect(histogram(m)).toEqual({ Conv: 36, Relu: 33, Add: 16, MaxPool: 1, GlobalAveragePool: 1, Flatten: 1, Gemm: 1 });
    // torchvision resnet34 has 21,797,672 parameters; folding BN removes γ and β (2 × 8512 channels)
    // and adds one conv bias per channel (8512).
    expect(floatParams(m)).toBe(21_797_672 - 2 * 8512 + 8512);
    expect(m.graph.initializers.get('fc.weight')!.dims).toEqual([1000, 512]);
    expect(m.graph.initializers.get('fc.bias')!.dims).toEqual([1000]);
    expect([...m.graph.initializers.keys()].filter((k) => k.startsWith('onnx::Conv_')).length).toBe(72);
    expect(m.graph.inputs).toEqual([{ name: 'input', kind: 'tensor', elemType: DataType.FLOAT, shape: [1, 3, 224, 224] }]);
    const gemm = m.graph.nodes.find((n) => n.opType === 'Gemm')!;
    expect(gemm.attrs.transB).toEqual({ type: 'int', value: 1 });
  });

  it('graph_only resnet18 (torch dynamo): external-data references parsed; the missing file is named', async () => {
    const dir = join(DATA, 'graph_only');
    const sub = readdirSync(dir, { recursive: true }).map(String).find((p) => p.endsWith('resnet18.onnx'))!;
    const file = join(dir, sub);
    const m = await readModel(file, { skipExternalData: true });
    expect(m.irVersion).toBe(10);
    expect(m.opsets.get('')).toBe(18);
    const ext = pendingExternalTensors(m);
    expect(ext.length).toBe(22);
    for (const t of ext) {
      expect(t.external!.location).toBe('resnet18.onnx.data');
      expect(t.external!.length).toBe(t.dims.reduce((a, b) => a * b, 1) * 4);
    }
    const fc = m.graph.initializers.get('fc.weight')!;
    expect(fc.dims).toEqual([1000, 512]);
    expect(fc.external).toEqual({ location: 'resnet18.onnx.data', offset: 4587520, length: 2048000 });
    // Small int64 initializers stay inline.
    expect(m.graph.initializers.get('val_230')!.data).toEqual([1, 512]);
    const msg = await expectOnnxError(() => readModel(file), /resnet18\.onnx\.data/);
    expect(msg).toMatch(/not found/);
  });

  it('input_K.pb / output_K.pb decode (test_add: out = in0 + in1; test_constant; mnist-8)', async () => {
    const [set] = loadTestDataSets(join(DATA, 'node/test_add'));
    const [a, b] = set!.inputs;
    const [y] = set!.outputs;
    expect(a!.dims).toEqual([3, 4, 5]);
    expect(a!.dataType).toBe(DataType.FLOAT);
    for (let i = 0; i < 60; i++) expect(y!.data[i]).toBeCloseTo(a!.data[i]! + b!.data[i]!, 6);

    // test_constant's output is exactly the tensor in its Constant node.
    const m = await readModel(join(DATA, 'node/test_constant/model.onnx'));
    const value = m.graph.nodes[0]!.attrs.value!;
    expect(value.type).toBe('tensor');
    const [out] = loadTestDataSets(join(DATA, 'node/test_constant'))[0]!.outputs;
    expect(out!.dims).toEqual([5, 5]);
    expect(Array.from(out!.data)).toEqual(Array.from((value as { value: OnnxTensor }).value.data));

    // int64 output: test_shape's output is the shape of its input.
    expect(loadTestDataSets(join(DATA, 'node/test_shape'))[0]!.outputs[0]!.data).toEqual([3, 4, 5]);

    const mnist = loadTestDataSets(join(DATA, 'real/mnist-8'));
    expect(mnist.length).toBe(3);
    expect(mnist[0]!.inputs[0]!.dims).toEqual([1, 1, 28, 28]);
    expect(mnist[0]!.outputs[0]!.dims).toEqual([1, 10]);
  });

  it('truncated files are "not an ONNX model"', async () => {
    const bytes = new Uint8Array(readFileSync(join(DATA, 'real/mnist-8/model.onnx')));
    for (const n of [1000, bytes.length >> 1, bytes.length - 3]) {
      await expectOnnxError(() => readModel(bytes.subarray(0, n)), /^not an ONNX model \(/);
    }
  });
});

describe('reader: synthetic files', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'wgtrain-onnx-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('encodes proto2 repeated scalars as onnx.proto says (dims unpacked, *_data packed)', () => {
    // dims = 1 (varint, unpacked: one tag per value); float_data = 4 (packed: tag 0x22, byte length 8).
    const bytes = encodeTensorProto({ dims: [3, 4], float_data: [1, 2] });
    expect(Array.from(bytes.subarray(0, 4))).toEqual([0x08, 3, 0x08, 4]);
    expect(Array.from(bytes.subarray(4, 6))).toEqual([0x22, 8]);
    expect(decodeTensorProto(bytes).dims!.map(Number)).toEqual([3, 4]);
  });

  it('round-trips a model through the encoder: attributes, metadata, opsets, value infos', () => {
    const weight: OnnxTensor = { name: 'w', dims: [2, 3], dataType: DataType.FLOAT, data: Float32Array.of(1, -2, 3.5, 0, 1e-20, -7) };
    const proto = tinyModel([tensorToProto(weight), tensorToProto({ name: 'shape', dims: [2], dataType: DataType.INT64, data: [-1, 6] })]);
    proto.metadata_props = [{ key: 'wgtrain.classes', value: 'cat,dog' }];
    proto.opset_import!.push({ domain: 'ai.onnx', version: 17 }, { domain: 'com.microsoft', version: 1 });
    proto.graph!.node![0]!.attribute = [
      attrToProto('f', { type: 'float', value: 0.25 }),
      attrToProto('i', { type: 'int', value: -3 }),
      attrToProto('big', { type: 'int', value: 2 ** 40 + 1 }),
      attrToProto('s', { type: 'string', value: 'SAME_UPPER' }),
      attrToProto('fs', { type: 'floats', value: [0.5, -1] }),
      attrToProto('is', { type: 'ints', value: [1, -1, 0] }),
      attrToProto('ss', { type: 'strings', value: ['a', 'bé'] }),
      attrToProto('t', { type: 'tensor', value: { name: 'c', dims: [], dataType: DataType.INT64, data: [7] } }),
    ];
    const m = decodeModel(encodeModelProto(proto));
    expect(m.irVersion).toBe(8);
    expect(m.producerName).toBe('wgtrain-test');
    expect([...m.opsets]).toEqual([['', 17], ['com.microsoft', 1]]); // 'ai.onnx' is the default domain
    expect(m.metadata).toEqual({ 'wgtrain.classes': 'cat,dog' });
    expect(m.graph.inputs).toEqual([{ name: 'x', kind: 'tensor', elemType: DataType.FLOAT, shape: ['N', 3] }]);
    expect(m.graph.outputs).toEqual([{ name: 'y', kind: 'tensor', elemType: DataType.FLOAT, shape: null }]);
    const w = m.graph.initializers.get('w')!;
    expect(w.dims).toEqual([2, 3]);
    expect(Array.from(w.data)).toEqual(Array.from(weight.data));
    expect(m.graph.initializers.get('shape')!.data).toEqual([-1, 6]);
    const a = m.graph.nodes[0]!.attrs;
    expect(a.f).toEqual({ type: 'float', value: 0.25 });
    expect(a.i).toEqual({ type: 'int', value: -3 });
    expect(a.big).toEqual({ type: 'int', value: 2 ** 40 + 1 });
    expect(a.s).toEqual({ type: 'string', value: 'SAME_UPPER' });
    expect(a.fs).toEqual({ type: 'floats', value: [0.5, -1] });
    expect(a.is).toEqual({ type: 'ints', value: [1, -1, 0] });
    expect(a.ss).toEqual({ type: 'strings', value: ['a', 'bé'] });
    expect(a.t).toEqual({ type: 'tensor', value: { name: 'c', dims: [], dataType: DataType.INT64, data: [7] } });
  });

  it('infers attribute types in IR-1 files that omit AttributeProto.type', () => {
    const proto = tinyModel([]);
    proto.graph!.node![0]!.attribute = [
      { name: 'axis', i: 0 }, // i = 0 is on the wire (proto2 optional), so it still counts as set
      { name: 'alpha', f: 0.5 },
      { name: 'mode', s: new TextEncoder().encode('constant') },
      { name: 'pads', ints: [1, 2] },
      { name: 'scales', floats: [2, 2] },
    ];
    const a = decodeModel(encodeModelProto(proto)).graph.nodes[0]!.attrs;
    expect(a).toEqual({
      axis: { type: 'int', value: 0 },
      alpha: { type: 'float', value: 0.5 },
      mode: { type: 'string', value: 'constant' },
      pads: { type: 'ints', value: [1, 2] },
      scales: { type: 'floats', value: [2, 2] },
    });
    expect(AttributeType.INTS).toBe(7);
  });

  it('decodes FLOAT16 (raw and int32_data), BFLOAT16, DOUBLE and the integer types', () => {
    // half bits: 1, −2, 65504 (max), 2^−24 (smallest subnormal), +∞, 0.333251953125, −0
    const halves = [0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0x3555, 0x8000];
    const want = [1, -2, 65504, 2 ** -24, Infinity, 0.333251953125, -0];
    const raw = new Uint8Array(new Uint16Array(halves).buffer);
    const fromRaw = readTensorProto(encodeTensorProto({ name: 'h', dims: [7], data_type: DataType.FLOAT16, raw_data: raw }));
    expect(fromRaw.dataType).toBe(DataType.FLOAT16);
    expect(fromRaw.data).toBeInstanceOf(Float32Array);
    expect(Array.from(fromRaw.data)).toEqual(want);
    const fromInt32 = readTensorProto(encodeTensorProto({ name: 'h', dims: [7], data_type: DataType.FLOAT16, int32_data: halves }));
    expect(Array.from(fromInt32.data)).toEqual(want);
    expect(Number.isNaN(readTensorProto(encodeTensorProto({ dims: [1], data_type: DataType.FLOAT16, int32_data: [0x7e00] })).data[0])).toBe(true);

    // bfloat16 = upper half of an f32: 0x3f80 = 1, 0xc0a0 = −5, 0x3e20 = 0.15625
    const bf = readTensorProto(encodeTensorProto({ dims: [3], data_type: DataType.BFLOAT16, int32_data: [0x3f80, 0xc0a0, 0x3e20] }));
    expect(Array.from(bf.data)).toEqual([1, -5, 0.15625]);

    const dbl = readTensorProto(encodeTensorProto({ dims: [2], data_type: DataType.DOUBLE, double_data: [0.1, -3] }));
    expect(dbl.dataType).toBe(DataType.DOUBLE);
    expect(Array.from(dbl.data)).toEqual([Math.fround(0.1), -3]);
    const dblRaw = readTensorProto(encodeTensorProto({ dims: [2], data_type: DataType.DOUBLE, raw_data: new Uint8Array(Float64Array.of(0.1, -3).buffer) }));
    expect(Array.from(dblRaw.data)).toEqual([Math.fround(0.1), -3]);

    const i8 = readTensorProto(encodeTensorProto({ dims: [3], data_type: DataType.INT8, raw_data: Uint8Array.of(0xff, 0x7f, 0x80) }));
    expect(Array.from(i8.data)).toEqual([-1, 127, -128]);
    const u8 = readTensorProto(encodeTensorProto({ dims: [3], data_type: DataType.UINT8, raw_data: Uint8Array.of(0xff, 0x7f, 0x80) }));
    expect(Array.from(u8.data)).toEqual([255, 127, 128]);
    const b = readTensorProto(encodeTensorProto({ dims: [3], data_type: DataType.BOOL, raw_data: Uint8Array.of(1, 0, 1) }));
    expect(Array.from(b.data)).toEqual([1, 0, 1]);
    const i16 = readTensorProto(encodeTensorProto({ dims: [2], data_type: DataType.INT16, int32_data: [-300, 300] }));
    expect(Array.from(i16.data)).toEqual([-300, 300]);
    const i64 = readTensorProto(encodeTensorProto({ dims: [3], data_type: DataType.INT64, raw_data: new Uint8Array(BigInt64Array.of(-1n, 2n ** 40n, 0n).buffer) }));
    expect(i64.data).toEqual([-1, 2 ** 40, 0]);
    const u32 = readTensorProto(encodeTensorProto({ dims: [1], data_type: DataType.UINT32, uint64_data: [4_000_000_000] }));
    expect(u32.data).toEqual([4_000_000_000]);
  });

  it('int64 values: exact within 2^53, INT64_MAX/MIN sentinels clamp, anything else is an error', async () => {
    const raw = (vs: bigint[]) => new Uint8Array(BigInt64Array.from(vs).buffer);
    const s = readTensorProto(encodeTensorProto({ name: 'ends', dims: [2], data_type: DataType.INT64, raw_data: raw([2n ** 63n - 1n, -(2n ** 63n)]) }));
    expect(s.data).toEqual([Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER]);
    await expectOnnxError(
      () => readTensorProto(encodeTensorProto({ name: 'huge', dims: [1], data_type: DataType.INT64, raw_data: raw([2n ** 60n + 1n]) })),
      /'huge'.*2\^53/,
    );
  });

  it('copies unaligned raw_data out of the file buffer', () => {
    const values = Float32Array.from({ length: 37 }, (_, i) => Math.sin(i) * 100);
    const bytes = encodeTensorProto(tensorToProto({ name: 'w', dims: [37], dataType: DataType.FLOAT, data: values }));
    let unaligned = 0;
    for (const shift of [0, 1, 2, 3]) {
      const buf = new Uint8Array(bytes.length + shift);
      buf.set(bytes, shift);
      const view = buf.subarray(shift);
      // The premise: the decoder hands out raw_data as a view into our buffer, at any offset.
      const rawView = decodeTensorProto(view).raw_data!;
      expect(rawView.buffer).toBe(buf.buffer);
      if (rawView.byteOffset % 4 !== 0) unaligned++;
      const t = readTensorProto(view);
      expect(t.data).toBeInstanceOf(Float32Array);
      expect(Array.from(t.data)).toEqual(Array.from(values));
      expect((t.data as Float32Array).buffer).not.toBe(buf.buffer); // a copy, not a view
    }
    expect(unaligned).toBe(3);
  });

  it('refuses types it cannot represent and malformed sizes, naming the tensor', async () => {
    await expectOnnxError(() => readTensorProto(encodeTensorProto({ name: 'labels', dims: [1], data_type: DataType.STRING, string_data: [new Uint8Array([65])] })),
      /'labels'.*STRING/);
    await expectOnnxError(() => readTensorProto(encodeTensorProto({ name: 'q', dims: [2], data_type: DataType.FLOAT8E4M3FN, raw_data: Uint8Array.of(1, 2) })),
      /'q'.*FLOAT8E4M3FN/);
    await expectOnnxError(() => readTensorProto(encodeTensorProto({ name: 'w', dims: [2, 3], data_type: DataType.FLOAT, raw_data: new Uint8Array(20) })),
      /'w'.*20 bytes/);
    await expectOnnxError(() => readTensorProto(encodeTensorProto({ name: 'w', dims: [2, 3], data_type: DataType.FLOAT, float_data: [1, 2] })),
      /'w'.*2 values in float_data/);
  });

  it('rejects garbage, truncated and empty input as "not an ONNX model"', async () => {
    const bytes = encodeModelProto(tinyModel([tensorToProto({ name: 'w', dims: [64], dataType: DataType.FLOAT, data: new Float32Array(64) })]));
    await expectOnnxError(() => decodeModel(bytes.subarray(0, bytes.length - 10)), /^not an ONNX model \(/);
    await expectOnnxError(() => decodeModel(new Uint8Array(0)), /^not an ONNX model \(no graph/);
    let seed = 12345;
    const garbage = Uint8Array.from({ length: 4096 }, () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 24));
    await expectOnnxError(() => decodeModel(garbage), /^not an ONNX model/);
    await expectOnnxError(() => decodeModel(new TextEncoder().encode('{"not": "onnx"}')), /^not an ONNX model/);
    await expectOnnxError(() => readModel(join(tmp, 'nope.onnx')), /nope\.onnx.*not found/);
  });

  describe('external data', () => {
    // data file layout: 13 junk bytes, a [2,3] float tensor, 3 more junk bytes, an [4] int64 tensor,
    // then a [2] float tensor with no length given (it runs to its numel).
    const a = Float32Array.of(1.5, -2, 3, 4, 5e-8, 6);
    const c = BigInt64Array.of(-1n, 0n, 7n, 2n ** 33n);
    const d = Float32Array.of(9, -9);
    const bytesOf = (x: ArrayBufferView) => new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    const parts = [new Uint8Array(13).fill(0xee), bytesOf(a), new Uint8Array(3), bytesOf(c), bytesOf(d)];
    const file = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
    let at = 0;
    const offsets = parts.map((p) => { const o = at; file.set(p, at); at += p.length; return o; });

    const ext = (name: string, dims: number[], dataType: number, kv: Record<string, string>): TensorProto => ({
      name, dims, data_type: dataType, data_location: 1,
      external_data: Object.entries(kv).map(([key, value]) => ({ key, value })),
    });
    const modelWith = (location: string) => encodeModelProto(tinyModel([
      ext('a', [2, 3], DataType.FLOAT, { location, offset: String(offsets[1]), length: '24' }),
      ext('c', [4], DataType.INT64, { location, offset: String(offsets[3]), length: '32' }),
      ext('d', [2], DataType.FLOAT, { location, offset: String(offsets[4]) }),
      tensorToProto({ name: 'inline', dims: [1], dataType: DataType.FLOAT, data: Float32Array.of(42) }),
    ]));

    const check = (m: OnnxModel) => {
      expect(Array.from(m.graph.initializers.get('a')!.data)).toEqual(Array.from(a));
      expect(m.graph.initializers.get('c')!.data).toEqual([-1, 0, 7, 2 ** 33]);
      expect(Array.from(m.graph.initializers.get('d')!.data)).toEqual([9, -9]);
      expect(Array.from(m.graph.initializers.get('inline')!.data)).toEqual([42]);
      expect(m.graph.initializers.get('a')!.external).toEqual({ location: 'weights/model.bin', offset: 13, length: 24 });
      expect(pendingExternalTensors(m)).toEqual([]);
    };

    it('reads tensors at their offset/length from a file next to the model', async () => {
      const dir = mkdtempSync(join(tmp, 'ext-'));
      mkdirSync(join(dir, 'weights'));
      writeFileSync(join(dir, 'weights', 'model.bin'), file);
      writeFileSync(join(dir, 'model.onnx'), modelWith('weights/model.bin'));
      check(await readModel(join(dir, 'model.onnx')));
      // './' prefixes are harmless; bytes need a baseDir.
      writeFileSync(join(dir, 'dot.onnx'), modelWith('./weights/model.bin'));
      check(await readModel(join(dir, 'dot.onnx')));
      const bytes = modelWith('weights/model.bin');
      check(await readModel(bytes, { baseDir: dir }));
      await expectOnnxError(() => readModel(bytes), /external file 'weights\/model\.bin'.*baseDir/);
    });

    it('loads through an injected reader (the browser path)', async () => {
      const m = decodeModel(modelWith('weights/model.bin'));
      expect(pendingExternalTensors(m).map((t) => t.name)).toEqual(['a', 'c', 'd']);
      const calls: string[] = [];
      await loadExternalData(m, async (location, offset, length) => {
        calls.push(`${location}@${offset}+${length}`);
        return file.slice(offset, offset + length);
      });
      expect(calls).toEqual(['weights/model.bin@13+24', 'weights/model.bin@40+32', 'weights/model.bin@72+8']);
      check(m);
    });

    it('refuses absolute paths and "..", and names a missing or short data file', async () => {
      for (const bad of ['../secret.bin', 'weights/../../x.bin', '/etc/passwd', 'C:\\data.bin', '..\\x.bin']) {
        await expectOnnxError(() => decodeModel(modelWith(bad)), /only paths relative to the model's folder/);
      }
      const dir = mkdtempSync(join(tmp, 'missing-'));
      writeFileSync(join(dir, 'model.onnx'), modelWith('model.onnx.data'));
      await expectOnnxError(() => readModel(join(dir, 'model.onnx')), /'model\.onnx\.data'.*not found/);
      writeFileSync(join(dir, 'model.onnx.data'), file.subarray(0, 50));
      await expectOnnxError(() => readModel(join(dir, 'model.onnx')), /'model\.onnx\.data'.*too short/);
      // A length that disagrees with the shape.
      const wrong = encodeModelProto(tinyModel([ext('a', [2, 3], DataType.FLOAT, { location: 'model.onnx.data', length: '20' })]));
      await expectOnnxError(() => readModel(wrong, { baseDir: dir }), /'a'.*length 20.*needs 24/);
    });
  });
});
