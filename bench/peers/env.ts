// WebGPU for the peers in Node: the `webgpu` package (Dawn) as `navigator.gpu`, plus the GPU* globals
// (GPUBufferUsage, …) that browser code expects. Call before importing tfjs-backend-webgpu or
// onnxruntime-web: they look for navigator.gpu when they load / create their device.
//
// NOTE: onnxruntime-web runs in WebAssembly with a SharedArrayBuffer heap and uploads with
// queue.writeBuffer(buffer, offset, heapView, …). Dawn's Node binding rejects views of a
// SharedArrayBuffer ("Invalid argument", software-adapter.md), so writeBuffer is wrapped to copy such
// views into a plain ArrayBuffer first. Browsers accept them; the copy costs ORT a little upload time
// (inputs here live on the GPU, so only its weights and uniforms go through it).

import { create, globals } from 'webgpu';

let instance: GPU | null = null;

export function installWebGpu(): GPU {
  if (instance) return instance;
  if (!process.env.XDG_RUNTIME_DIR) process.env.XDG_RUNTIME_DIR = '/tmp';
  Object.assign(globalThis, globals);
  instance = create([]);
  Object.defineProperty(globalThis, 'navigator', { value: { gpu: instance }, configurable: true, writable: true });
  const proto = (globals as unknown as { GPUQueue: { prototype: GPUQueue } }).GPUQueue.prototype;
  const writeBuffer = proto.writeBuffer;
  proto.writeBuffer = function (this: GPUQueue, buffer: GPUBuffer, offset: number, data: BufferSource, dataOffset = 0, size?: number) {
    if (ArrayBuffer.isView(data) && data.buffer instanceof SharedArrayBuffer) {
      // dataOffset and size count elements of a typed array (bytes for a DataView).
      const bpe = 'BYTES_PER_ELEMENT' in data ? (data as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT : 1;
      const count = size ?? data.byteLength / bpe - dataOffset;
      const copy = new Uint8Array(count * bpe);
      copy.set(new Uint8Array(data.buffer, data.byteOffset + dataOffset * bpe, count * bpe));
      return writeBuffer.call(this, buffer, offset, copy.buffer, 0, count * bpe);
    }
    return writeBuffer.call(this, buffer, offset, data, dataOffset, size);
  } as GPUQueue['writeBuffer'];
  return instance;
}
