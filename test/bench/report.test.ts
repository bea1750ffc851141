// The report as a file format: JSON round trip, schema errors that say what is wrong, --compare's
// ratio math, the table and the HTML/SVG page.

import { describe, expect, it } from 'vitest';
import {
  compareReports, formatComparison, formatReport, geomean, parseReport, table, toJson,
} from '../../src/bench/report.js';
import { reportHtml } from '../../src/bench/html.js';
import { SCHEMA, type BenchReport, type E2eResult, type KernelResult } from '../../src/bench/types.js';

function kernel(id: string, ms: number | null, extra: Partial<KernelResult> = {}): KernelResult {
  return {
    id, family: 'matmul', source: 'test', shape: 'A[2,2]·B[2,2]', variant: 'v2', kernels: ['matmul.v2'], flops: 2e9, bytes: 1e6,
    validation: { ok: true, err: 1e-7, tol: 2e-4, what: 'rows 0,1' },
    ms, msMin: ms, wallMs: ms, samples: 3, reps: 1,
    gflops: ms === null ? null : 2e9 / ms / 1e6, gbs: ms === null ? null : 1e6 / ms / 1e6, roofPct: ms === null ? null : 50, bound: 'compute',
    ...extra,
  };
}

function e2e(id: string, ms: number | null): E2eResult {
  return { id, model: 'smallcnn', size: 32, batch: 32, frozen: false, msPerStep: ms, imgPerSec: ms === null ? null : 32000 / ms, peakMiB: 37, dispatches: 57, steps: 3 };
}

function report(kernels: KernelResult[], e2es: E2eResult[] = []): BenchReport {
  return {
    schema: SCHEMA, wgtrainVersion: '0.1.0', date: '2025-01-01T00:00:00.000Z', adapter: 'test adapter <llvmpipe>',
    features: ['subgroups'], quick: true, timing: 'gpu-timestamp',
    roofline: { peakGflops: 20, peakProbe: 'matmul 512³', copyGBs: 6, copyProbe: 'copy 16 MiB' },
    kernels, e2e: e2es, seconds: 12,
  };
}

describe('JSON', () => {
  it('round-trips exactly', () => {
    const r = report([kernel('matmul/512', 15.5), kernel('conv2d.fwd/x', null, { error: 'wrong result: y', validation: { ok: false, err: 0.01, tol: 2e-4, what: 'y' } })], [e2e('e2e/a', 1300)]);
    expect(parseReport(toJson(r))).toEqual(r);
  });

  it('a non-finite error (NaN output) is written as null and read back as Infinity', () => {
    const r = report([kernel('k', null, { validation: { ok: false, err: Infinity, tol: 2e-4, what: 'y' } })]);
    expect(toJson(r)).toMatch(/"err": null/);
    expect(parseReport(toJson(r)).kernels[0]!.validation.err).toBe(Infinity);
    expect(formatReport(r)).toMatch(/ FAIL$/m);
  });

  it('rejects what is not a report, saying why', () => {
    expect(() => parseReport('{', 'old.json')).toThrow(/old.json is not JSON/);
    expect(() => parseReport('[]', 'old.json')).toThrow(/schema/);
    expect(() => parseReport(JSON.stringify({ ...report([]), schema: 'wgtrain-bench/0' }), 'old.json')).toThrow(/schema "wgtrain-bench\/0", expected 'wgtrain-bench\/1'/);
    expect(() => parseReport(JSON.stringify({ ...report([]), kernels: undefined }), 'old.json')).toThrow(/lacks kernels/);
    expect(() => parseReport(JSON.stringify(report([{ ...kernel('a', 1), ms: '1' as unknown as number }])), 'x')).toThrow(/no id or ms/);
  });
});

describe('--compare', () => {
  it('speedup = old ms / new ms, matched by id; geometric mean; unmatched listed', () => {
    const before = report([kernel('a', 10), kernel('b', 4), kernel('gone', 1), kernel('untimed', 2)], [e2e('e2e/x', 1000)]);
    const now = report([kernel('a', 5), kernel('b', 8), kernel('new', 1), kernel('untimed', null)], [e2e('e2e/x', 250)]);
    const c = compareReports(now, before);
    expect(c.kernels).toEqual([{ id: 'a', oldMs: 10, newMs: 5, speedup: 2 }, { id: 'b', oldMs: 4, newMs: 8, speedup: 0.5 }]);
    expect(c.e2e).toEqual([{ id: 'e2e/x', oldMs: 1000, newMs: 250, speedup: 4 }]);
    expect(c.kernelGeomean).toBeCloseTo(1, 12); // √(2 · 0.5)
    expect(c.unmatched.sort()).toEqual(['gone', 'new', 'untimed']);
    const text = formatComparison(c, 'old.json');
    expect(text).toMatch(/compared with old\.json/);
    expect(text).toMatch(/^a\s+10\.000\s+5\.000\s+2\.00×$/m);
    expect(text).toMatch(/e2e\/x\s+1000\.000\s+250\.000\s+4\.00×/);
    expect(text).toMatch(/geometric-mean speedup: 1\.00× over 2 cases/);
    expect(text).toMatch(/not compared .*gone/);
  });

  it('geomean', () => {
    expect(geomean([])).toBeNull();
    expect(geomean([2, 8])).toBeCloseTo(4, 12);
  });
});

describe('text and HTML', () => {
  it('the table aligns numbers right and marks failures', () => {
    const t = table(['case', 'ms'], [['a', '1.5'], ['bbb', '12.25']]);
    expect(t.split('\n')).toEqual(['case     ms', '----  -----', 'a       1.5', 'bbb   12.25']);
    const r = report([kernel('matmul/512', 15.5), kernel('bad', null, { validation: { ok: false, err: 0.5, tol: 2e-4, what: 'y' } })], [e2e('e2e/a', 1300)]);
    const text = formatReport(r);
    expect(text).toMatch(/roofline: compute 20\.00 GFLOP\/s/);
    expect(text).toMatch(/matmul\/512 .* 15\.500 +129\.03/);
    expect(text).toMatch(/FAIL 5\.0e-1/);
    expect(text).toMatch(/e2e\/a +1300 +24\.6 +37 +57/);
  });

  it('the HTML page has one SVG chart per section and escapes text', () => {
    const r = report([kernel('matmul/512', 15.5), kernel('conv<x>', null, { error: 'boom' })], [e2e('e2e/a', 1300)]);
    const html = reportHtml(r, formatReport(r));
    expect(html.match(/<svg /g)).toHaveLength(2);
    expect(html).toContain('test adapter &lt;llvmpipe&gt;');
    expect(html).toContain('conv&lt;x&gt;');
    expect(html).not.toContain('conv<x>');
    expect(html).toMatch(/50%  129\.03 GFLOP\/s/);
  });
});
