import { beforeAll, describe, expect, it } from 'vitest';
import { GpuError, Tensor, bucketSize, grid1d, packUniforms, uniformStruct, type Gpu, type KernelSpec } from '../../src/gpu/index.js';
import { relu, scale } from '../../src/kernels/elementwise.js';
import { device, Rng } from '../helpers.js';

let gpu: Gpu;
beforeAll(async () => { gpu = await device(); });

describe('uniform layouts', () => {
  it('derives the WGSL struct and the byte packing from one definition', () => {
    const spec = { n: 'u32', lr: 'f32', off: 'i32' } as const;
    expect(uniformStruct(spec)).toBe('struct U {\n  n: u32,\n  lr: f32,\n  off: i32,\n};');
    const v = new DataView(packUniforms(spec, { n: 7, lr: 0.5, off: -3 }));
    expect(v.byteLength).toBe(16);
    expect([v.getUint32(0, true), v.getFloat32(4, true), v.getInt32(8, true)]).toEqual([7, 0.5, -3]);
    expect(() => packUniforms(spec, { n: -1, lr: 0, off: 0 })).toThrow(/not a u32/);
  });
});

describe('device', () => {
  it('requests the adapter\'s real limits', () => {
    expect(gpu.maxBinding).toBeGreaterThanOrEqual(128 * 2 ** 20);
    expect(Number(gpu.limits.maxBufferSize)).toBeGreaterThanOrEqual(gpu.maxBinding);
    console.log(`adapter: ${gpu.adapterName}; binding ${gpu.maxBinding} B; features ${[...gpu.features].join(',')}`);
  });

  it('round-trips data through a tensor', async () => {
    const x = new Rng(1).array(1001);
    expect(await Tensor.from(gpu, x, [7, 11, 13]).read()).toEqual(x);
    expect(() => Tensor.from(gpu, x, [7, 11])).toThrow(/do not fill/);
  });

  it('reuses pooled buffers and keeps memory flat across repeated work', async () => {
    const x = Tensor.from(gpu, new Rng(2).array(4096));
    const run = async () => { const y = relu(x); const z = scale(y, 2); y.dispose(); await z.read(); z.dispose(); };
    await run();
    const before = { ...gpu.pool.stats };
    for (let i = 0; i < 20; i++) await run();
    expect(gpu.pool.stats.inUse).toBe(before.inUse);
    expect(gpu.pool.stats.created).toBe(before.created);
    const b = gpu.alloc(1000);
    gpu.release(b);
    expect(gpu.alloc(900)).toBe(b); // same bucket
    expect(bucketSize(1000)).toBe(1024);
    expect(bucketSize(3 * 2 ** 20 + 1)).toBe(3.25 * 2 ** 20);
    expect(() => { gpu.release(b); gpu.release(b); }).toThrow(/released twice/);
  });

  it('caches pipelines by key and batches many dispatches into one submit', async () => {
    const x = Tensor.from(gpu, new Rng(3).array(333));
    relu(x).dispose(); scale(x, 2).dispose();
    const pipes = gpu.pipelineCount;
    let t = x;
    for (let i = 0; i < 50; i++) { const n = scale(t, 1.01); if (t !== x) t.dispose(); t = n; }
    expect(gpu.pipelineCount).toBe(pipes); // the cached 'scale' pipeline serves all 50 dispatches
    const got = await t.read();
    const want = (await x.read()).map((v) => v * 1.01 ** 50);
    for (let i = 0; i < got.length; i++) expect(got[i]).toBeCloseTo(want[i]!, 4);
  });

  it('spreads dispatches beyond 65535 workgroups over two dimensions', async () => {
    expect(grid1d(65535 * 256, 256)).toEqual([65535, 1, 1]);
    const g = grid1d(65536 * 256 + 5, 256);
    expect(g[1]).toBe(2);
    const n = 65536 * 256 + 5;
    const x = new Float32Array(n); x[n - 1] = -2; x[n - 2] = 3; x[0] = 1;
    const y = await relu(Tensor.from(gpu, x)).read();
    expect([y[0], y[n - 2], y[n - 1]]).toEqual([1, 3, 0]);
  });

  it('surfaces GPU validation errors as a GpuError instead of a wrong answer', async () => {
    const bad: KernelSpec<{ n: 'u32' }> = {
      name: 'bad.v1', key: 'test.bad', uniforms: { n: 'u32' }, workgroupSize: [1, 1, 1],
      bindings: [{ name: 'y', access: 'read_write' }],
      body: '@compute @workgroup_size(1) fn main() { y[0] = undefined_symbol; }',
    };
    const t = Tensor.zeros(gpu, [4]);
    gpu.run(bad, [t.buffer], { n: 1 }, [1, 1, 1]);
    await expect(t.read()).rejects.toThrow(GpuError);
    // Errors arrive asynchronously; drain the ones that trail the first.
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 20));
      try { await gpu.sync(); } catch { /* trailing errors of the same bad dispatch */ }
    }
    // The device stays usable afterwards.
    expect(await relu(Tensor.from(gpu, [1, -1])).read()).toEqual(new Float32Array([1, 0]));
  });

  it('times kernels with timestamp queries where the adapter has them', async () => {
    if (!gpu.hasTimestamps) { console.log('NOTICE: adapter lacks timestamp-query; timing test skipped'); return; }
    gpu.setTiming(true);
    const x = Tensor.from(gpu, new Rng(4).array(1 << 16));
    relu(x); scale(x, 3);
    const times = await gpu.takeTimings();
    gpu.setTiming(false);
    expect(times.map((t) => t.name)).toEqual(['relu.v2', 'scale.v2']);
    for (const t of times) expect(t.ms).toBeGreaterThanOrEqual(0);
  });
});
