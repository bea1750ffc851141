import { readFileSync } from 'node:fs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { hasOnnxData, onnxDataDir } from '../../src/onnx/testdata.js';
import { Tensor, type Gpu } from '../../src/gpu/index.js';
import { lrn, lrnBackward, lrnTesting, type LrnOptions } from '../../src/kernels/lrn.js';
import { lrnBackwardRef, lrnRef, type LrnRefOptions } from '../../src/kernels/reference/lrn.js';
import { device, expectClose, gradcheck, Rng } from '../helpers.js';

let gpu: Gpu;
beforeAll(async () => { gpu = await device(); });
afterEach(() => { lrnTesting.maxBindingBytes = 0; });

const numel = (s: readonly number[]) => s.reduce((p, q) => p * q, 1);
const full = (o: LrnOptions): LrnRefOptions => ({ size: o.size, alpha: o.alpha ?? 1e-4, beta: o.beta ?? 0.75, bias: o.bias ?? 1 });

// The backward's two terms (dY·d^−β and (2αβ/size)·x·Σ…) partly cancel, so its error is judged
// against the size of those terms, which grow like x² (atol 1e-5 for O(1) data, scaled by scale²),
// rather than against each element's possibly tiny difference.

async function check(xs: number[], o: LrnOptions, seed: number, { grad = true, scale = 1 } = {}) {
  const rng = new Rng(seed);
  const x = Float32Array.from(rng.array(numel(xs)), (v) => v * scale);
  const ref = lrnRef(x, xs, full(o));
  const tx = Tensor.from(gpu, x, xs);
  const { y, denom } = lrn(tx, o);
  const name = `lrn x[${xs}] size ${o.size} α ${o.alpha ?? 'def'} β ${o.beta ?? 'def'} k ${o.bias ?? 'def'}`;
  expectClose(`${name} fwd`, await y.read(), ref.y, 1e-5, 1e-6);
  expectClose(`${name} denom`, await denom.read(), ref.denom, 1e-5, 1e-6);
  const dy = rng.array(numel(xs));
  const dx = await lrnBackward(tx, denom, Tensor.from(gpu, dy, xs), o).read();
  expectClose(`${name} bwd`, dx, lrnBackwardRef(x, dy, xs, full(o)), 1e-5, 1e-5 * scale * scale);
  if (grad) gradcheck(name, (v) => lrnRef(v, xs, full(o)).y, x, dy, dx);
  for (const t of [tx, y, denom]) t.dispose();
}

describe('lrn', () => {
  // Odd and even sizes (the window's centring differs for even sizes), windows wider than C, ranks 2–5,
  // and α large enough that the normalisation (and its gradient) is far from the identity.
  const cases: [number[], LrnOptions][] = [
    [[2, 7, 5, 3], { size: 5 }],                                        // ONNX defaults
    [[1, 16, 7, 7], { size: 5, alpha: 0.5, beta: 0.75, bias: 2 }],      // AlexNet-like, strong
    [[2, 5, 3, 3], { size: 4, alpha: 0.3, beta: 0.5, bias: 1 }],        // even size
    [[1, 6, 17], { size: 2, alpha: 1, beta: 1.2, bias: 1.5 }],          // even, rank 3
    [[3, 3, 5, 2], { size: 7, alpha: 0.2, beta: 0.75, bias: 1 }],       // window wider than C
    [[2, 9], { size: 3, alpha: 0.7, beta: 0.6, bias: 0.8 }],            // rank 2 ([N, C])
    [[1, 4, 3, 2, 3], { size: 3, alpha: 0.4, beta: 0.9, bias: 1 }],     // rank 5
    [[2, 1, 7, 7], { size: 1, alpha: 0.5, beta: 0.75, bias: 1 }],       // C = 1, size 1
  ];
  it.each(cases)('x %j %j', async (xs, o) => { await check(xs, o, numel(xs) + o.size); });

  it('large inputs (x up to ±30, d ≫ bias)', async () => {
    await check([1, 8, 5, 5], { size: 5, alpha: 1e-2, beta: 0.75, bias: 1 }, 3, { scale: 30 });
  });

  it('tensors split into sample windows give the same result (4 KiB binding cap)', async () => {
    // 7·5·3 = 105 floats per sample: windows of 9 samples, each after the first starting unaligned.
    lrnTesting.maxBindingBytes = 4096;
    const before = gpu.dispatchesByName.get('lrn.fwd.v1') ?? 0;
    await check([20, 7, 5, 3], { size: 3, alpha: 0.5, beta: 0.75, bias: 1 }, 77, { grad: false });
    expect((gpu.dispatchesByName.get('lrn.fwd.v1') ?? 0) - before).toBe(3);
  });

  it('rejects bad options and shapes', () => {
    const t = Tensor.from(gpu, [1, 2, 3, 4], [1, 4]);
    expect(() => lrn(t, { size: 0 })).toThrow(/size/);
    expect(() => lrn(Tensor.from(gpu, [1, 2], [2]), { size: 3 })).toThrow(/\[N, C/);
    const { denom } = lrn(t, { size: 3 });
    expect(() => lrnBackward(t, denom, Tensor.from(gpu, [1, 2, 3], [1, 3]), { size: 3 })).toThrow(/dY/);
  });
});

// ---- ONNX backend conformance data (shared/onnx/node/test_lrn*) ------------------------------

/** Minimal protobuf walk: (field number, wire type, value) of one message's top-level fields. */
function* fields(b: Uint8Array): Generator<[number, number, number | Uint8Array]> {
  let p = 0;
  const varint = () => {
    let v = 0, m = 1;
    for (;;) { const c = b[p++]!; v += (c & 0x7f) * m; m *= 128; if (c < 0x80) return v; }
  };
  while (p < b.length) {
    const key = varint(), field = Math.floor(key / 8), wire = key & 7;
    if (wire === 0) yield [field, wire, varint()];
    else if (wire === 2) { const n = varint(); yield [field, wire, b.subarray(p, p + n)]; p += n; }
    else if (wire === 5) { yield [field, wire, new DataView(b.buffer, b.byteOffset + p, 4).getFloat32(0, true)]; p += 4; }
    else if (wire === 1) { p += 8; yield [field, wire, 0]; }
    else throw new Error(`protobuf wire type ${wire}`);
  }
}

/** TensorProto (float): dims (1), raw_data (9) or float_data (4). */
function tensorProto(path: string): { shape: number[]; data: Float32Array } {
  const shape: number[] = [];
  let data = new Float32Array(0);
  for (const [f, , v] of fields(new Uint8Array(readFileSync(path)))) {
    if (f === 1) shape.push(v as number);
    if (f === 9 || f === 4) { const raw = (v as Uint8Array).slice(); data = new Float32Array(raw.buffer); }
  }
  return { shape, data };
}

/** The LRN node's attributes: ModelProto.graph (7) → node (1) → attribute (5) {name 1, f 2, i 3}. */
function lrnAttributes(path: string): LrnOptions {
  const o: Record<string, number> = {};
  for (const [f, , g] of fields(new Uint8Array(readFileSync(path)))) {
    if (f !== 7) continue;
    for (const [fn, , node] of fields(g as Uint8Array)) {
      if (fn !== 1) continue;
      for (const [fa, , attr] of fields(node as Uint8Array)) {
        if (fa !== 5) continue;
        let name = '', value = NaN;
        for (const [k, , v] of fields(attr as Uint8Array)) {
          if (k === 1) name = new TextDecoder().decode(v as Uint8Array);
          if (k === 2 || k === 3) value = v as number;
        }
        o[name] = value;
      }
    }
  }
  return { size: o.size!, alpha: o.alpha, beta: o.beta, bias: o.bias };
}

const HAVE_ONNX = hasOnnxData('node/test_lrn');
if (!HAVE_ONNX) console.warn(`ONNX test data not found at ${onnxDataDir()}: the LRN conformance tests are skipped (set WGTRAIN_ONNX_DATA)`);

describe.skipIf(!HAVE_ONNX)('lrn matches the ONNX backend test data', () => {
  const root = `${onnxDataDir()}/node/`;
  it.each(['test_lrn', 'test_lrn_default'])('%s', async (name) => {
    const dir = `${root}${name}`;
    const o = lrnAttributes(`${dir}/model.onnx`);
    const x = tensorProto(`${dir}/test_data_set_0/input_0.pb`);
    const want = tensorProto(`${dir}/test_data_set_0/output_0.pb`);
    expect(x.shape).toEqual([5, 5, 5, 5]);
    if (name === 'test_lrn') expect(o).toEqual({ size: 3, alpha: Math.fround(0.0002), beta: 0.5, bias: 2 });
    else expect(o).toEqual({ size: 3, alpha: undefined, beta: undefined, bias: undefined }); // the defaults
    const { y } = lrn(Tensor.from(gpu, x.data, x.shape), o);
    expectClose(`${name} vs ONNX output`, await y.read(), want.data, 1e-5, 1e-6);
    // Our float64 reference agrees with the ONNX data too (a check of the reference itself).
    expectClose(`${name} reference vs ONNX output`, lrnRef(x.data, x.shape, full(o)).y, want.data, 1e-5, 1e-6);
  });
});
