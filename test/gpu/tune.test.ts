// The autotuner on a synthetic kernel family with known answers: a fast variant, a slow one (the same
// result with 512× the loads) and a wrong one (3x instead of 2x). The tuner must pick the fast one,
// reject the wrong one, persist the table per adapter, and re-measure when the candidates change.

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { grid1d, LINEAR_INDEX, Tensor, Tuner, type Gpu, type KernelSpec, type TuneSpec } from '../../src/gpu/index.js';
import { fileTuneStore } from '../../src/data/node.js';
import { device, Rng } from '../helpers.js';

const U = { n: 'u32' } as const;
function scaleKernel(kind: 'fast' | 'slow' | 'wrong'): KernelSpec<typeof U> {
  const body = kind === 'slow'
    // 512 loads of the same element, each adding x/256: 2x, in 512× the time.
    ? 'var a = 0.0; for (var j = 0u; j < 512u; j++) { a += X[(i + j * u.n) % u.n] * 0.00390625; } Y[i] = a;'
    : `Y[i] = ${kind === 'fast' ? 2 : 3}.0 * X[i];`;
  return {
    name: `test.scale.${kind}`, key: `test.scale.${kind}`, uniforms: U,
    bindings: [{ name: 'X', access: 'read' }, { name: 'Y', access: 'read_write' }],
    workgroupSize: [64, 1, 1],
    body: `@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = ${LINEAR_INDEX}; if (i >= u.n) { return; } ${body} }`,
  };
}

const N = 1 << 15;
function spec(candidates: string[], built: { trials: number }): TuneSpec {
  return {
    candidates,
    trial(gpu: Gpu) {
      built.trials++;
      const rng = new Rng(7);
      const x = Tensor.from(gpu, Float32Array.from({ length: N }, () => rng.normal()));
      return {
        run(id) {
          const y = Tensor.empty(gpu, [N]);
          gpu.run(scaleKernel(id as 'fast' | 'slow' | 'wrong'), [x.buffer, y.buffer], { n: N }, grid1d(N, 64));
          return y;
        },
        dispose() { x.dispose(); },
      };
    },
  };
}

describe('autotuner', () => {
  let gpu: Gpu;
  let dir: string;
  beforeAll(async () => { gpu = await device(); dir = await mkdtemp(join(tmpdir(), 'wgtrain-tune-')); });
  afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

  it('picks the fastest variant that computes the same result, and saves it per adapter', async () => {
    const file = join(dir, 'a', 'autotune.json');
    const t = new Tuner(gpu, 'auto');
    await t.attach(fileTuneStore(file));
    const built = { trials: 0 };
    // Default first: 'slow' is what runs until the class is measured.
    expect(t.choose('test.scale', 'n32k', () => spec(['slow', 'wrong', 'fast'], built))).toBeUndefined();
    expect(t.pending).toBe(1);
    const seen: string[] = [];
    const res = await t.settle({ onProblem: (k) => seen.push(k) });
    expect(seen).toEqual(['test.scale|n32k']);
    expect(built.trials).toBe(1);
    const e = res[0]!;
    console.log('tune ms:', e.ms, e.rejected);
    expect(e.pick).toBe('fast');
    expect(e.ms.wrong).toBeNull();
    expect(e.rejected?.wrong).toMatch(/differs from slow/);
    expect(e.ms.fast!).toBeLessThan(e.ms.slow! / 4);
    expect(t.choose('test.scale', 'n32k', () => { throw new Error('spec must not be rebuilt'); })).toBe('fast');

    // A new process (a new Tuner) loads the choice and measures nothing.
    const t2 = new Tuner(gpu, 'auto');
    await t2.attach(fileTuneStore(file));
    expect(t2.choose('test.scale', 'n32k', () => spec(['slow', 'wrong', 'fast'], built))).toBe('fast');
    expect(t2.pending).toBe(0);
    // Another adapter's section is separate: same file, no entry.
    const other = await fileTuneStore(file).load('some other adapter');
    expect(other).toBeNull();
    const json = JSON.parse(await readFile(file, 'utf8'));
    expect(Object.keys(json.adapters)).toEqual([gpu.adapterName]);

    // Changed candidates (a newer wgtrain) make the entry stale: measured again.
    const t3 = new Tuner(gpu, 'auto');
    await t3.attach(fileTuneStore(file));
    expect(t3.choose('test.scale', 'n32k', () => spec(['slow', 'fast'], built))).toBeUndefined();
    expect(t3.pending).toBe(1);
  });

  it("'cached' uses the table but never measures; 'off' always gives the default", async () => {
    const file = join(dir, 'b.json');
    const t = new Tuner(gpu, 'auto');
    await t.attach(fileTuneStore(file));
    const built = { trials: 0 };
    t.choose('test.scale', 'c', () => spec(['slow', 'fast'], built));
    await t.settle();
    const cached = new Tuner(gpu, 'cached');
    await cached.attach(fileTuneStore(file));
    expect(cached.choose('test.scale', 'c', () => spec(['slow', 'fast'], built))).toBe('fast');
    expect(cached.choose('test.scale', 'other', () => spec(['slow', 'fast'], built))).toBeUndefined();
    expect(cached.pending).toBe(0);
    const off = new Tuner(gpu, 'off');
    await off.attach(fileTuneStore(file));
    expect(off.choose('test.scale', 'c', () => spec(['slow', 'fast'], built))).toBeUndefined();
    expect(built.trials).toBe(1);
  });

  it('a corrupt or foreign cache file is ignored, then replaced', async () => {
    const file = join(dir, 'corrupt.json');
    await writeFile(file, '{"schema": 1, "adapters": ');
    const t = new Tuner(gpu, 'auto');
    await t.attach(fileTuneStore(file));
    t.choose('test.scale', 'x', () => spec(['slow', 'fast'], { trials: 0 }));
    await t.settle();
    const json = JSON.parse(await readFile(file, 'utf8'));
    expect(json.adapters[gpu.adapterName]['test.scale|x'].pick).toBe('fast');
    // A hand-edited entry naming a variant that doesn't exist is dropped on load.
    json.adapters[gpu.adapterName]['test.scale|x'].pick = 'nonexistent';
    await writeFile(file, JSON.stringify(json));
    const t2 = new Tuner(gpu, 'auto');
    await t2.attach(fileTuneStore(file));
    expect(t2.choose('test.scale', 'x', () => spec(['slow', 'fast'], { trials: 0 }))).toBeUndefined();
    expect(t2.pending).toBe(1);
  });
});
