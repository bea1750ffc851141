// `wgtrain bench` through commander (registerBench), as the CLI runs it: --quick --filter --json
// --html --compare --batch, and the one-line user errors.

import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Command } from 'commander';
import { registerBench } from '../../src/cli/bench.js';
import { parseReport } from '../../src/bench/report.js';

const dir = mkdtempSync(join(tmpdir(), 'wgtrain-bench-'));

/** Runs `wgtrain bench …args`; returns what it wrote to stdout and stderr. */
async function bench(...args: string[]): Promise<{ out: string; err: string }> {
  let out = '', err = '';
  const so = vi.spyOn(process.stdout, 'write').mockImplementation((s) => { out += String(s); return true; });
  const se = vi.spyOn(process.stderr, 'write').mockImplementation((s) => { err += String(s); return true; });
  try {
    const program = new Command().exitOverride();
    registerBench(program);
    await program.parseAsync(['bench', ...args], { from: 'user' });
  } finally {
    so.mockRestore(); se.mockRestore();
  }
  return { out, err };
}

afterEach(() => { vi.restoreAllMocks(); });

describe('wgtrain bench', () => {
  const json = join(dir, 'mm.json'), html = join(dir, 'mm.html');

  it('--quick --filter matmul --json --html: one validated, timed case and the roofline', async () => {
    const { out, err } = await bench('--quick', '--filter', '^matmul/512$', '--no-e2e', '--json', json, '--html', html);
    const r = parseReport(readFileSync(json, 'utf8'));
    expect(r.quick).toBe(true);
    expect(r.kernels.map((k) => k.id)).toEqual(['matmul/512']);
    const k = r.kernels[0]!;
    expect(k.validation.ok).toBe(true);
    expect(k.ms).toBeGreaterThan(0);
    expect(k.gflops).toBeCloseTo(2 * 512 ** 3 / k.ms! / 1e6, 6);
    expect(r.roofline.peakGflops).toBeGreaterThan(0);
    expect(r.roofline.copyGBs).toBeGreaterThan(0);
    expect(r.e2e).toEqual([]);
    expect(out).toMatch(/matmul\/512 +A\[512,512\]·B\[512,512\]/);
    expect(err).toMatch(/roofline probes/);
    expect(readFileSync(html, 'utf8')).toMatch(/<svg [^]*matmul\/512/);
  });

  it('--compare prints speedups against the earlier report; --json - prints JSON on stdout', async () => {
    const { out, err } = await bench('--quick', '--filter', '^matmul/512$', '--no-e2e', '--compare', json, '--json', '-');
    const r = parseReport(out);
    expect(r.kernels).toHaveLength(1);
    expect(err).toMatch(new RegExp(`compared with ${json.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    expect(err).toMatch(/^matmul\/512 +[\d.]+ +[\d.]+ +[\d.]+×$/m);
  });

  it('an end-to-end case runs when the filter picks it (--batch sets its batch)', async () => {
    const { out } = await bench('--quick', '--filter', '^e2e/smallcnn', '--batch', '4', '--json', join(dir, 'e2e.json'));
    const r = parseReport(readFileSync(join(dir, 'e2e.json'), 'utf8'));
    expect(r.kernels).toEqual([]);
    expect(r.e2e.map((e) => e.id)).toEqual(['e2e/smallcnn@32/b4/unfrozen']);
    expect(r.e2e[0]!.imgPerSec).toBeGreaterThan(0);
    expect(out).toMatch(/e2e\/smallcnn@32\/b4\/unfrozen +\d+/);
  });

  it('--autotune auto measures the variants of a new shape class, reports the winner and caches it per adapter', async () => {
    const cache = join(dir, 'tune');
    process.env.WGTRAIN_CACHE_DIR = cache;
    try {
      const id = '^conv2d.dx/resnet34.layer2.0.conv1$';
      const { out } = await bench('--quick', '--filter', id, '--no-e2e', '--autotune', 'auto', '--json', join(dir, 'tuned.json'));
      const r = parseReport(readFileSync(join(dir, 'tuned.json'), 'utf8'));
      expect(r.tuning).toBe('auto');
      const k = r.kernels[0]!;
      expect(k.validation.ok).toBe(true); // the winner, validated against the float64 reference
      const t = k.tuning![0]!;
      expect(t.key).toMatch(/^conv2d\.dx\|64>128 3x3 s2 /);
      expect(Object.keys(t.ms).length).toBeGreaterThan(3);
      expect(t.ms[t.pick]!).toBeLessThanOrEqual(t.ms[t.default]!);
      expect(k.variant).toBe(t.pick);
      expect(out).toMatch(/autotuning \(auto\): winners per shape class/);
      const file = JSON.parse(readFileSync(join(cache, 'autotune.json'), 'utf8'));
      const table = Object.values(file.adapters)[0] as Record<string, { pick: string }>;
      expect(table[t.key]!.pick).toBe(t.pick);
      // --autotune cached: the same winner, nothing measured (the report shows the stored times).
      await bench('--quick', '--filter', id, '--no-e2e', '--autotune', 'cached', '--json', join(dir, 'cached.json'));
      const c = parseReport(readFileSync(join(dir, 'cached.json'), 'utf8')).kernels[0]!.tuning![0]!;
      expect(c).toEqual(t);
    } finally {
      delete process.env.WGTRAIN_CACHE_DIR;
    }
  });

  it('--precision f16: matmul with f16 storage, validated against the reference on the stored values', async () => {
    const { out } = await bench('--quick', '--filter', '^matmul/512$', '--no-e2e', '--precision', 'f16', '--autotune', 'off', '--json', join(dir, 'f16.json'));
    const r = parseReport(readFileSync(join(dir, 'f16.json'), 'utf8'));
    expect(r.precision).toBe('f16');
    const k = r.kernels[0]!;
    expect(k.shape).toMatch(/ f16$/);
    expect(k.bytes).toBe(2 * 3 * 512 * 512);
    expect(k.validation.ok).toBe(true);
    expect(k.validation.err).toBeGreaterThan(1e-5); // f16 rounding is really there …
    expect(k.validation.err).toBeLessThan(3e-3); //    … and accumulation is f32
    expect(out).toMatch(/^wgtrain bench --quick --precision f16 on /);
  });

  it('bad options are one-line user errors, found before anything runs', async () => {
    await expect(bench('--precision', 'f64')).rejects.toMatchObject({ name: 'UserError', message: expect.stringMatching(/--precision must be f32 or f16/) });
    await expect(bench('--autotune', 'sometimes')).rejects.toMatchObject({ name: 'UserError', message: expect.stringMatching(/--autotune must be one of auto, cached, off/) });
    await expect(bench('--filter', '(')).rejects.toMatchObject({ name: 'UserError', message: expect.stringMatching(/^--filter: /) });
    await expect(bench('--batch', '0')).rejects.toMatchObject({ name: 'UserError', message: expect.stringMatching(/--batch must be a positive integer/) });
    await expect(bench('--timing', 'fast')).rejects.toMatchObject({ name: 'UserError' });
    await expect(bench('--compare', join(dir, 'missing.json'))).rejects.toMatchObject({ name: 'UserError', message: expect.stringMatching(/cannot read/) });
    await expect(bench('--compare', html)).rejects.toMatchObject({ name: 'UserError', message: expect.stringMatching(/is not JSON/) });
  });
});
