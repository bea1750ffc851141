// The report as one self-contained HTML page: horizontal SVG bar charts (% of the roofline per
// kernel case, images/s per end-to-end case) and the full table. No script, no external assets.

import type { BenchReport } from './types.js';

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

const FAMILY_COLOR: Record<string, string> = {
  matmul: '#1f77b4', conv2d: '#d62728', pool: '#2ca02c', batchnorm: '#ff7f0e', relu: '#9467bd', 'softmax-xent': '#8c564b', adam: '#e377c2', e2e: '#17becf',
};

export interface Bar { label: string; value: number | null; text: string; group: string }

/** Horizontal bars, one per row, scaled to the largest value (or to `max`). */
export function barChart(title: string, bars: readonly Bar[], o: { max?: number; unit?: string } = {}): string {
  const rowH = 18, labelW = 330, barW = 420, top = 30, W = labelW + barW + 190;
  const H = top + bars.length * rowH + 12;
  const max = o.max ?? Math.max(1e-9, ...bars.map((b) => b.value ?? 0));
  const p: string[] = [];
  p.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`);
  p.push(`<rect width="${W}" height="${H}" fill="white"/><text x="8" y="18" font-size="14">${esc(title)}</text>`);
  bars.forEach((b, i) => {
    const y = top + i * rowH;
    const w = b.value === null ? 0 : Math.max(1, (Math.min(b.value, max) / max) * barW);
    const color = FAMILY_COLOR[b.group.split('.')[0]!] ?? '#7f7f7f';
    p.push(`<text x="${labelW - 6}" y="${y + 12}" text-anchor="end">${esc(b.label)}</text>`);
    p.push(`<rect x="${labelW}" y="${y + 3}" width="${w.toFixed(1)}" height="${rowH - 6}" fill="${color}"/>`);
    p.push(`<text x="${labelW + w + 4}" y="${y + 12}">${esc(b.text)}</text>`);
  });
  if (o.max !== undefined) {
    p.push(`<line x1="${labelW + barW}" y1="${top}" x2="${labelW + barW}" y2="${H - 8}" stroke="#999" stroke-dasharray="3 3"/>`);
  }
  p.push('</svg>');
  return p.join('\n');
}

export function reportHtml(r: BenchReport, text: string): string {
  const roof = barChart('% of the measured roofline (dashed line: 100%)', r.kernels.map((k) => ({
    label: k.id, group: k.family, value: k.roofPct,
    text: k.roofPct === null ? (k.error ?? 'not timed') : `${k.roofPct.toFixed(0)}%  ${k.flops > 0 ? `${k.gflops!.toFixed(2)} GFLOP/s` : `${k.gbs!.toFixed(2)} GB/s`}`,
  })), { max: 100 });
  const e2e = r.e2e.length ? barChart('training step, images per second', r.e2e.map((e) => ({
    label: e.id, group: 'e2e', value: e.imgPerSec,
    text: e.imgPerSec === null ? (e.error ?? 'not run') : `${e.imgPerSec.toFixed(1)} img/s, ${e.peakMiB!.toFixed(0)} MiB`,
  }))) : '';
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>wgtrain bench — ${esc(r.adapter)}</title>
<style>body{font-family:sans-serif;margin:24px;max-width:1200px} pre{font-size:12px;background:#f6f6f6;padding:12px;overflow-x:auto}</style></head>
<body>
<h1>wgtrain bench</h1>
<p>${esc(r.adapter)} · ${esc(r.date)} · ${r.quick ? 'quick' : 'full'} suite · ${esc(r.timing)} timing ·
compute roof ${r.roofline.peakGflops.toFixed(2)} GFLOP/s (${esc(r.roofline.peakProbe)}) · memory roof ${r.roofline.copyGBs.toFixed(2)} GB/s (${esc(r.roofline.copyProbe)})</p>
${roof}
${e2e}
<pre>${esc(text)}</pre>
</body></html>
`;
}
