// TensorFlow.js with its WebGPU backend (@tensorflow/tfjs-backend-webgpu), in Node on Dawn.
// Each workload is written the way a tfjs user gets the backend's best path: NHWC activations and
// HWIO filters (tfjs's native layouts), fused conv + bias (+ ReLU), the backward convolutions through
// the same kernels tfjs's autodiff calls (Conv2DBackpropInput / Conv2DBackpropFilter).
//
// Timing sync: tfjs batches its dispatches and submits lazily; `submitQueue()` submits, then the
// device's queue drains.

import type * as TF from '@tensorflow/tfjs-core';
import { installWebGpu } from './env.js';
import { kcrsToRsck, nchwToNhwc, nhwcToNchw, rsckToKcrs } from './layout.js';
import type { Peer, Prepared, Work } from './workloads.js';

interface WebGpuBackendLike { device: GPUDevice; ensureCommandEncoderReady(): void; endComputePassEncoder(): void; submitQueue(): void }

export async function tfjsPeer(): Promise<Peer> {
  installWebGpu();
  // NOTE: the full '@tensorflow/tfjs' package, not tfjs-core alone: tfjs-core's Node bundle registers no
  // gradients (training failed with "gradient function not found for RealDiv"); tfjs registers them.
  const tf = (await import('@tensorflow/tfjs')) as unknown as typeof TF;
  await import('@tensorflow/tfjs-backend-webgpu');
  if (!(await tf.setBackend('webgpu'))) throw new Error('tfjs: the webgpu backend failed to initialise');
  await tf.ready();
  const backend = tf.backend() as unknown as WebGpuBackendLike;
  const sync = async () => {
    // NOTE: submitQueue() assumes an open command encoder (tfjs's own readback path opens one first).
    backend.ensureCommandEncoderReady();
    backend.endComputePassEncoder();
    backend.submitQueue();
    await backend.device.queue.onSubmittedWorkDone();
  };

  function prepareSync(w: Work): Prepared | null {
    if (w.kind === 'matmul') {
      const a = tf.tensor2d(w.A, [w.M, w.K]), b = tf.tensor2d(w.B, [w.K, w.N]);
      return {
        launch: () => tf.dispose(tf.matMul(a, b)),
        sync,
        output: async () => { const y = tf.matMul(a, b); const d = await y.data() as Float32Array; y.dispose(); return d; },
        dispose: () => tf.dispose([a, b]),
      };
    }
    const l = w.layer;
    const { N, C, H, W, K, R } = l;
    const x = tf.tensor4d(nchwToNhwc(w.x, N, C, H, W), [N, H, W, C]);
    const f = tf.tensor4d(kcrsToRsck(w.w, K, C, R, R), [R, R, C, K]);
    const bias = tf.tensor1d(w.b);
    const dy = tf.tensor4d(nchwToNhwc(w.dY, N, K, w.P, w.Q), [N, w.P, w.Q, K]);
    const attrs = { strides: [l.stride, l.stride] as [number, number], pad: l.pad, dataFormat: 'NHWC' as const };
    const run = (): TF.Tensor => {
      if (w.pass === 'fwd') return tf.fused.conv2d({ x, filter: f, bias, strides: l.stride, pad: l.pad });
      if (w.pass === 'dx') return tf.engine().runKernel(tf.Conv2DBackpropInput, { dy, filter: f }, { ...attrs, inputShape: [N, H, W, C] }) as TF.Tensor;
      return tf.engine().runKernel(tf.Conv2DBackpropFilter, { x, dy }, { ...attrs, filterShape: [R, R, C, K] }) as TF.Tensor;
    };
    return {
      launch: () => tf.dispose(run()),
      sync,
      output: async () => {
        const y = run();
        const d = await y.data() as Float32Array;
        y.dispose();
        if (w.pass === 'fwd') return nhwcToNchw(d, N, K, w.P, w.Q);
        if (w.pass === 'dx') return nhwcToNchw(d, N, C, H, W);
        return rsckToKcrs(d, K, C, R, R);
      },
      dispose: () => tf.dispose([x, f, bias, dy]),
    };
  }

  /**
   * The small VGG-style CNN (src/bench/e2e.ts SmallCnn), trained with Adam through tfjs autodiff:
   * fused conv + bias + ReLU, max-pool, dense, softmax cross-entropy; the loss read every step.
   */
  async function trainStep(size: number, batch: number, steps: number, warmup: number) {
    const uniform = (shape: number[], fanIn: number) => tf.variable(tf.randomUniform(shape, -1 / Math.sqrt(fanIn), 1 / Math.sqrt(fanIn), 'float32', 1));
    const convs = [[3, 32], [32, 32], [32, 64], [64, 64]].map(([c, k]) => ({ w: uniform([3, 3, c!, k!], 9 * c!), b: uniform([k!], 9 * c!) }));
    const s = Math.floor(Math.floor(size / 2) / 2);
    const dw = uniform([64 * s * s, 10], 64 * s * s), db = uniform([10], 64 * s * s);
    const x = tf.randomUniform([batch, size, size, 3], -2, 2, 'float32', 3);
    const y = tf.oneHot(tf.tensor1d(Array.from({ length: batch }, (_, i) => i % 10), 'int32'), 10);
    const opt = tf.train.adam(1e-3, 0.9, 0.99, 1e-5);
    const step = async () => {
      const cost = opt.minimize(() => {
        let h = x as TF.Tensor4D;
        convs.forEach((c, i) => {
          h = tf.fused.conv2d({ x: h, filter: c.w as TF.Tensor4D, bias: c.b, strides: 1, pad: 'same', activation: 'relu' });
          if (i % 2 === 1) h = tf.maxPool(h, 2, 2, 'valid');
        });
        const logits = tf.add(tf.matMul(tf.reshape(h, [batch, 64 * s * s]), dw), db);
        return tf.losses.softmaxCrossEntropy(y, logits) as TF.Scalar;
      }, true);
      const v = (await cost!.data())[0]!;
      cost!.dispose();
      if (!Number.isFinite(v)) throw new Error(`tfjs loss is ${v}`);
    };
    for (let i = 0; i < warmup; i++) await step();
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) await step();
    const msPerStep = (performance.now() - t0) / steps;
    opt.dispose();
    tf.dispose([x, y, dw, db, ...convs.flatMap((c) => [c.w, c.b])]);
    return { msPerStep };
  }

  return {
    name: 'tfjs-webgpu',
    prepare: async (w) => prepareSync(w),
    trainStep,
    close: () => { /* the backend's device lives as long as the process */ },
  };
}
