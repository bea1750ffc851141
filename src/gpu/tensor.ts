// Tensor: a GPU buffer plus a shape. f32, row-major, NCHW for images. The autograd layer
// (src/autograd/) builds on this; kernels take and return plain Tensors.

import type { Gpu } from './device.js';

export type Shape = readonly number[];

export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`bad shape [${shape.join(', ')}]`);
    n *= d;
  }
  return n;
}

export class Tensor {
  readonly size: number;
  private disposed = false;

  /**
   * Prefer the factories. `owner` is false for views (reshape): disposing a view does not release
   * the buffer its base owns.
   */
  constructor(readonly gpu: Gpu, readonly buffer: GPUBuffer, readonly shape: Shape, readonly owner = true) {
    this.size = numel(shape);
  }

  get byteLength(): number { return this.size * 4; }
  get isDisposed(): boolean { return this.disposed; }

  /** An uninitialised tensor from the pool. */
  static empty(gpu: Gpu, shape: Shape, label?: string): Tensor {
    return new Tensor(gpu, gpu.alloc(Math.max(4, numel(shape) * 4), label), shape);
  }

  static zeros(gpu: Gpu, shape: Shape): Tensor {
    const t = Tensor.empty(gpu, shape);
    gpu.zero(t.buffer, 0, Math.ceil(Math.max(4, t.byteLength) / 4) * 4);
    return t;
  }

  static from(gpu: Gpu, data: ArrayLike<number>, shape: Shape = [data.length]): Tensor {
    if (numel(shape) !== data.length) throw new Error(`Tensor.from: ${data.length} values do not fill shape [${shape.join(', ')}]`);
    const t = Tensor.empty(gpu, shape);
    const f = data instanceof Float32Array ? data : Float32Array.from(data);
    if (f.length) gpu.upload(t.buffer, f);
    return t;
  }

  /** Copies the values back to the CPU. */
  async read(): Promise<Float32Array> {
    this.assertLive();
    if (this.size === 0) return new Float32Array(0);
    return new Float32Array(await this.gpu.read(this.buffer, 0, this.byteLength));
  }

  /** Same data, new shape (no copy). The view must not outlive this tensor. */
  reshape(shape: Shape): Tensor {
    if (numel(shape) !== this.size) throw new Error(`reshape: [${this.shape.join(', ')}] -> [${shape.join(', ')}] changes the element count`);
    return new Tensor(this.gpu, this.buffer, shape, false);
  }

  /** Overwrites the contents from CPU data of the same size. */
  write(data: ArrayLike<number>) {
    if (data.length !== this.size) throw new Error(`write: ${data.length} values for ${this.size} elements`);
    this.gpu.upload(this.buffer, data instanceof Float32Array ? data : Float32Array.from(data));
  }

  /** Returns the buffer to the pool. Idempotent. */
  dispose() {
    if (this.disposed) return;
    this.disposed = true;
    if (this.owner) this.gpu.release(this.buffer);
  }

  assertLive() {
    if (this.disposed) throw new Error('tensor used after dispose()');
  }
}

/** Throws unless `a` has exactly `shape` (for launcher argument checks). */
export function expectShape(what: string, t: Tensor, shape: Shape) {
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new Error(`${what}: expected shape [${shape.join(', ')}], got [${t.shape.join(', ')}]`);
  }
}
