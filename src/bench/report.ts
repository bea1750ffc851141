// The report as text: the table printed to the terminal, the JSON file, and `--compare` against an
// earlier JSON (matched by case id).
//
//   speedup = old ms / new ms        (> 1: faster now; for e2e the same as new img/s / old img/s)

import { SCHEMA, type BenchReport, type E2eResult, type KernelResult } from './types.js';

// ---- JSON ------------------------------------------------------------------------------------

export function toJson(r: BenchReport): string {
  return `${JSON.stringify(r, null, 1)}\n`;
}

/** Parses a report written by `toJson`; says what is wrong with a file that is not one. */
export function parseReport(text: string, where = 'report'): BenchReport {
  let v: unknown;
  try { v = JSON.parse(text); } catch (e) { throw new Error(`${where} is not JSON: ${(e as Error).message}`); }
  const o = v as Partial<BenchReport> | null;
  if (!o || typeof o !== 'object') throw new Error(`${where} is not a wgtrain bench report`);
  if (o.schema !== SCHEMA) throw new Error(`${where} has schema ${JSON.stringify(o.schema)}, expected '${SCHEMA}' (written by another wgtrain version?)`);
  if (!Array.isArray(o.kernels) || !Array.isArray(o.e2e) || !o.roofline || typeof o.adapter !== 'string') {
    throw new Error(`${where} lacks kernels, e2e, roofline or adapter`);
  }
  for (const k of o.kernels) {
    if (typeof k?.id !== 'string' || !(k.ms === null || typeof k.ms === 'number')) throw new Error(`${where}: a kernel entry has no id or ms`);
    // JSON has no Infinity/NaN: an error that was not finite was written as null.
    if (k.validation && k.validation.err === null) k.validation.err = Infinity;
  }
  for (const e of o.e2e) {
    if (typeof e?.id !== 'string' || !(e.msPerStep === null || typeof e.msPerStep === 'number')) throw new Error(`${where}: an e2e entry has no id or msPerStep`);
  }
  return o as BenchReport;
}

// ---- compare ---------------------------------------------------------------------------------

export interface Ratio {
  id: string;
  oldMs: number;
  newMs: number;
  /** old / new: > 1 means faster now. */
  speedup: number;
}

export interface Comparison {
  kernels: Ratio[];
  e2e: Ratio[];
  /** Geometric mean of the kernel speedups (each case counts once). */
  kernelGeomean: number | null;
  /** Ids present in only one of the reports, or untimed in one. */
  unmatched: string[];
}

function ratios<T extends { id: string }>(now: readonly T[], before: readonly T[], ms: (t: T) => number | null, unmatched: string[]): Ratio[] {
  const old = new Map(before.map((t) => [t.id, t]));
  const out: Ratio[] = [];
  for (const t of now) {
    const o = old.get(t.id);
    old.delete(t.id);
    const a = o ? ms(o) : null, b = ms(t);
    if (a === null || b === null || !(a > 0) || !(b > 0)) { unmatched.push(t.id); continue; }
    out.push({ id: t.id, oldMs: a, newMs: b, speedup: a / b });
  }
  unmatched.push(...old.keys());
  return out;
}

export function compareReports(now: BenchReport, before: BenchReport): Comparison {
  const unmatched: string[] = [];
  const kernels = ratios(now.kernels, before.kernels, (k) => k.ms, unmatched);
  const e2e = ratios(now.e2e, before.e2e, (e) => e.msPerStep, unmatched);
  return { kernels, e2e, kernelGeomean: geomean(kernels.map((r) => r.speedup)), unmatched };
}

export function geomean(xs: readonly number[]): number | null {
  if (!xs.length) return null;
  return Math.exp(xs.reduce((s, x) => s + Math.log(x), 0) / xs.length);
}

// ---- tables ----------------------------------------------------------------------------------

/** Left-aligned text columns; numbers right-aligned. */
export function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const num = head.map((_, i) => rows.length > 0 && rows.every((r) => /^[-+]?[\d.,]+[×%]?$|^—$/.test(r[i]!)));
  const line = (r: string[]) => r.map((c, i) => (num[i] ? c.padStart(w[i]!) : c.padEnd(w[i]!))).join('  ').trimEnd();
  return [line(head), line(w.map((n) => '-'.repeat(n))), ...rows.map(line)].join('\n');
}

const f = (v: number | null | undefined, digits = 2) => (v === null || v === undefined || !Number.isFinite(v) ? '—' : v.toFixed(digits));

export function kernelRow(k: KernelResult): string[] {
  const rate = k.flops > 0 ? `${f(k.gflops)}` : '—';
  return [
    k.id, k.shape, k.variant, f(k.ms, 3), rate, f(k.gbs), k.roofPct === null ? '—' : `${f(k.roofPct, 0)}%`,
    k.validation.ok ? k.validation.err.toExponential(0) : Number.isFinite(k.validation.err) ? `FAIL ${k.validation.err.toExponential(1)}` : k.error ? 'error' : 'FAIL',
  ];
}

export function kernelTable(ks: readonly KernelResult[]): string {
  return table(['case', 'shape', 'variant', 'ms', 'GFLOP/s', 'GB/s', 'roof', 'rel err'], ks.map(kernelRow));
}

export function e2eTable(es: readonly E2eResult[]): string {
  return table(['case', 'ms/step', 'img/s', 'peak MiB', 'dispatches'], es.map((e) => [
    e.id, e.error ? `error: ${e.error}` : f(e.msPerStep, 0), f(e.imgPerSec, 1), f(e.peakMiB, 0), e.dispatches === null ? '—' : String(e.dispatches),
  ]));
}

/**
 * The autotuner's choices for the cases run: per shape class, the heuristic default and the winner
 * with their measured ms (on the tuner's trial shape, which may be scaled down from the case's).
 */
export function tuningTable(ks: readonly KernelResult[]): string {
  const seen = new Map<string, NonNullable<KernelResult['tuning']>[number]>();
  for (const k of ks) for (const t of k.tuning ?? []) seen.set(t.key, t);
  if (!seen.size) return '';
  const rows = [...seen.values()].map((t) => {
    const tried = Object.values(t.ms);
    const d = t.ms[t.default] ?? null, p = t.ms[t.pick] ?? null;
    return [t.key, t.default, f(d, 3), t.pick, f(p, 3), d !== null && p !== null ? `${f(d / p)}×` : '—',
      `${tried.length}${tried.some((v) => v === null) ? ` (${tried.filter((v) => v === null).length} rejected)` : ''}`];
  });
  return table(['tuned class', 'default', 'ms', 'winner', 'ms', 'speedup', 'candidates'], rows);
}

export function formatReport(r: BenchReport): string {
  const rf = r.roofline;
  return [
    `wgtrain bench ${r.quick ? '--quick ' : ''}${r.precision === 'f16' ? '--precision f16 ' : ''}on ${r.adapter} (${r.timing} timing; wgtrain ${r.wgtrainVersion})`,
    `roofline: compute ${f(rf.peakGflops)} GFLOP/s (${rf.peakProbe}), memory ${f(rf.copyGBs)} GB/s (${rf.copyProbe})`,
    '',
    kernelTable(r.kernels),
    ...(tuningTable(r.kernels) ? ['', `autotuning (${r.tuning ?? 'auto'}): winners per shape class`, tuningTable(r.kernels)] : []),
    ...(r.e2e.length ? ['', e2eTable(r.e2e)] : []),
    '',
    `${r.kernels.length} kernel cases, ${r.e2e.length} end-to-end cases in ${r.seconds.toFixed(0)} s`,
  ].join('\n');
}

export function formatComparison(c: Comparison, beforeLabel: string): string {
  const rows = (rs: Ratio[]) => rs.map((x) => [x.id, f(x.oldMs, 3), f(x.newMs, 3), `${f(x.speedup)}×`]);
  const parts = [`compared with ${beforeLabel} (speedup = old ms / new ms; > 1 is faster now)`, '',
    table(['case', 'old ms', 'new ms', 'speedup'], [...rows(c.kernels), ...rows(c.e2e)])];
  if (c.kernelGeomean !== null) parts.push('', `kernel geometric-mean speedup: ${f(c.kernelGeomean)}× over ${c.kernels.length} cases`);
  if (c.unmatched.length) parts.push(`not compared (missing or untimed in one report): ${c.unmatched.join(', ')}`);
  return parts.join('\n');
}
