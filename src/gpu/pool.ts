// Buffer pool. GPU buffers are expensive to create, and a training step allocates the same sizes
// every step, so released buffers go to per-size free lists and are handed out again.
//
// NOTE: reuse is safe without fences because every GPU use goes through one queue in submission
// order: a buffer released after a kernel read it, then handed to a later kernel that writes it, is
// written after the read. Only CPU writes (queue.writeBuffer) jump the queue: the device flushes
// pending work before such a write (see Gpu.upload).

export const STORAGE_USAGE = 0x0080 /* STORAGE */ | 0x0004 /* COPY_SRC */ | 0x0008 /* COPY_DST */;

/** Pool bucket: multiples of 256 B up to 1 MiB, then 8 steps per power of two (≤ 12.5% waste). */
export function bucketSize(bytes: number): number {
  const b = Math.max(256, bytes);
  if (b <= 1 << 20) return Math.ceil(b / 256) * 256;
  const p = 2 ** Math.floor(Math.log2(b));
  const step = p / 8;
  return Math.ceil(b / step) * step;
}

export interface PoolStats {
  /** Bytes in buffers handed out and not yet released. */
  inUse: number;
  /** Bytes in buffers waiting in free lists. */
  pooled: number;
  /** High-water mark of inUse. */
  peak: number;
  created: number;
}

export class BufferPool {
  private free = new Map<number, GPUBuffer[]>();
  private live = new Map<GPUBuffer, number>();
  /**
   * Buffers a captured step (capture.ts) binds. When released they are parked here instead of the
   * free lists, so nothing else can be handed a buffer that a replay will write.
   */
  private pinned = new Set<GPUBuffer>();
  private parked = new Set<GPUBuffer>();
  readonly stats: PoolStats = { inUse: 0, pooled: 0, peak: 0, created: 0 };
  /** While set, acquire() hands out no buffer in it (see Gpu.outsideCapture). */
  exclude: ReadonlySet<GPUBuffer> | null = null;

  constructor(private device: GPUDevice, private maxBufferSize: number) {}

  acquire(bytes: number, label?: string): GPUBuffer {
    const size = bucketSize(bytes);
    if (size > this.maxBufferSize) {
      const exact = Math.ceil(bytes / 4) * 4;
      if (exact > this.maxBufferSize) {
        throw new Error(`a ${(bytes / 2 ** 20).toFixed(1)} MiB tensor exceeds this adapter's maxBufferSize of ${(this.maxBufferSize / 2 ** 20).toFixed(0)} MiB; use a smaller batch or image size`);
      }
      return this.create(exact, label);
    }
    const list = this.free.get(size);
    let buf: GPUBuffer | undefined;
    if (this.exclude && list) {
      const i = list.findIndex((b) => !this.exclude!.has(b));
      if (i >= 0) buf = list.splice(i, 1)[0];
    } else buf = list?.pop();
    if (buf) {
      this.stats.pooled -= size;
      this.track(buf, size);
      return buf;
    }
    return this.create(size, label);
  }

  private create(size: number, label?: string): GPUBuffer {
    const buf = this.device.createBuffer({ size, usage: STORAGE_USAGE, label });
    this.stats.created++;
    this.track(buf, size);
    return buf;
  }

  private track(buf: GPUBuffer, size: number) {
    this.live.set(buf, size);
    this.stats.inUse += size;
    if (this.stats.inUse > this.stats.peak) this.stats.peak = this.stats.inUse;
  }

  release(buf: GPUBuffer) {
    const size = this.live.get(buf);
    if (size === undefined) throw new Error('BufferPool.release: buffer is not live (released twice?)');
    this.live.delete(buf);
    this.stats.inUse -= size;
    if (this.pinned.has(buf)) { this.parked.add(buf); this.stats.pooled += size; return; }
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    list.push(buf);
    this.stats.pooled += size;
  }

  /** Restarts the high-water mark at the current use (to measure the peak of one piece of work). */
  resetPeak() { this.stats.peak = this.stats.inUse; }

  /** Whether this pool handed out `buf` and it has not been released. */
  isLive(buf: GPUBuffer): boolean { return this.live.has(buf); }

  /** Keeps `bufs` out of the free lists until unpinned (see `pinned`). */
  pin(bufs: Iterable<GPUBuffer>) {
    for (const b of bufs) {
      if (this.pinned.has(b)) continue;
      this.pinned.add(b);
      // Already released during the capture: move it from its free list to the parked set.
      const size = bucketSize(b.size);
      const list = this.free.get(b.size) ?? this.free.get(size);
      const i = list?.indexOf(b) ?? -1;
      if (list && i >= 0) { list.splice(i, 1); this.parked.add(b); }
    }
  }

  /** Returns pinned buffers to normal life: parked ones go back to the free lists. */
  unpin(bufs: Iterable<GPUBuffer>) {
    for (const b of bufs) {
      if (!this.pinned.delete(b)) continue;
      if (this.parked.delete(b)) {
        let list = this.free.get(b.size);
        if (!list) this.free.set(b.size, (list = []));
        list.push(b);
      }
    }
  }

  /** Destroys every pooled (free) buffer. Live and parked buffers are untouched. */
  trim() {
    for (const list of this.free.values()) for (const b of list) b.destroy();
    this.free.clear();
    this.stats.pooled = 0;
  }
}
