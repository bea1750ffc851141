// onnxruntime-web with its WebGPU execution provider, in Node on Dawn. Inference only: it runs ONNX
// graphs forward, so it has no backward convolutions and cannot train.
//
// Each workload is a one-node ONNX model (onnx-models.ts) whose weights are initializers; the input
// lives in a GPU buffer and the output stays on the GPU (`preferredOutputLocation: 'gpu-buffer'`), so
// a timed run moves no data between CPU and GPU, as for wgtrain and tfjs.
//
// NOTE: the first session of a process takes a minute or more on the 2-core software machine: the
// ~20 MB WebAssembly module is compiled then (later sessions: milliseconds), and the first run of a
// session compiles its shaders (seconds). Both are warm-up, excluded from the timings.

import type * as ORT from 'onnxruntime-web';
import { installWebGpu } from './env.js';
import { convModel, matmulModel } from './onnx-models.js';
import type { Peer, Prepared, Work } from './workloads.js';

export async function ortPeer(): Promise<Peer> {
  installWebGpu();
  const ort = (await import('onnxruntime-web/webgpu')) as typeof ORT;
  // One wasm thread: the WebGPU EP does the work; threads would only compete for the 2 cores.
  ort.env.wasm.numThreads = 1;
  ort.env.logLevel = 'error';

  async function prepare(w: Work): Promise<Prepared | null> {
    if (w.kind === 'conv' && w.pass !== 'fwd') return null;
    let model: Uint8Array, inName: string, inData: Float32Array, inDims: number[];
    if (w.kind === 'matmul') {
      model = matmulModel(w.M, w.K, w.N, w.B);
      inName = 'a'; inData = w.A; inDims = [w.M, w.K];
    } else {
      const l = w.layer;
      model = convModel({
        xShape: [l.N, l.C, l.H, l.W], w: w.w, wShape: [l.K, l.C, l.R, l.R], b: w.b,
        stride: l.stride, pad: l.pad, yShape: [l.N, l.K, w.P, w.Q],
      });
      inName = 'x'; inData = w.x; inDims = [l.N, l.C, l.H, l.W];
    }
    const session = await ort.InferenceSession.create(model, { executionProviders: ['webgpu'], preferredOutputLocation: 'gpu-buffer' });
    // NOTE: read the device after creating the session: once the previous session is released, the
    // next one runs on a new device, and a buffer made on the old one is rejected ("[Buffer] is
    // associated with [Device], and cannot be used with [Device]").
    const dev = (await ort.env.webgpu.device) as unknown as GPUDevice;
    const buf = dev.createBuffer({ size: inData.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    dev.queue.writeBuffer(buf, 0, new Float32Array(inData));
    const input = ort.Tensor.fromGpuBuffer(buf as unknown as ORT.Tensor.GpuBufferType, { dataType: 'float32', dims: inDims });
    const feeds = { [inName]: input };
    return {
      launch: async () => { const r = await session.run(feeds); r.y!.dispose(); },
      sync: async () => { await dev.queue.onSubmittedWorkDone(); },
      output: async () => {
        const r = await session.run(feeds);
        const d = (await r.y!.getData(true)) as Float32Array;
        return d;
      },
      dispose: () => { void session.release(); buf.destroy(); },
    };
  }

  return { name: 'ort-web-webgpu', prepare, close: () => {} };
}
