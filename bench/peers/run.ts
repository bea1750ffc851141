// wgtrain against TensorFlow.js (WebGPU backend) and onnxruntime-web (WebGPU EP) on the same Dawn
// adapter, in the same process, on the same inputs:
//
//   matmul S³ (S = 1024)                      wgtrain, tfjs, ORT
//   VGG16 conv3×3 layers: forward             wgtrain, tfjs, ORT
//                         backward-input      wgtrain, tfjs          (ORT runs inference only)
//                         backward-weight     wgtrain, tfjs
//   small VGG-style CNN training step         wgtrain (Learner), tfjs (optimizer.minimize)
//
// Every output is checked before it is timed: wgtrain's against the float64 CPU reference (the bench
// case's own check), each peer's against wgtrain's checked output (so all three computed the same
// thing). One clock for all: queue-drain wall time, samples interleaved across the contenders
// (timer.ts). Ratios are wgtrain's speed over the peer's (> 1: wgtrain is faster).
//
//   npx esbuild bench/peers/run.ts --bundle --platform=node --format=esm --packages=external \
//     --outfile=node_modules/.bench/peers.mjs && node node_modules/.bench/peers.mjs \
//     [--size 56] [--batch 4] [--matmul 1024] [--train-size 32] [--train-batch 32] [--samples 3]
//     [--peers tfjs,ort] [--only RE] [--no-train] [--json FILE]
//
// (The bundle must sit inside the repository so that Node finds the packages.)

import { writeFileSync } from 'node:fs';
import { installWebGpu } from './env.js';
import { getGpu, type Gpu } from '../../src/gpu/index.js';
import { fileTuneStore } from '../../src/data/node.js';
import { convCase, matmulCase } from '../../src/bench/kernels.js';
import { vgg16Convs } from '../../src/bench/shapes.js';
import { measureE2e } from '../../src/bench/e2e.js';
import { geomean, table } from '../../src/bench/report.js';
import { median } from '../../src/bench/timing.js';
import { relErr } from '../../src/bench/validate.js';
import type { BenchCase } from '../../src/bench/types.js';
import { convGeometry } from '../../src/kernels/conv2d.js';
import { timeInterleaved, type Contender, type WallOptions } from './timer.js';
import type { Peer, Work } from './workloads.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1]! : dflt; };
const num = (name: string, dflt: number) => Number(opt(name, String(dflt)));
const size = num('size', 56), batch = num('batch', 4), mm = num('matmul', 1024);
const trainSize = num('train-size', 32), trainBatch = num('train-batch', 32);
const wall: WallOptions = { samples: num('samples', 3), targetMs: 50, maxReps: 16 };
const only = args.includes('--only') ? new RegExp(opt('only', '')) : null;
const peerNames = opt('peers', 'tfjs,ort').split(',').filter(Boolean);
/** A peer output may differ from wgtrain's checked one by this much (relative to the output's scale). */
const PEER_TOL = 1e-3;

interface Cell { ms: number | null; msMin?: number; note?: string }
interface Row { id: string; family: string; shape: string; flops: number; wgtrain: Cell; peers: Record<string, Cell> }

const log = (s: string) => process.stderr.write(`${s}\n`);

function workOf(c: BenchCase, inputs: Readonly<Record<string, Float32Array>>): Work {
  if (c.family === 'matmul') {
    const [M, K, N] = [mm, mm, mm];
    return { kind: 'matmul', id: c.id, M, N, K, A: inputs.A!, B: inputs.B! };
  }
  const l = layers.find((x) => c.id.endsWith(`${x.model}.${x.name}`))!;
  const g = convGeometry([l.N, l.C, l.H, l.W], [l.K, l.C, l.R, l.R], { stride: l.stride, padding: l.pad });
  const pass = c.family === 'conv2d.fwd' ? 'fwd' : c.family === 'conv2d.dx' ? 'dx' : 'dw';
  return { kind: 'conv', id: c.id, pass, layer: l, x: inputs.x!, w: inputs.w!, b: inputs.b!, dY: inputs.dY!, P: g.P, Q: g.Q };
}

const layers = vgg16Convs(size, batch);

async function runRow(gpu: Gpu, c: BenchCase, peers: Peer[]): Promise<Row> {
  const row: Row = { id: c.id, family: c.family, shape: c.shape, flops: c.flops, wgtrain: { ms: null }, peers: {} };
  let inst = c.setup(gpu);
  const cleanup: (() => void)[] = [() => inst.dispose()];
  try {
    let outs = inst.run();
    // A shape new to the autotuner ran its heuristic default: measure the variants (cached per
    // adapter), then check and time the winner — as `wgtrain bench` and training do.
    if ((await gpu.tuner.settle()).length) {
      outs.forEach((t) => t.dispose());
      inst.dispose();
      inst = c.setup(gpu);
      outs = inst.run();
    }
    const v = await inst.validate(outs);
    const ref = await outs[0]!.read();
    outs.forEach((t) => t.dispose());
    if (!v.ok) { row.wgtrain.note = `wrong: ${v.what} err ${v.err.toExponential(1)}`; return row; }
    const contenders: (Contender & { cell: Cell })[] = [
      { name: 'wgtrain', cell: row.wgtrain, launch: () => { for (const t of inst.run()) t.dispose(); }, sync: () => gpu.sync() },
    ];
    const work = workOf(c, inst.inputs);
    for (const p of peers) {
      const cell: Cell = (row.peers[p.name] = { ms: null });
      try {
        const prep = await p.prepare(work);
        if (!prep) { cell.note = 'n/a'; continue; }
        cleanup.push(() => prep.dispose());
        const out = await prep.output(); // also the warm-up (shader compiles)
        const err = relErr(out, ref);
        if (!(err <= PEER_TOL)) { cell.note = `differs from wgtrain: err ${err.toExponential(1)}`; continue; }
        contenders.push({ name: p.name, cell, launch: prep.launch, sync: prep.sync });
      } catch (e) {
        cell.note = `error: ${(e as Error).message.split('\n')[0]}`;
      }
    }
    const times = await timeInterleaved(contenders, wall);
    contenders.forEach((k, i) => { k.cell.ms = times[i]!.ms; k.cell.msMin = times[i]!.msMin; });
  } finally {
    for (const f of cleanup) f();
  }
  return row;
}

async function main() {
  installWebGpu();
  const gpu = await getGpu();
  if (gpu.tuner.mode !== 'off') await gpu.tuner.attach(fileTuneStore());
  log(`adapter: ${gpu.adapterName}; autotuning ${gpu.tuner.mode}`);
  const peers: Peer[] = [];
  for (const name of peerNames) {
    try {
      if (name === 'tfjs') peers.push(await (await import('./tfjs.js')).tfjsPeer());
      else if (name === 'ort') peers.push(await (await import('./ort.js')).ortPeer());
      else throw new Error(`unknown peer '${name}' (tfjs, ort)`);
    } catch (e) {
      log(`peer ${name} unavailable: ${(e as Error).message}`);
    }
  }
  const cases: BenchCase[] = [
    matmulCase(`${mm}`, `square ${mm}³`, { M: mm, N: mm, K: mm }),
    ...(['fwd', 'dx', 'dw'] as const).flatMap((pass) => layers.map((l) => convCase(l, pass))),
  ].filter((c) => !only || only.test(c.id));
  const rows: Row[] = [];
  for (const c of cases) {
    const r = await runRow(gpu, c, peers);
    rows.push(r);
    log(`${c.id}: wgtrain ${fmt(r.wgtrain)}  ${peers.map((p) => `${p.name} ${fmt(r.peers[p.name])}`).join('  ')}`);
  }

  let train: { wgtrain: number | null; tfjs: number | null; note?: string } | null = null;
  if (!args.includes('--no-train')) {
    // Two alternating rounds (wgtrain, tfjs, wgtrain, tfjs) of 5 steps after 2 warm-up steps each; the
    // better round of each counts (other processes only ever slow a round down).
    log(`training step: small CNN ${trainSize}×${trainSize}×3, batch ${trainBatch}…`);
    const tp = peers.find((p) => p.trainStep);
    let w: number | null = null, t: number | null = null, note: string | undefined;
    const better = (a: number | null, b: number | null | undefined) => (b === null || b === undefined ? a : a === null ? b : Math.min(a, b));
    for (let round = 0; round < 2; round++) {
      const r = await measureE2e(gpu, { model: 'smallcnn', size: trainSize, batch: trainBatch, frozen: false, classes: 10 }, { steps: 5, warmup: 2 });
      if (r.error) note = `wgtrain: ${r.error}`;
      w = better(w, r.msPerStep);
      try { if (tp) t = better(t, (await tp.trainStep!(trainSize, trainBatch, 5, 2))?.msPerStep); } catch (e) { note = `${tp!.name}: ${(e as Error).message}`; }
      log(`  round ${round + 1}: wgtrain ${r.msPerStep?.toFixed(0)} ms/step, ${tp?.name ?? 'no peer'} ${t?.toFixed(0) ?? note} ms/step`);
    }
    train = { wgtrain: w, tfjs: t, ...(note ? { note } : {}) };
  }

  const names = peers.map((p) => p.name);
  const speed = (r: Row, n: string) => (r.wgtrain.ms && r.peers[n]?.ms ? r.peers[n]!.ms! / r.wgtrain.ms : null);
  const best = (r: Row) => {
    const ms = names.map((n) => r.peers[n]?.ms ?? null).filter((v): v is number => v !== null);
    return ms.length && r.wgtrain.ms ? Math.min(...ms) / r.wgtrain.ms : null;
  };
  const text = table(
    ['workload', 'shape', 'wgtrain ms', 'GFLOP/s', ...names.flatMap((n) => [`${n} ms`, 'GFLOP/s']), ...names.map((n) => `×${n}`), '× best peer'],
    rows.map((r) => [
      r.id, r.shape, ms(r.wgtrain), gf(r, r.wgtrain),
      ...names.flatMap((n) => [ms(r.peers[n]), gf(r, r.peers[n])]),
      ...names.map((n) => x(speed(r, n))), x(best(r)),
    ]),
  );
  const fam = (f: string, by: (r: Row) => number | null) => {
    const v = rows.filter((r) => r.family === f).map(by).filter((s): s is number => s !== null);
    return v.length ? { median: median(v), geomean: geomean(v)!, n: v.length } : null;
  };
  const tfjs = names.find((n) => n.startsWith('tfjs'));
  const summary = {
    matmul: rows.find((r) => r.family === 'matmul') ? best(rows.find((r) => r.family === 'matmul')!) : null,
    convFwdVsBestPeer: fam('conv2d.fwd', best),
    convDxVsTfjs: tfjs ? fam('conv2d.dx', (r) => speed(r, tfjs)) : null,
    convDwVsTfjs: tfjs ? fam('conv2d.dw', (r) => speed(r, tfjs)) : null,
    trainStepVsTfjs: train?.wgtrain && train.tfjs ? train.tfjs / train.wgtrain : null,
  };
  const lines = [
    `wgtrain vs ${names.join(', ')} on ${gpu.adapterName}`,
    `VGG16 conv layers at ${size}×${size}, batch ${batch}; matmul ${mm}³; queue-drain wall time, median of ${wall.samples}`,
    '', text, '',
    ...(train ? [`training step, small CNN ${trainSize}×${trainSize}×3 batch ${trainBatch}: wgtrain ${train.wgtrain?.toFixed(0) ?? '—'} ms, tfjs ${train.tfjs?.toFixed(0) ?? '—'} ms${train.note ? ` (${train.note})` : ''}`, ''] : []),
    `wgtrain speedup (× = peer ms / wgtrain ms):`,
    `  matmul ${mm}³ vs the faster peer:          ${x(summary.matmul)}`,
    `  VGG conv forward vs the faster peer:      median ${x(summary.convFwdVsBestPeer?.median ?? null)} over ${summary.convFwdVsBestPeer?.n ?? 0} shapes`,
    `  VGG conv backward-input vs tfjs:          median ${x(summary.convDxVsTfjs?.median ?? null)}`,
    `  VGG conv backward-weight vs tfjs:         median ${x(summary.convDwVsTfjs?.median ?? null)}`,
    `  small-CNN training step vs tfjs:          ${x(summary.trainStepVsTfjs)}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  if (args.includes('--json')) {
    writeFileSync(opt('json', 'peers.json'), `${JSON.stringify({ adapter: gpu.adapterName, date: new Date().toISOString(), args, rows, train, summary }, null, 1)}\n`);
  }
  for (const p of peers) p.close();
  gpu.destroy();
  process.exit(0);
}

function fmt(c: { ms: number | null; note?: string } | undefined) { return c?.ms !== null && c?.ms !== undefined ? `${c.ms.toFixed(2)} ms` : c?.note ?? '—'; }
function ms(c: { ms: number | null; note?: string } | undefined) { return c?.ms !== null && c?.ms !== undefined ? c.ms.toFixed(2) : c?.note === 'n/a' ? 'n/a' : '—'; }
function gf(r: Row, c: { ms: number | null } | undefined) { return c?.ms ? (r.flops / c.ms / 1e6).toFixed(2) : '—'; }
function x(v: number | null) { return v === null ? '—' : `${v.toFixed(2)}×`; }

main().catch((e) => { console.error(e); process.exit(2); });
