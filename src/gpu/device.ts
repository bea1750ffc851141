// The one narrow device interface (style.md #6): acquire a device, allocate and release buffers,
// compile kernels (cached), dispatch (many per command buffer), upload, read back, time.
// Nothing outside src/gpu/ touches GPUDevice.

import { kernelSource, type KernelSpec } from './kernel.js';
import { BufferPool } from './pool.js';
import { Tuner } from './tune.js';
import { packUniforms, uniformByteSize, type UniformSpec, type UniformValues } from './uniforms.js';

/** An error the GPU reported (validation, out-of-memory, device lost): never a silent wrong answer. */
export class GpuError extends Error {
  override name = 'GpuError';
}

/** A buffer, or a window of one (offset and size in bytes; offset a multiple of 256). */
export type Binding = GPUBuffer | { buffer: GPUBuffer; offset: number; size: number };

export interface GpuOptions {
  powerPreference?: GPUPowerPreference;
  /** Ask for timestamp queries when the adapter has them (per-kernel GPU time). */
  timing?: boolean;
  /** Extra Dawn toggles (Node only), e.g. ['backend=vulkan']. */
  dawnFlags?: string[];
}

export interface KernelTime { name: string; label: string; ms: number }

/** What a dispatch observer sees (traces, `explain`): one per dispatch, eager or replayed. */
export interface DispatchInfo {
  /** Kernel name with version, e.g. 'conv2d.fwd.v2'. */
  name: string;
  /** The launcher's label (an op family tag, e.g. 'conv2d'). */
  label: string;
  workgroups: readonly [number, number, number];
  /** Bytes of each bound storage range (empty for replays). */
  bindingBytes: readonly number[];
  replayed: boolean;
}

type RecordedOp =
  | { kind: 'dispatch'; name: string; pipeline: GPUComputePipeline; group: GPUBindGroup; workgroups: readonly [number, number, number] }
  | { kind: 'clear'; buffer: GPUBuffer; offset: number; size: number }
  | { kind: 'copy'; src: GPUBuffer; srcOffset: number; dst: GPUBuffer; dstOffset: number; size: number };

/**
 * A captured sequence of GPU work (a training step for fixed shapes), replayable without re-running
 * the JavaScript that produced it: bind groups are built once, every buffer it binds is pinned (the
 * pool will not hand it to anyone else), and a replay encodes all dispatches into one compute pass.
 * Uniforms that change from step to step (the optimizer's step count and LR) are rewritten by hooks
 * registered during capture (`Gpu.onReplay`).
 */
export class Recording {
  readonly ops: RecordedOp[] = [];
  readonly buffers = new Set<GPUBuffer>();
  readonly uniforms: GPUBuffer[] = [];
  readonly hooks: (() => void)[] = [];
  get dispatches(): number { return this.ops.filter((o) => o.kind === 'dispatch').length; }
}

const NO_ADAPTER =
  'no WebGPU adapter found. On Linux without a GPU install a software Vulkan driver ' +
  '(Debian bookworm: apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1) and set XDG_RUNTIME_DIR; ' +
  'in a browser, use one with WebGPU enabled';

// Limits we ask for at the adapter's real values (the defaults are far lower: 128 MiB bindings,
// 256 MiB buffers, and VGG16's first FC weight alone is 392 MiB).
const WANTED_LIMITS = [
  'maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX', 'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupsPerDimension', 'maxStorageBuffersPerShaderStage',
] as const;

const QUERY_CAPACITY = 4096;

export class Gpu {
  readonly pool: BufferPool;
  readonly limits: GPUSupportedLimits;
  readonly features: ReadonlySet<string>;
  /** Adapter description, e.g. 'mesa llvmpipe' or 'nvidia ...'. */
  readonly adapterName: string;
  /** Dispatches encoded since the process started (for tests of "no work for frozen layers"). */
  dispatchCount = 0;
  /** Per-kernel-name dispatch counts, when `countByName` is on. */
  readonly dispatchesByName = new Map<string, number>();
  /** Called for every dispatch as it is encoded (eager) or replayed; null: no overhead. */
  onDispatch: ((d: DispatchInfo) => void) | null = null;
  /** Which kernel variant runs per shape class on this adapter (tune.ts). */
  readonly tuner: Tuner;

  private pipelines = new Map<string, { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout }>();
  private encoder: GPUCommandEncoder | null = null;
  private pendingUniforms: GPUBuffer[] = [];
  private freeUniforms = new Map<number, GPUBuffer[]>();
  private errors: string[] = [];
  private lost: string | null = null;
  // Timestamp queries.
  private querySet: GPUQuerySet | null = null;
  private queryLabels: { name: string; label: string }[] = [];
  private pendingTimes: Promise<KernelTime[]>[] = [];
  timing = false;

  constructor(readonly device: GPUDevice, adapter: GPUAdapter, private keepAlive: unknown) {
    this.limits = device.limits;
    this.features = new Set(device.features as unknown as Iterable<string>);
    const info = adapter.info;
    this.adapterName = [info?.vendor, info?.architecture, info?.device, info?.description].filter(Boolean).join(' ') || 'unknown adapter';
    this.pool = new BufferPool(device, Number(this.limits.maxBufferSize));
    this.tuner = new Tuner(this);
    device.addEventListener('uncapturederror', (ev) => {
      this.errors.push((ev as GPUUncapturedErrorEvent).error.message);
    });
    void device.lost.then((info) => {
      if (info.reason !== 'destroyed') this.lost = info.message || String(info.reason);
    });
  }

  get maxBinding(): number { return Number(this.limits.maxStorageBufferBindingSize); }
  get hasTimestamps(): boolean { return this.features.has('timestamp-query'); }
  get hasSubgroups(): boolean { return this.features.has('subgroups'); }

  // ---- buffers -------------------------------------------------------------------------------

  /** A storage buffer of at least `bytes` bytes, from the pool. Contents are undefined. */
  alloc(bytes: number, label?: string): GPUBuffer { return this.pool.acquire(bytes, label); }

  release(buf: GPUBuffer) { this.pool.release(buf); }

  /** Writes CPU data into a buffer. Pending GPU work is submitted first (see pool.ts NOTE). */
  upload(buf: GPUBuffer, data: ArrayBufferView, byteOffset = 0) {
    this.flush();
    // NOTE: Dawn's Node binding rejects views of a SharedArrayBuffer; copy those.
    const src = data.buffer instanceof ArrayBuffer ? data : new Uint8Array(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    this.device.queue.writeBuffer(buf, byteOffset, src.buffer as ArrayBuffer, src.byteOffset, src.byteLength);
  }

  /** Reads `bytes` bytes at `offset` of a buffer back to the CPU (submits pending work). */
  async read(buf: GPUBuffer, offset = 0, bytes = buf.size - offset): Promise<ArrayBuffer> {
    const size = Math.ceil(bytes / 4) * 4;
    const staging = this.device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.encode().copyBufferToBuffer(buf, offset, staging, 0, size);
    this.flush();
    try {
      await staging.mapAsync(GPUMapMode.READ);
    } catch (e) {
      this.check();
      throw new GpuError(`readback failed: ${(e as Error).message}`);
    }
    const out = staging.getMappedRange().slice(0, bytes);
    staging.unmap();
    staging.destroy();
    this.check();
    return out;
  }

  /** Copies bytes between buffers in stream order. */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number) {
    this.encode().copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
    if (this.recording) {
      this.recording.ops.push({ kind: 'copy', src, srcOffset, dst, dstOffset, size: bytes });
      this.recording.buffers.add(src).add(dst);
    }
  }

  /** Zero-fills a byte range (clearBuffer needs 4-byte multiples). */
  zero(buf: GPUBuffer, offset = 0, bytes = buf.size - offset) {
    this.encode().clearBuffer(buf, offset, bytes);
    if (this.recording) {
      this.recording.ops.push({ kind: 'clear', buffer: buf, offset, size: bytes });
      this.recording.buffers.add(buf);
    }
  }

  // ---- kernels -------------------------------------------------------------------------------

  private pipeline(k: KernelSpec) {
    let p = this.pipelines.get(k.key);
    if (p) return p;
    const module = this.device.createShaderModule({ code: kernelSource(k), label: k.name });
    const entries: GPUBindGroupLayoutEntry[] = [
      { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform' } },
      ...k.bindings.map((b, i): GPUBindGroupLayoutEntry => ({
        binding: i + 1,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: b.access === 'read' ? 'read-only-storage' : 'storage' },
      })),
    ];
    const layout = this.device.createBindGroupLayout({ entries, label: k.name });
    const pipeline = this.device.createComputePipeline({
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: 'main' },
      label: k.name,
    });
    p = { pipeline, layout };
    this.pipelines.set(k.key, p);
    return p;
  }

  /** Number of distinct compiled pipelines (the pipeline cache's size). */
  get pipelineCount(): number { return this.pipelines.size; }

  private encode(): GPUCommandEncoder {
    if (this.lost) throw new GpuError(`GPU device lost: ${this.lost}`);
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    return this.encoder;
  }

  private uniformBuffer(data: ArrayBuffer): GPUBuffer {
    const size = data.byteLength;
    let buf = this.freeUniforms.get(size)?.pop();
    if (!buf) buf = this.device.createBuffer({ size, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    // Safe: this buffer is not used by the open encoder (it came back from an already-submitted one).
    this.device.queue.writeBuffer(buf, 0, data);
    this.pendingUniforms.push(buf);
    return buf;
  }

  /**
   * Encodes one dispatch of `k`. `bindings` follow `k.bindings` in order. Work is submitted on
   * `flush()` or any read, so a whole training step can live in one command buffer.
   */
  run<U extends UniformSpec>(
    k: KernelSpec<U>, bindings: readonly Binding[], uniforms: UniformValues<U>,
    workgroups: readonly [number, number, number], label = '',
  ): GPUBuffer | null {
    if (bindings.length !== k.bindings.length) {
      throw new Error(`${k.name}: expected ${k.bindings.length} bindings, got ${bindings.length}`);
    }
    const maxG = Number(this.limits.maxComputeWorkgroupsPerDimension);
    if (workgroups.some((g) => g > maxG)) throw new Error(`${k.name}: dispatch ${workgroups.join('x')} exceeds ${maxG} groups per dimension`);
    if (workgroups.some((g) => g === 0)) return null;
    const { pipeline, layout } = this.pipeline(k);
    const rec = this.recording;
    const udata = packUniforms(k.uniforms, uniforms);
    let ubuf: GPUBuffer;
    if (rec) {
      // A captured dispatch keeps its own uniform buffer for as long as the recording lives.
      ubuf = this.device.createBuffer({ size: udata.byteLength, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
      this.device.queue.writeBuffer(ubuf, 0, udata);
      rec.uniforms.push(ubuf);
    } else ubuf = this.uniformBuffer(udata);
    const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: ubuf, size: uniformByteSize(k.uniforms) } }];
    bindings.forEach((b, i) => {
      const res = 'buffer' in b ? b : { buffer: b, offset: 0, size: Math.min(b.size, this.maxBinding) };
      entries.push({ binding: i + 1, resource: res });
    });
    const group = this.device.createBindGroup({ layout, entries });
    if (rec) {
      for (const b of bindings) rec.buffers.add('buffer' in b ? b.buffer : b);
      rec.ops.push({ kind: 'dispatch', name: k.name, pipeline, group, workgroups });
    }
    const enc = this.encode();
    let timestampWrites: GPUComputePassTimestampWrites | undefined;
    if (this.timing && this.querySet) {
      if (this.queryLabels.length * 2 >= QUERY_CAPACITY) { this.flush(); return this.run(k, bindings, uniforms, workgroups, label); }
      const i = this.queryLabels.length * 2;
      this.queryLabels.push({ name: k.name, label });
      timestampWrites = { querySet: this.querySet, beginningOfPassWriteIndex: i, endOfPassWriteIndex: i + 1 };
    }
    const pass = enc.beginComputePass(timestampWrites ? { timestampWrites } : {});
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(workgroups[0], workgroups[1], workgroups[2]);
    pass.end();
    this.countDispatch(k.name);
    this.onDispatch?.({ name: k.name, label, workgroups, bindingBytes: bindings.map((b) => ('buffer' in b ? b.size : Math.min(b.size, this.maxBinding))), replayed: false });
    return ubuf;
  }

  private countDispatch(name: string) {
    this.dispatchCount++;
    this.dispatchesByName.set(name, (this.dispatchesByName.get(name) ?? 0) + 1);
  }

  /** Rewrites a captured dispatch's uniforms (the buffer `run` returned while capturing). */
  writeUniforms<U extends UniformSpec>(k: KernelSpec<U>, ubuf: GPUBuffer, uniforms: UniformValues<U>) {
    this.device.queue.writeBuffer(ubuf, 0, packUniforms(k.uniforms, uniforms));
  }

  // ---- capture and replay --------------------------------------------------------------------

  private recording: Recording | null = null;

  get capturing(): boolean { return this.recording !== null; }

  /** Starts recording every dispatch, clear and copy (they still execute as usual). */
  beginCapture(): Recording {
    if (this.recording) throw new Error('beginCapture: already capturing');
    this.flush();
    this.recording = new Recording();
    return this.recording;
  }

  /** Stops recording; pins every buffer the recording binds. */
  endCapture(): Recording {
    const rec = this.recording;
    if (!rec) throw new Error('endCapture: not capturing');
    this.flush();
    this.recording = null;
    this.pool.pin(rec.buffers);
    return rec;
  }

  /**
   * Runs fn with capture suspended: its work executes now but is not part of the recording (e.g. the
   * zero-fill of optimizer state created by a captured first step must not re-run on every replay).
   * NOTE: buffers allocated in fn are never ones the recording has bound so far: a temporary of the
   * step that was freed earlier in the capture would otherwise be rewritten by every replay.
   */
  outsideCapture<T>(fn: () => T): T {
    const rec = this.recording;
    if (!rec) return fn();
    this.recording = null;
    this.pool.exclude = rec.buffers;
    try { return fn(); } finally { this.recording = rec; this.pool.exclude = null; }
  }

  /** Registers a hook that runs before each replay of the recording being captured. */
  onReplay(fn: () => void) {
    this.recording?.hooks.push(fn);
  }

  /** Encodes a recording again: hooks first, then every op, dispatches sharing compute passes. */
  replay(rec: Recording) {
    if (this.recording) throw new Error('replay: cannot replay while capturing');
    for (const h of rec.hooks) h();
    const enc = this.encode();
    let pass: GPUComputePassEncoder | null = null;
    for (const op of rec.ops) {
      if (op.kind === 'dispatch') {
        pass ??= enc.beginComputePass();
        pass.setPipeline(op.pipeline);
        pass.setBindGroup(0, op.group);
        pass.dispatchWorkgroups(op.workgroups[0], op.workgroups[1], op.workgroups[2]);
        this.countDispatch(op.name);
        this.onDispatch?.({ name: op.name, label: '', workgroups: op.workgroups, bindingBytes: [], replayed: true });
        continue;
      }
      if (pass) { pass.end(); pass = null; }
      if (op.kind === 'clear') enc.clearBuffer(op.buffer, op.offset, op.size);
      else enc.copyBufferToBuffer(op.src, op.srcOffset, op.dst, op.dstOffset, op.size);
    }
    pass?.end();
  }

  /** Frees a recording: its uniform buffers, and the pins on its buffers. */
  disposeRecording(rec: Recording) {
    this.pool.unpin(rec.buffers);
    for (const u of rec.uniforms) u.destroy();
    rec.ops.length = 0;
  }

  /** Submits everything encoded so far. */
  flush() {
    this.check();
    if (!this.encoder) return;
    const enc = this.encoder;
    this.encoder = null;
    let resolve: { buf: GPUBuffer; labels: { name: string; label: string }[]; qbuf: GPUBuffer } | null = null;
    if (this.timing && this.querySet && this.queryLabels.length) {
      const n = this.queryLabels.length * 2;
      const qbuf = this.device.createBuffer({ size: n * 8, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
      const rbuf = this.device.createBuffer({ size: n * 8, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      enc.resolveQuerySet(this.querySet, 0, n, qbuf, 0);
      enc.copyBufferToBuffer(qbuf, 0, rbuf, 0, n * 8);
      resolve = { buf: rbuf, labels: this.queryLabels, qbuf };
      this.queryLabels = [];
    }
    this.device.queue.submit([enc.finish()]);
    resolve?.qbuf.destroy(); // safe once submitted: destruction waits for the GPU to finish with it
    for (const u of this.pendingUniforms) {
      let list = this.freeUniforms.get(u.size);
      if (!list) this.freeUniforms.set(u.size, (list = []));
      list.push(u);
    }
    this.pendingUniforms = [];
    if (resolve) {
      const { buf, labels } = resolve;
      this.pendingTimes.push(buf.mapAsync(GPUMapMode.READ).then(() => {
        const t = new BigInt64Array(buf.getMappedRange());
        const out = labels.map((l, i) => ({ ...l, ms: Number(t[2 * i + 1]! - t[2 * i]!) / 1e6 }));
        buf.unmap(); buf.destroy();
        return out;
      }));
    }
  }

  /** Waits until the GPU has finished everything submitted so far. */
  async sync() {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.check();
  }

  /** Turns per-dispatch GPU timestamps on or off (no-op if the adapter lacks timestamp-query). */
  setTiming(on: boolean) {
    if (on && !this.hasTimestamps) return false;
    this.flush();
    if (on && !this.querySet) this.querySet = this.device.createQuerySet({ type: 'timestamp', count: QUERY_CAPACITY });
    this.timing = on;
    return on;
  }

  /** GPU times of the dispatches timed since the last call. */
  async takeTimings(): Promise<KernelTime[]> {
    this.flush();
    // NOTE: take the list before awaiting, or timings submitted meanwhile would be dropped.
    const pending = this.pendingTimes;
    this.pendingTimes = [];
    return (await Promise.all(pending)).flat();
  }

  /** Throws the first GPU error reported since the last check. */
  check() {
    if (this.lost) throw new GpuError(`GPU device lost: ${this.lost}`);
    if (this.errors.length) {
      const e = this.errors.splice(0);
      throw new GpuError(`WebGPU error: ${e[0]}${e.length > 1 ? ` (+${e.length - 1} more)` : ''}`);
    }
  }

  destroy() {
    this.encoder = null;
    this.pool.trim();
    this.device.destroy();
    if (current === this) current = null;
  }
}

let current: Gpu | null = null;
let dawnInstance: GPU | null = null;
let pending: Promise<Gpu> | null = null;

/** The process-wide device, created on first use. */
export function getGpu(opts: GpuOptions = {}): Promise<Gpu> {
  if (current) return Promise.resolve(current);
  if (!pending) pending = createGpu(opts).then((g) => (current = g)).finally(() => { pending = null; });
  return pending;
}

/**
 * Acquires a device. The single place that chooses between the browser's `navigator.gpu` and Dawn
 * in Node (the `webgpu` package).
 */
export async function createGpu(opts: GpuOptions = {}): Promise<Gpu> {
  let gpu: GPU | undefined = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
  let keepAlive: unknown = null;
  if (!gpu && typeof process !== 'undefined' && process.versions?.node) {
    if (!process.env.XDG_RUNTIME_DIR) process.env.XDG_RUNTIME_DIR = '/tmp';
    const mod = 'webgpu';
    const webgpu = (await import(/* @vite-ignore */ mod)) as { create: (f: string[]) => GPU; globals: object };
    Object.assign(globalThis, webgpu.globals);
    // NOTE: the object create() returns must outlive every device made from it, or Dawn crashes
    // (seen as a segfault at exit after device.destroy()). Created once per process and kept.
    dawnInstance ??= webgpu.create(opts.dawnFlags ?? []);
    gpu = dawnInstance;
    keepAlive = gpu;
  }
  if (!gpu) throw new GpuError(NO_ADAPTER);
  const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? 'high-performance' });
  if (!adapter) throw new GpuError(NO_ADAPTER);
  const requiredLimits: Record<string, number> = {};
  for (const name of WANTED_LIMITS) {
    const v = (adapter.limits as unknown as Record<string, number | undefined>)[name];
    if (typeof v === 'number') requiredLimits[name] = v;
  }
  const requiredFeatures = (['timestamp-query', 'subgroups', 'shader-f16'] as const).filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures: requiredFeatures as GPUFeatureName[] });
  // NOTE: in Chromium the device is lost ("A valid external Instance reference no longer exists")
  // once its GPUAdapter is garbage-collected: keep the adapter alive as long as the Gpu.
  const g = new Gpu(device, adapter, keepAlive ?? adapter);
  if (opts.timing) g.setTiming(true);
  return g;
}
