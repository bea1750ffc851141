// The peer harness's own parts: layout conversions, the one-node ONNX models it hands
// onnxruntime-web (read back with wgtrain's reader), and TensorFlow.js computing the same numbers as
// wgtrain on a small odd conv layer in all three passes (so a ratio never compares different work).
// onnxruntime-web is not started here: its first session compiles ~20 MB of WebAssembly (a minute
// or more on 2 cores); `bench/peers/run.ts` checks its outputs the same way before timing them.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installWebGpu } from '../../bench/peers/env.js';
import { kcrsToRsck, nchwToNhwc, nhwcToNchw, rsckToKcrs } from '../../bench/peers/layout.js';
import { convModel, matmulModel } from '../../bench/peers/onnx-models.js';
import type { Peer, Work } from '../../bench/peers/workloads.js';
import { decodeModel } from '../../src/onnx/reader.js';
import { getGpu, type Gpu } from '../../src/gpu/index.js';
import { convCase, matmulCase } from '../../src/bench/kernels.js';
import type { ConvLayer } from '../../src/bench/shapes.js';
import { relErr } from '../../src/bench/validate.js';
import { Rng } from '../helpers.js';

describe('layouts', () => {
  it('NCHW ↔ NHWC and KCRS ↔ RSCK are inverse and put elements where expected', () => {
    const x = new Rng(1).array(2 * 3 * 4 * 5);
    const h = nchwToNhwc(x, 2, 3, 4, 5);
    expect(h[((1 * 4 + 2) * 5 + 3) * 3 + 1]).toBe(x[((1 * 3 + 1) * 4 + 2) * 5 + 3]);
    expect(nhwcToNchw(h, 2, 3, 4, 5)).toEqual(x);
    const w = new Rng(2).array(7 * 3 * 3 * 2);
    const r = kcrsToRsck(w, 7, 3, 3, 2);
    expect(r[((2 * 2 + 1) * 3 + 1) * 7 + 5]).toBe(w[((5 * 3 + 1) * 3 + 2) * 2 + 1]);
    expect(rsckToKcrs(r, 7, 3, 3, 2)).toEqual(w);
  });
});

describe('ONNX models for onnxruntime-web', () => {
  it('Conv: one node with the layer attributes, weights as initializers', () => {
    const w = new Rng(3).array(8 * 3 * 3 * 3), b = new Rng(4).array(8);
    const m = decodeModel(convModel({ xShape: [2, 3, 9, 9], w, wShape: [8, 3, 3, 3], b, stride: 2, pad: 1, yShape: [2, 8, 5, 5] }));
    expect(m.graph.nodes).toHaveLength(1);
    const n = m.graph.nodes[0]!;
    expect([n.opType, n.inputs, n.outputs]).toEqual(['Conv', ['x', 'w', 'b'], ['y']]);
    expect(n.attrs.strides).toEqual({ type: 'ints', value: [2, 2] });
    expect(n.attrs.pads).toEqual({ type: 'ints', value: [1, 1, 1, 1] });
    expect(m.graph.initializers.get('w')!.dims).toEqual([8, 3, 3, 3]);
    expect(Float32Array.from(m.graph.initializers.get('w')!.data)).toEqual(w);
    expect(m.graph.inputs.map((i) => i.name)).toEqual(['x']);
    expect(m.opsets.get('')).toBe(17);
  });

  it('MatMul: input a, initializer b', () => {
    const m = decodeModel(matmulModel(4, 6, 5, new Float32Array(30)));
    expect(m.graph.nodes[0]!.opType).toBe('MatMul');
    expect(m.graph.initializers.get('b')!.dims).toEqual([6, 5]);
    expect(m.graph.outputs[0]!.name).toBe('y');
  });
});

describe('TensorFlow.js (WebGPU) computes what wgtrain computes', () => {
  let gpu: Gpu;
  let tfjs: Peer;
  beforeAll(async () => {
    installWebGpu();
    gpu = await getGpu();
    tfjs = await (await import('../../bench/peers/tfjs.js')).tfjsPeer();
  });
  afterAll(() => tfjs?.close());

  const layer: ConvLayer = { model: 'vgg16', name: 'odd', N: 2, C: 5, H: 9, W: 7, K: 6, R: 3, stride: 2, pad: 1, count: 1 };
  const cases = [
    matmulCase('t', 'test', { M: 19, N: 13, K: 11 }),
    convCase(layer, 'fwd'), convCase(layer, 'dx'), convCase(layer, 'dw'),
  ];
  it.each(cases.map((c) => [c.id, c] as const))('%s', async (_, c) => {
    const inst = c.setup(gpu);
    const outs = inst.run();
    expect((await inst.validate(outs)).ok).toBe(true);
    const ref = await outs[0]!.read();
    outs.forEach((t) => t.dispose());
    inst.dispose();
    const i = inst.inputs;
    const work: Work = c.family === 'matmul'
      ? { kind: 'matmul', id: c.id, M: 19, N: 13, K: 11, A: i.A!, B: i.B! }
      : { kind: 'conv', id: c.id, pass: c.family === 'conv2d.fwd' ? 'fwd' : c.family === 'conv2d.dx' ? 'dx' : 'dw', layer, x: i.x!, w: i.w!, b: i.b!, dY: i.dY!, P: 5, Q: 4 };
    const prep = (await tfjs.prepare(work))!;
    const got = await prep.output();
    prep.launch();
    await prep.sync();
    prep.dispose();
    expect(relErr(got, ref)).toBeLessThan(1e-5);
  });
});
