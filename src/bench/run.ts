// The benchmark engine: roofline probes, then every kernel case (set up → first launch, which also
// compiles → checked against the CPU reference → timed only if correct), then the end-to-end steps.
//
// Steps of one kernel case:
//   1. setup: seeded inputs uploaded; CPU copies kept for the reference.
//   2. launch once (recording which kernels it dispatches: the variant that actually ran); validate
//      its outputs.
//   3. the launchers asked the autotuner (gpu/tune.ts) which variant to run; a shape class new to
//      this adapter ran its heuristic default and is measured now (all candidates; the table is
//      cached), then the case is set up again and the winner validated. A case that fails is reported (FAIL in the table, the error in the JSON) and
//      never timed: a fast wrong kernel is not a result.
//   4. timeLaunch (timing.ts): one more warm launch sizes the repetitions, then `samples` samples.
// After all cases, a case faster than a probe raises the roofline (roofline.ts) and the percentages
// are recomputed against it.

import type { Gpu } from '../gpu/device.js';
import { VERSION } from '../version.js';
import type { TraceRecorder } from '../train/trace.js';
import { measureE2eAll, e2eId, type E2eCase } from './e2e.js';
import { measureRoofline, raiseRoofline, roofPercent } from './roofline.js';
import { kernelCases, suiteConfig, type SuiteConfig } from './suite.js';
import { timeLaunch, timingMethod, type TimeOptions } from './timing.js';
import { SCHEMA, type BenchCase, type BenchReport, type E2eResult, type KernelResult, type Roofline, type TimingMethod, type Validation } from './types.js';

export interface BenchOptions {
  quick?: boolean;
  /** Only cases whose id matches (kernel and end-to-end ids alike; the roofline probes always run). */
  filter?: RegExp;
  /** Run the end-to-end training steps (default true). */
  e2e?: boolean;
  /** Batch of the end-to-end steps. */
  batch?: number;
  /** 'gpu-timestamp' (default; falls back to queue-drain without timestamp-query) or 'queue-drain'. */
  timing?: TimingMethod;
  /** Replace the configuration's cases (tests, the peer harness). */
  cases?: BenchCase[];
  e2eCases?: E2eCase[];
  /** Storage precision of the matmul and conv cases ('f16' needs shader-f16; runs only those families, no end-to-end). */
  precision?: 'f32' | 'f16';
  /** Progress lines (stderr in the CLI). */
  log?: (line: string) => void;
  /** `bench --trace`: traces the end-to-end steps. */
  trace?: TraceRecorder;
}

const NOT_VALIDATED: Validation = { ok: false, err: Infinity, tol: 0, what: 'not validated' };

/** Runs one kernel case: validate, then time. Never throws: errors land in the result. */
export async function measureCase(gpu: Gpu, c: BenchCase, roof: Roofline | null, time: TimeOptions): Promise<KernelResult> {
  const result: KernelResult = {
    id: c.id, family: c.family, source: c.source, shape: c.shape, variant: '', kernels: [], flops: c.flops, bytes: c.bytes,
    validation: NOT_VALIDATED, ms: null, msMin: null, wallMs: null, samples: 0, reps: 0,
    gflops: null, gbs: null, roofPct: null, bound: c.flops > 0 ? 'compute' : 'memory',
  };
  let inst;
  try {
    inst = c.setup(gpu);
    result.variant = inst.variant;
    // Record what the launch dispatches (chained to any observer already installed), and which
    // autotuning classes it asks about.
    const keys = new Set<string>();
    const launch = async () => {
      const names = new Set<string>();
      const prev = gpu.onDispatch;
      gpu.onDispatch = (d) => { names.add(d.name); prev?.(d); };
      gpu.tuner.onChoose = (k) => keys.add(k);
      let outs;
      try { outs = inst!.run(); } finally { gpu.onDispatch = prev; gpu.tuner.onChoose = null; }
      result.kernels = [...names];
      try { result.validation = await inst!.validate(outs); } finally { for (const t of outs) t.dispose(); }
    };
    await launch();
    // Classes new to the tuner ran their heuristic default: measure them, then set the case up
    // afresh (a launch may update state in place) and validate the winner before timing it.
    if ((await gpu.tuner.settle()).length && result.validation.ok) {
      inst.dispose();
      inst = c.setup(gpu);
      await launch();
    }
    result.tuning = [...keys].flatMap((key) => {
      const e = gpu.tuner.entry(key);
      return e ? [{ key, pick: e.pick, default: e.candidates[0]!, ms: e.ms }] : [];
    });
    if (result.tuning.length) result.variant = result.tuning.map((t) => t.pick).join('+');
    if (!result.validation.ok) {
      result.error = `wrong result: ${result.validation.what}: error ${result.validation.err.toExponential(2)} > ${result.validation.tol}`;
      return result;
    }
    const ti = inst;
    const t = await timeLaunch(gpu, () => { for (const o of ti.run()) o.dispose(); }, time);
    Object.assign(result, { ms: t.ms, msMin: t.msMin, wallMs: t.wallMs, samples: t.samples, reps: t.reps });
    result.gflops = c.flops > 0 ? c.flops / t.ms / 1e6 : null;
    result.gbs = c.bytes / t.ms / 1e6;
    if (roof) {
      const r = roofPercent(roof, c.flops, c.bytes, t.ms);
      result.roofPct = r.pct;
      result.bound = r.bound;
    }
  } catch (e) {
    result.error = (e as Error).message.split('\n')[0];
  } finally {
    try { inst?.dispose(); } catch { /* already reported */ }
  }
  return result;
}

/** The whole suite. */
export async function runBench(gpu: Gpu, o: BenchOptions = {}): Promise<BenchReport> {
  const t0 = performance.now();
  const log = o.log ?? (() => {});
  const cfg: SuiteConfig = suiteConfig(o.quick ?? false, o.batch);
  const method = timingMethod(gpu, o.timing);
  const time: TimeOptions = { ...cfg.time, method };
  const keep = (id: string) => !o.filter || o.filter.test(id);

  log(`roofline probes (${cfg.roofline.matmulSize}³ matmul, ${(cfg.roofline.copyBytes / 2 ** 20).toFixed(0)} MiB copy)…`);
  const roofline = await measureRoofline(gpu, { ...cfg.roofline, time });
  log(`  compute ${roofline.peakGflops.toFixed(2)} GFLOP/s, memory ${roofline.copyGBs.toFixed(2)} GB/s`);

  const precision = o.precision ?? 'f32';
  if (precision === 'f16') {
    if (!gpu.features.has('shader-f16')) throw new Error(`--precision f16 needs the adapter's shader-f16 feature, which ${gpu.adapterName} lacks`);
    log('precision f16: matmul and conv2d cases with f16 storage (f32 arithmetic); the other families and training are f32-only');
  }
  const cases = (o.cases ?? kernelCases(cfg, precision)).filter((c) => keep(c.id));
  const kernels: KernelResult[] = [];
  for (const [i, c] of cases.entries()) {
    const r = await measureCase(gpu, c, roofline, time);
    kernels.push(r);
    const what = r.ms !== null ? `${r.ms.toFixed(3)} ms${r.gflops !== null ? `, ${r.gflops.toFixed(2)} GFLOP/s` : `, ${r.gbs!.toFixed(2)} GB/s`}` : `NOT TIMED: ${r.error}`;
    log(`[${i + 1}/${cases.length}] ${c.id}: ${what}`);
  }

  // A case faster than a probe raises the ceiling (roofline.ts); percentages are then recomputed.
  const raised = raiseRoofline(roofline, kernels);
  if (raised.peakGflops !== roofline.peakGflops || raised.copyGBs !== roofline.copyGBs) {
    log(`roofline raised by the cases: compute ${raised.peakGflops.toFixed(2)} GFLOP/s, memory ${raised.copyGBs.toFixed(2)} GB/s`);
    for (const k of kernels) {
      if (k.ms === null) continue;
      const r = roofPercent(raised, k.flops, k.bytes, k.ms);
      k.roofPct = r.pct; k.bound = r.bound;
    }
  }

  let e2e: E2eResult[] = [];
  if (o.e2e !== false && precision === 'f32') {
    const ecs = (o.e2eCases ?? cfg.e2e).filter((c) => keep(e2eId(c)));
    e2e = await measureE2eAll(gpu, ecs, { steps: cfg.e2eSteps, warmup: cfg.e2eWarmup, trace: o.trace }, (r) => {
      log(`${r.id}: ${r.error ? `error: ${r.error}` : `${r.msPerStep!.toFixed(0)} ms/step, ${r.imgPerSec!.toFixed(1)} img/s, peak ${r.peakMiB!.toFixed(0)} MiB`}`);
    });
  }

  return {
    schema: SCHEMA, wgtrainVersion: VERSION, date: new Date().toISOString(),
    adapter: gpu.adapterName, features: [...gpu.features].sort(), quick: o.quick ?? false, timing: method, tuning: gpu.tuner.mode, precision,
    roofline: raised, kernels, e2e, seconds: (performance.now() - t0) / 1000,
  };
}
