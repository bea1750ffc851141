// GFLOP/s of the convolution kernels on a VGG16-like layer: 3×3 conv 64→64, 56×56, batch 4, pad 1.
// FLOPs = 2·N·K·P·Q·C·R·S per pass (forward, input gradient and weight gradient cost the same).
//
//   npx esbuild bench/conv-gflops.ts --bundle --platform=node --format=esm --packages=external \
//     --outfile=node_modules/.cache/conv.mjs && node node_modules/.cache/conv.mjs [--tune] [--runs N]
//     [--precision f32|f16] [--only REGEX]
//
// (The bundle must sit under the repository so that Node finds the `webgpu` package.)
// Timing: median (and min) over runs after a warm-up of the wall time of one dispatch sequence,
// `await gpu.sync()` on both sides. The CPU column is the process CPU time of the same interval: on
// the software adapter the "GPU" is this process's threads, so GFLOP per CPU-second is a measure of the
// kernel that other processes competing for the cores disturb less than wall time.
// --tune sweeps the v2 tile shapes (interleaved rounds, best of each) to pick TILE_FWD/TILE_DX/TILE_DW.
// --precision f16 runs everything on f16 tensors (f16 storage, f32 arithmetic; needs shader-f16).
// --only REGEX keeps the rows (or --tune candidates) whose name matches.

import { getGpu, Tensor, type Gpu } from '../src/gpu/index.js';
import type { DType } from '../src/gpu/tensor.js';
import {
  conv2d, conv2dBackwardInput, conv2dBackwardWeight, convFlops, convGeometry, type Conv2dOptions, type TileConfig,
} from '../src/kernels/conv2d.js';
import { Rng } from '../src/util/rng.js';

const args = process.argv.slice(2);
const flag = (name: string) => args.includes(name);
const num = (name: string, dflt: number) => { const i = args.indexOf(name); return i >= 0 ? Number(args[i + 1]) : dflt; };
const str = (name: string) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : undefined; };
const only = (n: string) => { const re = str('--only'); return re === undefined || new RegExp(re).test(n); };
const precision = (str('--precision') ?? 'f32') as DType;
if (precision !== 'f32' && precision !== 'f16') throw new Error(`--precision must be f32 or f16, got ${String(precision)}`);

const xShape = [4, 64, 56, 56], wShape = [64, 64, 3, 3];
const base: Conv2dOptions = { padding: 1 };
const geo = convGeometry(xShape, wShape, base);
const flops = convFlops(geo);

interface Stat { wall: number; wallMin: number; cpu: number }

async function time(gpu: Gpu, f: () => Tensor, runs: number): Promise<Stat> {
  f().dispose(); await gpu.sync();                       // warm-up: pipeline compile, pool
  const walls: number[] = [], cpus: number[] = [];
  for (let i = 0; i < runs; i++) {
    await gpu.sync();
    const c0 = process.cpuUsage(), t0 = performance.now();
    const y = f();
    await gpu.sync();
    walls.push(performance.now() - t0);
    const c = process.cpuUsage(c0); cpus.push((c.user + c.system) / 1000);
    y.dispose();
  }
  const med = (a: number[]) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)]!;
  return { wall: med(walls), wallMin: Math.min(...walls), cpu: med(cpus) };
}

const gf = (ms: number) => (flops / ms / 1e6).toFixed(2);

async function main() {
  const gpu = await getGpu();
  const rng = new Rng(1);
  const x = Tensor.from(gpu, rng.array(geo.N * geo.C * geo.H * geo.W), xShape, precision);
  const w = Tensor.from(gpu, rng.array(wShape.reduce((a, b) => a * b, 1), -0.1, 0.1), wShape, precision);
  const b = Tensor.from(gpu, rng.array(geo.K), [geo.K], precision);
  const dY = Tensor.from(gpu, rng.array(geo.N * geo.K * geo.P * geo.Q), [geo.N, geo.K, geo.P, geo.Q], precision);
  console.log(`adapter: ${gpu.adapterName}; subgroups: ${gpu.hasSubgroups}; storage: ${precision}`);
  console.log(`conv 3×3 ${geo.C}→${geo.K}, ${geo.H}×${geo.W}, batch ${geo.N}, pad 1: ${(flops / 1e9).toFixed(3)} GFLOP per pass`);

  if (flag('--tune')) return tune(gpu, x, w, dY);

  const runs = num('--runs', 5);
  const rows: [string, () => Tensor][] = [];
  for (const version of [2, 1] as const) {
    const o = { ...base, version };
    rows.push([`forward         v${version}`, () => conv2d(x, w, b, o)]);
    rows.push([`backward-input  v${version}`, () => conv2dBackwardInput(dY, w, xShape, o)]);
    rows.push([`backward-weight v${version}`, () => conv2dBackwardWeight(x, dY, wShape, o)]);
  }
  if (gpu.hasSubgroups) {
    for (const share of ['none'] as const) {
      const o: Conv2dOptions = { ...base, share };
      rows.push([`forward         v2 ${share}`, () => conv2d(x, w, b, o)]);
      rows.push([`backward-input  v2 ${share}`, () => conv2dBackwardInput(dY, w, xShape, o)]);
      rows.push([`backward-weight v2 ${share}`, () => conv2dBackwardWeight(x, dY, wShape, o)]);
    }
  }
  console.log('pass                             median ms   GFLOP/s   (best ms  GFLOP/s)   GFLOP/CPU-s');
  for (const [name, f] of rows.filter(([n]) => only(n))) {
    const s = await time(gpu, f, name.includes('v1') ? Math.min(runs, 3) : runs);
    console.log(`${name.padEnd(32)} ${s.wall.toFixed(1).padStart(9)} ${gf(s.wall).padStart(9)}   (${s.wallMin.toFixed(1).padStart(7)} ${gf(s.wallMin).padStart(8)})   ${gf(s.cpu).padStart(8)}`);
  }
  gpu.destroy();
}

/** Interleaved rounds over tile shapes; prints the best wall and CPU time of each. */
async function tune(gpu: Gpu, x: Tensor, w: Tensor, dY: Tensor) {
  const tiles: TileConfig[] = [{ tm: 4, tk: 4 }, { tm: 8, tk: 4 }, { tm: 16, tk: 4 }, { tm: 4, tk: 8 }, { tm: 8, tk: 8 }];
  const dwTiles = [{ ta: 4, tb: 4 }, { ta: 8, tb: 4 }, { ta: 8, tb: 2 }, { ta: 16, tb: 2 }, { ta: 4, tb: 8 }];
  const shares = ['shuffle'] as const;
  const cands: [string, () => Tensor][] = shares.flatMap((share) => {
    const o: Conv2dOptions = { ...base, share };
    return [
      ...tiles.map((t): [string, () => Tensor] => [`fwd ${t.tm}x${t.tk} ${share}`, () => conv2d(x, w, undefined, o, t)]),
      ...tiles.map((t): [string, () => Tensor] => [`dx  ${t.tm}x${t.tk} ${share}`, () => conv2dBackwardInput(dY, w, xShape, o, t)]),
      ...dwTiles.map((t): [string, () => Tensor] => [`dw  ${t.ta}x${t.tb} ${share}`, () => conv2dBackwardWeight(x, dY, wShape, o, t)]),
    ];
  }).filter(([n]) => only(n));
  for (const [, f] of cands) { f().dispose(); await gpu.sync(); }
  const best = new Map<string, { wall: number; cpu: number }>();
  for (let round = 0; round < num('--rounds', 5); round++) {
    for (const [name, f] of cands) {
      await gpu.sync();
      const c0 = process.cpuUsage(), t0 = performance.now();
      f().dispose();
      await gpu.sync();
      const wall = performance.now() - t0, c = process.cpuUsage(c0), cpu = (c.user + c.system) / 1000;
      const p = best.get(name);
      best.set(name, { wall: Math.min(p?.wall ?? Infinity, wall), cpu: Math.min(p?.cpu ?? Infinity, cpu) });
    }
  }
  for (const [name] of cands) {
    const s = best.get(name)!;
    console.log(`${name.padEnd(20)} best ${s.wall.toFixed(1).padStart(7)} ms ${gf(s.wall).padStart(7)} GFLOP/s   cpu ${s.cpu.toFixed(1).padStart(7)} ms ${gf(s.cpu).padStart(7)} GFLOP/CPU-s`);
  }
  gpu.destroy();
}

await main();
