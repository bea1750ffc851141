// GFLOP/s of each matmul version at M = N = K = 1024 (or --size S), one line per version.
// Time = encode + submit + `await gpu.sync()`, median of --runs runs after one warm-up run
// (the warm-up also compiles the pipeline). v1 is slow on software adapters, so it gets fewer runs.
//
//   npx esbuild bench/matmul-gflops.ts --bundle --platform=node --format=esm --packages=external \
//     --outfile=node_modules/.bench/mm.mjs && node node_modules/.bench/mm.mjs [--size 1024] [--runs 5]
//
// NOTE: the bundle must sit inside the repository so that Node resolves the `webgpu` package.

import { getGpu, Tensor } from '../src/gpu/index.js';
import { matmul, type MatmulOptions, type MatmulVersion } from '../src/kernels/matmul.js';
import { Rng } from '../src/util/rng.js';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

const size = arg('size', 1024);
const runs = arg('runs', 5);
const gpu = await getGpu();
const rng = new Rng(1);
const a = Tensor.from(gpu, rng.array(size * size), [size, size]);
const b = Tensor.from(gpu, rng.array(size * size), [size, size]);
const c = Tensor.empty(gpu, [size, size]);
const flop = 2 * size ** 3;

async function time(opts: MatmulOptions): Promise<number> {
  const t0 = performance.now();
  matmul(a, b, { ...opts, out: c });
  await gpu.sync();
  return performance.now() - t0;
}

console.log(`matmul ${size}x${size}x${size} on ${gpu.adapterName}${gpu.hasSubgroups ? ' (subgroups)' : ''}`);
const cases: [string, MatmulOptions][] = [
  ['v1', { version: 'v1' as MatmulVersion }],
  ['v2', { version: 'v2' as MatmulVersion }],
  ['v2 transB', { version: 'v2' as MatmulVersion, transB: true }],
  ['v2 transA', { version: 'v2' as MatmulVersion, transA: true }],
  ['v2 no-sg', { version: 'v2' as MatmulVersion, subgroups: false }],
];
for (const [name, opts] of cases) {
  await time(opts);
  const n = opts.version === 'v1' ? Math.min(runs, 3) : runs;
  const ms: number[] = [];
  for (let i = 0; i < n; i++) ms.push(await time(opts));
  ms.sort((p, q) => p - q);
  const med = ms[Math.floor(ms.length / 2)]!;
  console.log(`${name.padEnd(9)} ${(flop / med / 1e6).toFixed(2).padStart(7)} GFLOP/s  (median ${med.toFixed(1)} ms of ${n})`);
}
a.dispose(); b.dispose(); c.dispose();
gpu.destroy();
