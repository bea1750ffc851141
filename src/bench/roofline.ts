// The two ceilings of a measured roofline, taken on the adapter the suite runs on:
//
//   compute  the best GFLOP/s of wgtrain's own tuned matmul (v2) on a large square product over a
//            few tile shapes: "the fastest dense arithmetic we know how to get out of this adapter".
//            NOTE: a measured peak, not the datasheet's: on lavapipe the datasheet number (AVX-512
//            FMA peak, ~435 GFLOP/s on 2 threads) is unreachable through WGSL (loads are per-lane
//            loops; software-adapter.md), so % of it would say nothing. On a real GPU, compare this
//            probe with the vendor's FP32 peak separately.
//   memory   GB/s (read + written) of the fastest of a few copy kernels with vec4 loads and stores.
//
// A kernel of arithmetic intensity I = flops / bytes can reach at most min(peak, I · bandwidth);
// `roofPct` says how much of that it does.

import type { Gpu } from '../gpu/device.js';
import { MAX_GROUPS, type KernelSpec } from '../gpu/kernel.js';
import { Tensor } from '../gpu/tensor.js';
import { matmul, pickTile, type Tile } from '../kernels/matmul.js';
import { Rng } from '../util/rng.js';
import { timeLaunch, type TimeOptions } from './timing.js';
import type { Roofline } from './types.js';

/**
 * Copy kernels: each invocation moves V vec4s, either a contiguous chunk of V (lane i: [V·i, V·i + V))
 * or V elements a grid apart (lane i: i, i + G, i + 2G, … with G the grid's invocation count; the
 * coalesced pattern GPUs like). Dispatched over an exact multiple of the grid, so no bounds checks.
 * NOTE: the best shape differs by adapter (lavapipe: ~4-8 vec4s per lane, 64-lane groups, because
 * every invocation pays a fixed cost there), so the probe tries a few and keeps the fastest.
 */
interface CopyShape { wg: number; v: number; mode: 'chunk' | 'grid' }
const COPY_SHAPES: CopyShape[] = [{ wg: 256, v: 1, mode: 'chunk' }, { wg: 64, v: 4, mode: 'grid' }, { wg: 64, v: 8, mode: 'chunk' }];

function copyKernel({ wg, v, mode }: CopyShape): KernelSpec<{ n: 'u32' }> {
  const idx = (j: number) => (mode === 'chunk' ? `i * ${v}u + ${j}u` : `i + ${j}u * nwg.x * ${wg}u`);
  return {
    name: 'bench.copy', key: `bench.copy.${wg}.${v}.${mode}`,
    uniforms: { n: 'u32' },
    bindings: [{ name: 'src', access: 'read', type: 'vec4<f32>' }, { name: 'dst', access: 'read_write', type: 'vec4<f32>' }],
    workgroupSize: [wg, 1, 1],
    body: /* wgsl */ `
@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x;
${Array.from({ length: v }, (_, j) => `  dst[${idx(j)}] = src[${idx(j)}];`).join('\n')}
}`,
  };
}

export interface RooflineOptions {
  /** Side of the square matmul probe. */
  matmulSize: number;
  /** Tile shapes tried (the default tile is always tried). */
  tiles: Tile[];
  /** Bytes copied by the copy probe. */
  copyBytes: number;
  time: TimeOptions;
}

export async function measureRoofline(gpu: Gpu, o: RooflineOptions): Promise<Roofline> {
  // Compute: square matmul, best over tiles.
  const S = o.matmulSize;
  const rng = new Rng(11);
  const a = Tensor.from(gpu, rng.array(S * S), [S, S]), b = Tensor.from(gpu, rng.array(S * S), [S, S]);
  const c = Tensor.empty(gpu, [S, S]);
  const tiles = [pickTile(S), ...o.tiles.filter((t) => JSON.stringify(t) !== JSON.stringify(pickTile(S)))];
  let best = { gflops: 0, tile: tiles[0]! };
  for (const tile of tiles) {
    const launch = () => { matmul(a, b, { out: c, tile }); };
    launch(); // compile
    const t = await timeLaunch(gpu, launch, o.time);
    // NOTE: a ceiling, so the best sample: other work on the machine only ever slows a sample down.
    const gflops = (2 * S ** 3) / t.msMin / 1e6;
    if (gflops > best.gflops) best = { gflops, tile };
  }
  a.dispose(); b.dispose(); c.dispose();

  // Memory: the best copy shape.
  let copy = { gbs: 0, shape: COPY_SHAPES[0]!, bytes: 0 };
  const src = Tensor.zeros(gpu, [o.copyBytes / 4]), dst = Tensor.empty(gpu, [o.copyBytes / 4]);
  for (const shape of COPY_SHAPES) {
    const perGroup = shape.wg * shape.v;
    const groups = Math.min(MAX_GROUPS, Math.floor(o.copyBytes / 16 / perGroup));
    const n4 = groups * perGroup;
    const k = copyKernel(shape);
    const launch = () => { gpu.run(k, [src.buffer, dst.buffer], { n: n4 }, [groups, 1, 1], 'bench.copy'); };
    launch();
    const t = await timeLaunch(gpu, launch, o.time);
    const gbs = (2 * n4 * 16) / t.msMin / 1e6;
    if (gbs > copy.gbs) copy = { gbs, shape, bytes: n4 * 16 };
  }
  src.dispose(); dst.dispose();
  const bt = best.tile;
  return {
    peakGflops: best.gflops,
    peakProbe: `matmul ${S}³ v2 ${bt.TM}×${bt.TN}${tiles.length > 1 ? ` (best of ${tiles.length} tiles)` : ''}`,
    copyGBs: copy.gbs,
    copyProbe: `copy ${(copy.bytes / 2 ** 20).toFixed(0)} MiB, ${copy.shape.v} vec4/lane ${copy.shape.mode}, wg ${copy.shape.wg} (best of ${COPY_SHAPES.length})`,
  };
}

/**
 * The roofline raised to the best rate any case reached, when a case beat a probe (a ceiling no
 * kernel can pass: the probe was unlucky with the machine's load, or, for bandwidth, a case's access
 * pattern suits the adapter better than the copy's). Says which case set it.
 */
export function raiseRoofline(r: Roofline, results: readonly { id: string; gflops: number | null; gbs: number | null; flops: number }[]): Roofline {
  const out = { ...r };
  for (const k of results) {
    if (k.flops > 0 && k.gflops !== null && k.gflops > out.peakGflops) {
      out.peakGflops = k.gflops;
      out.peakProbe = `${r.peakProbe}; raised by ${k.id}`;
    }
    if (k.flops === 0 && k.gbs !== null && k.gbs > out.copyGBs) {
      out.copyGBs = k.gbs;
      out.copyProbe = `${r.copyProbe}; raised by ${k.id}`;
    }
  }
  return out;
}

/** Percent of the attainable rate: compute-bound kernels against the peak, the rest against bandwidth. */
export function roofPercent(r: Roofline, flops: number, bytes: number, ms: number): { pct: number; bound: 'compute' | 'memory' } {
  if (flops > 0) {
    const attainable = Math.min(r.peakGflops, (flops / bytes) * r.copyGBs);
    const bound = attainable < r.peakGflops ? 'memory' : 'compute';
    return { pct: (100 * flops / ms / 1e6) / attainable, bound };
  }
  return { pct: (100 * bytes / ms / 1e6) / r.copyGBs, bound: 'memory' };
}
