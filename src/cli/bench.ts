// `wgtrain bench`: the kernel and end-to-end benchmark suite (src/bench/).
//
//   wgtrain bench [--quick] [--filter RE] [--json FILE|-] [--html FILE] [--compare OLD.json]
//                 [--batch N] [--no-e2e] [--timing gpu-timestamp|queue-drain] [--autotune auto|cached|off]
//                 [--precision f32|f16]
//
// The table goes to stdout (to stderr when the JSON does), progress to stderr. A case whose kernel
// gives a wrong result fails the command (exit 2) after everything has been written.

import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { writeFileAtomic } from '../data/node.js';
import { runBench } from '../bench/run.js';
import { TraceRecorder } from '../train/trace.js';
import { compareReports, formatComparison, formatReport, parseReport, toJson } from '../bench/report.js';
import { reportHtml } from '../bench/html.js';
import type { BenchReport, TimingMethod } from '../bench/types.js';
import { UserError } from './errors.js';
import { openGpu } from './session.js';

export interface BenchCliOptions {
  quick?: boolean;
  filter?: string;
  json?: string;
  html?: string;
  compare?: string;
  batch?: string;
  e2e?: boolean;
  timing?: string;
  trace?: string;
  autotune?: string;
  precision?: string;
}

export function registerBench(program: Command) {
  program.command('bench')
    .description('kernel and end-to-end benchmark suite (validated against CPU references, with a measured roofline)')
    .option('--quick', 'small shapes and one small end-to-end model (a few minutes on a software adapter)')
    .option('--filter <re>', 'only cases whose id matches this regular expression (e.g. "matmul|conv2d.fwd")')
    .option('--json <file>', 'write the report as JSON ("-" for stdout)')
    .option('--html <file>', 'write the report as an HTML page with SVG charts')
    .option('--compare <file>', 'print speedups against an earlier --json report')
    .option('--batch <n>', 'batch size of the end-to-end training steps')
    .option('--no-e2e', 'skip the end-to-end training steps')
    .option('--trace <file>', 'write a Chrome trace of the end-to-end training steps (open in Perfetto)')
    .option('--timing <method>', 'gpu-timestamp (default where the adapter has it) or queue-drain')
    .option('--precision <f32|f16>', 'storage of the matmul and conv cases: f16 (shader-f16; f32 arithmetic) runs only those families (default f32)')
    .option('--autotune <auto|cached|off>', 'measure each conv/matmul shape class\'s kernel variants and run the winner (auto, default; cached per adapter), only use cached winners, or heuristics only')
    .action(async (opts: BenchCliOptions) => { await benchCommand(opts); });
}

export async function benchCommand(opts: BenchCliOptions): Promise<BenchReport> {
  // Check everything the user gave before spending minutes on the suite.
  let filter: RegExp | undefined;
  if (opts.filter !== undefined) {
    try { filter = new RegExp(opts.filter); } catch (e) { throw new UserError(`--filter: ${(e as Error).message}`); }
  }
  let batch: number | undefined;
  if (opts.batch !== undefined) {
    batch = Number(opts.batch);
    if (!Number.isInteger(batch) || batch < 1) throw new UserError(`--batch must be a positive integer, got '${opts.batch}'`);
  }
  const timing = opts.timing as TimingMethod | undefined;
  if (timing !== undefined && timing !== 'gpu-timestamp' && timing !== 'queue-drain') {
    throw new UserError(`--timing must be gpu-timestamp or queue-drain, got '${opts.timing}'`);
  }
  const precision = opts.precision ?? 'f32';
  if (precision !== 'f32' && precision !== 'f16') throw new UserError(`--precision must be f32 or f16, got '${opts.precision}'`);
  let before: BenchReport | null = null;
  if (opts.compare !== undefined) {
    let text: string;
    try { text = readFileSync(opts.compare, 'utf8'); } catch (e) { throw new UserError(`--compare: cannot read ${opts.compare}: ${(e as Error).message}`); }
    try { before = parseReport(text, opts.compare); } catch (e) { throw new UserError(`--compare: ${(e as Error).message}`); }
  }

  const gpu = await openGpu(opts);
  if (precision === 'f16' && !gpu.features.has('shader-f16')) throw new UserError(`--precision f16 needs the adapter's shader-f16 feature, which ${gpu.adapterName} lacks; use f32`);
  const trace = opts.trace ? new TraceRecorder(gpu, { stepsPerStage: 2 }) : undefined;
  const report = await runBench(gpu, {
    quick: opts.quick ?? false, filter, batch, timing, e2e: opts.e2e !== false, trace, precision,
    log: (line) => process.stderr.write(`${line}\n`),
  });
  if (trace && opts.trace) {
    await trace.finish();
    await writeFileAtomic(opts.trace, JSON.stringify(trace.toChromeTrace({ command: 'bench' })));
    process.stderr.write(`trace: ${opts.trace} (${trace.dispatches} dispatches)\n`);
  }

  const text = formatReport(report) + (before ? `\n\n${formatComparison(compareReports(report, before), opts.compare!)}` : '');
  const jsonToStdout = opts.json === '-';
  (jsonToStdout ? process.stderr : process.stdout).write(`${text}\n`);
  if (opts.json !== undefined) {
    if (jsonToStdout) process.stdout.write(toJson(report));
    else await writeFileAtomic(opts.json, toJson(report));
  }
  if (opts.html !== undefined) await writeFileAtomic(opts.html, reportHtml(report, text));

  const bad = report.kernels.filter((k) => k.ms === null).map((k) => `${k.id} (${k.error ?? 'not timed'})`);
  const badE2e = report.e2e.filter((e) => e.error).map((e) => `${e.id} (${e.error})`);
  if (bad.length || badE2e.length) {
    throw new Error(`${bad.length + badE2e.length} benchmark case(s) failed: ${[...bad, ...badE2e].join('; ')}`);
  }
  return report;
}
