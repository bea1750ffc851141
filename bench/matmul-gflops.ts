// GFLOP/s of matmul variants on one product shape, one line per variant.
// Time = encode + submit + `await gpu.sync()`, median of --runs runs after one warm-up run (the
// warm-up also compiles the pipeline; its time is printed as "first"). v1 is slow on software
// adapters, so it gets at most 3 runs.
//
//   npx esbuild bench/matmul-gflops.ts --bundle --platform=node --format=esm --packages=external \
//     --outfile=node_modules/.bench/mm.mjs && node node_modules/.bench/mm.mjs [options]
//
// Options:
//   --size S               M = N = K = S (default 1024)
//   --shape M,N,K          any product (e.g. a dense layer: --shape 16,1000,4096 --trans nt)
//   --trans nn|nt|tn|tt    transposes of A and B (default nn)
//   --version v1,v2,v3     versions to run (default all three)
//   --tiles default|all    default: each version's default tile for M; all: every V2_TILES and
//                          V3_TILES entry
//   --tile JSON            one explicit tile, e.g. '{"TM":8,"TN":8,"WM":16,"WN":16,"KB":8}' (v3) or
//                          '{"TM":16,"TN":4,"KB":4,"GM":1,"GN":8}' (v2); only versions it fits
//   --precision f32|f16    storage precision of A, B, C (f16 needs shader-f16; default f32)
//   --no-sg                also run v2 without subgroups
//   --runs R               timed runs per variant (default 5)
//
// NOTE: the bundle must sit inside the repository so that Node resolves the `webgpu` package.

import { getGpu, Tensor } from '../src/gpu/index.js';
import type { DType } from '../src/gpu/tensor.js';
import { matmul, pickTile, pickV3Tile, V2_TILES, V3_TILES, type MatmulOptions, type MatmulVersion, type Tile, type V3Tile } from '../src/kernels/matmul.js';
import { Rng } from '../src/util/rng.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const flag = (name: string) => process.argv.includes(`--${name}`);

const size = Number(arg('size') ?? 1024);
const [M, N, K] = (arg('shape') ?? `${size},${size},${size}`).split(',').map(Number) as [number, number, number];
const trans = arg('trans') ?? 'nn';
const transA = trans[0] === 't', transB = trans[1] === 't';
const versions = (arg('version') ?? 'v1,v2,v3').split(',') as MatmulVersion[];
const precision = (arg('precision') ?? 'f32') as DType;
const runs = Number(arg('runs') ?? 5);
const explicit = arg('tile') ? (JSON.parse(arg('tile')!) as Tile | V3Tile) : undefined;

const gpu = await getGpu();
const rng = new Rng(1);
const a = Tensor.from(gpu, rng.array(M * K), transA ? [K, M] : [M, K], precision);
const b = Tensor.from(gpu, rng.array(K * N), transB ? [N, K] : [K, N], precision);
const c = Tensor.empty(gpu, [M, N], 'C', precision);
const flop = 2 * M * N * K;

async function time(opts: MatmulOptions): Promise<number> {
  const t0 = performance.now();
  matmul(a, b, { ...opts, transA, transB, out: c });
  await gpu.sync();
  return performance.now() - t0;
}

const tileName = (t: Tile | V3Tile) => ('WM' in t ? `${t.WM * t.TM}x${t.WN * t.TN} (${t.TM}x${t.TN}, k${t.KB})` : `${t.TM}x${t.TN} k${t.KB} ${t.GM}x${t.GN}`);

const cases: [string, MatmulOptions][] = [];
for (const version of versions) {
  if (version === 'v1') { cases.push(['v1', { version }]); continue; }
  let tiles: (Tile | V3Tile)[];
  if (explicit) tiles = ('WM' in explicit) === (version === 'v3') ? [explicit] : [];
  else if (arg('tiles') === 'all') tiles = version === 'v3' ? [...V3_TILES] : [...V2_TILES];
  else tiles = [version === 'v3' ? pickV3Tile(M) : pickTile(M)];
  for (const tile of tiles) {
    cases.push([`${version} ${tileName(tile)}`, { version, tile }]);
    if (version === 'v2' && flag('no-sg')) cases.push([`${version} ${tileName(tile)} no-sg`, { version, tile, subgroups: false }]);
  }
}

console.log(`matmul ${M}x${N}x${K} ${trans} ${precision} on ${gpu.adapterName}${gpu.hasSubgroups ? ' (subgroups)' : ''}`);
for (const [name, opts] of cases) {
  const first = await time(opts);
  const n = opts.version === 'v1' ? Math.min(runs, 3) : runs;
  const ms: number[] = [];
  for (let i = 0; i < n; i++) ms.push(await time(opts));
  ms.sort((p, q) => p - q);
  const med = ms[Math.floor(ms.length / 2)]!;
  console.log(`${name.padEnd(32)} ${(flop / med / 1e6).toFixed(2).padStart(7)} GFLOP/s  (median ${med.toFixed(1)} ms of ${n}, min ${ms[0]!.toFixed(1)}; first ${first.toFixed(0)} ms)`);
}
a.dispose(); b.dispose(); c.dispose();
gpu.destroy();
