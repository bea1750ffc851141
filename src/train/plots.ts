// Self-contained SVG line charts (no plotting dependency): learning curves and the LR-finder plot.
// The output is a string; the CLI writes it to a file and the browser puts it in the page.

import type { EpochRecord } from './learner.js';
import type { LrFindResult } from './lrfind.js';

export interface Series { name: string; points: [number, number][]; color?: string; dashed?: boolean }
export interface ChartOptions {
  title: string; xLabel: string; yLabel: string; series: Series[];
  xLog?: boolean; width?: number; height?: number;
  /** Vertical markers (e.g. LR suggestions, stage boundaries). */
  marks?: { x: number; label: string; color?: string }[];
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b'];

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

/** "Nice" tick values covering [lo, hi]. */
function ticks(lo: number, hi: number, n = 5): number[] {
  if (!(hi > lo)) return [lo];
  const step0 = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0)!;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-12 * Math.abs(hi); v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

const fmt = (v: number) => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-2 && v !== 0) ? v.toExponential(0) : String(Number(v.toPrecision(3))));

export function lineChart(o: ChartOptions): string {
  const W = o.width ?? 640, H = o.height ?? 400;
  const m = { l: 64, r: 16, t: 36, b: 48 };
  const pts = o.series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!o.xLog || x > 0));
  const tx = (x: number) => (o.xLog ? Math.log10(x) : x);
  let [x0, x1] = pts.length ? [Math.min(...pts.map((p) => tx(p[0]))), Math.max(...pts.map((p) => tx(p[0])))] : [0, 1];
  let [y0, y1] = pts.length ? [Math.min(...pts.map((p) => p[1])), Math.max(...pts.map((p) => p[1]))] : [0, 1];
  if (x1 === x0) { x0 -= 0.5; x1 += 0.5; }
  if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
  const sx = (x: number) => m.l + ((tx(x) - x0) / (x1 - x0)) * (W - m.l - m.r);
  const sy = (y: number) => H - m.b - ((y - y0) / (y1 - y0)) * (H - m.t - m.b);
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${esc(o.title)}</text>`);
  // Axes and ticks.
  const xt = o.xLog ? ticks(Math.floor(x0), Math.ceil(x1), Math.ceil(x1) - Math.floor(x0)).filter((v) => v >= x0 && v <= x1).map((v) => 10 ** v) : ticks(x0, x1);
  for (const v of xt) {
    const X = sx(v);
    parts.push(`<line x1="${X}" y1="${m.t}" x2="${X}" y2="${H - m.b}" stroke="#eee"/><text x="${X}" y="${H - m.b + 16}" text-anchor="middle">${o.xLog ? `1e${Math.round(Math.log10(v))}` : fmt(v)}</text>`);
  }
  for (const v of ticks(y0, y1)) {
    const Y = sy(v);
    parts.push(`<line x1="${m.l}" y1="${Y}" x2="${W - m.r}" y2="${Y}" stroke="#eee"/><text x="${m.l - 6}" y="${Y + 4}" text-anchor="end">${fmt(v)}</text>`);
  }
  parts.push(`<rect x="${m.l}" y="${m.t}" width="${W - m.l - m.r}" height="${H - m.t - m.b}" fill="none" stroke="#333"/>`);
  parts.push(`<text x="${(W + m.l - m.r) / 2}" y="${H - 10}" text-anchor="middle">${esc(o.xLabel)}</text>`);
  parts.push(`<text transform="translate(16 ${(H + m.t - m.b) / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`);
  for (const mk of o.marks ?? []) {
    if (!(Number.isFinite(mk.x) && (!o.xLog || mk.x > 0))) continue;
    const X = sx(mk.x);
    parts.push(`<line x1="${X}" y1="${m.t}" x2="${X}" y2="${H - m.b}" stroke="${mk.color ?? '#888'}" stroke-dasharray="4 3"/><text x="${X + 3}" y="${H - m.b - 6}" fill="${mk.color ?? '#555'}">${esc(mk.label)}</text>`);
  }
  o.series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length]!;
    const p = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!o.xLog || x > 0));
    if (!p.length) return;
    const d = p.map(([x, y], k) => `${k ? 'L' : 'M'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join('');
    parts.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    if (p.length === 1) parts.push(`<circle cx="${sx(p[0]![0])}" cy="${sy(p[0]![1])}" r="3" fill="${color}"/>`);
    parts.push(`<line x1="${m.l + 10}" y1="${m.t + 14 + 16 * i}" x2="${m.l + 30}" y2="${m.t + 14 + 16 * i}" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/><text x="${m.l + 36}" y="${m.t + 18 + 16 * i}">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/** Loss and accuracy per epoch, train vs validation, with stage boundaries marked. */
export function learningCurves(history: readonly EpochRecord[]): { loss: string; accuracy: string; combined: string } {
  const x = history.map((_, i) => i + 1);
  const marks = history.flatMap((r, i) => (i > 0 && r.stage !== history[i - 1]!.stage ? [{ x: i + 0.5, label: r.stage }] : []));
  const series = (key: 'trainLoss' | 'valLoss' | 'trainAcc' | 'valAcc', name: string, dashed = false): Series => ({
    name, dashed, points: history.flatMap((r, i): [number, number][] => (r[key] === undefined ? [] : [[x[i]!, r[key]!]])),
  });
  const loss = lineChart({ title: 'Loss', xLabel: 'epoch', yLabel: 'cross-entropy', series: [series('trainLoss', 'train loss'), series('valLoss', 'validation loss', true)], marks });
  const accuracy = lineChart({ title: 'Accuracy', xLabel: 'epoch', yLabel: 'accuracy', series: [series('trainAcc', 'train accuracy'), series('valAcc', 'validation accuracy', true)], marks });
  return { loss, accuracy, combined: sideBySide([loss, accuracy]) };
}

/** Smoothed loss against LR (log axis) with the four suggestions marked. */
export function lrFindPlot(r: LrFindResult): string {
  const s = r.suggestions;
  return lineChart({
    title: 'LR finder', xLabel: 'learning rate (log)', yLabel: 'smoothed loss', xLog: true,
    series: [{ name: 'loss', points: r.lrs.map((lr, i) => [lr, r.losses[i]!]) }],
    marks: [
      { x: s.valley, label: `valley ${s.valley.toExponential(1)}`, color: '#2ca02c' },
      { x: s.slide, label: `slide ${s.slide.toExponential(1)}`, color: '#9467bd' },
      { x: s.minimum, label: `min/10 ${s.minimum.toExponential(1)}`, color: '#d62728' },
      { x: s.steep, label: `steep ${s.steep.toExponential(1)}`, color: '#ff7f0e' },
    ],
  });
}

/** Confusion matrix as a heat map: rows are true classes, columns predictions; counts in cells. */
export function confusionMatrixSvg(confusion: readonly (readonly number[])[], classes: readonly string[], title = 'Confusion matrix (validation)'): string {
  const K = classes.length, cell = Math.max(28, Math.min(64, Math.floor(480 / K)));
  const left = 150, top = 60, W = left + K * cell + 20, H = top + K * cell + 110;
  const max = Math.max(1, ...confusion.flat());
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`, `<text x="${W / 2}" y="22" text-anchor="middle" font-size="14">${esc(title)}</text>`,
    `<text x="${left + (K * cell) / 2}" y="${top + K * cell + 100}" text-anchor="middle">predicted</text>`,
    `<text x="14" y="40">true ↓</text>`];
  for (let i = 0; i < K; i++) {
    parts.push(`<text x="${left - 6}" y="${top + i * cell + cell / 2 + 4}" text-anchor="end">${esc(classes[i]!)}</text>`);
    parts.push(`<text transform="translate(${left + i * cell + cell / 2 + 4} ${top + K * cell + 8}) rotate(60)">${esc(classes[i]!)}</text>`);
    for (let j = 0; j < K; j++) {
      const v = confusion[i]![j]!, a = v / max;
      const fill = i === j ? `rgba(44,160,44,${0.1 + 0.9 * a})` : `rgba(214,39,40,${v ? 0.15 + 0.85 * a : 0})`;
      parts.push(`<rect x="${left + j * cell}" y="${top + i * cell}" width="${cell}" height="${cell}" fill="${fill}" stroke="#ccc"/>`);
      parts.push(`<text x="${left + j * cell + cell / 2}" y="${top + i * cell + cell / 2 + 4}" text-anchor="middle">${v}</text>`);
    }
  }
  parts.push('</svg>');
  return parts.join('\n');
}

/** history.json as CSV: one row per epoch; LR columns per group. */
export function historyCsv(history: readonly EpochRecord[]): string {
  const groups = Math.max(0, ...history.map((h) => h.lrs.length));
  const head = ['stage', 'epoch', 'epochs', 'train_loss', 'train_acc', 'val_loss', 'val_acc', ...Array.from({ length: groups }, (_, i) => `lr_group${i}`), 'trainable_params', 'input_size', 'seconds', 'images_per_sec'];
  const rows = history.map((h) => [h.stage, h.epoch, h.epochs, h.trainLoss, h.trainAcc, h.valLoss ?? '', h.valAcc ?? '',
    ...Array.from({ length: groups }, (_, i) => h.lrs[i] ?? ''), h.trainableParams, h.inputSize ?? '', (h.ms / 1000).toFixed(3), h.imgPerSec.toFixed(1)].join(','));
  return `${head.join(',')}\n${rows.join('\n')}\n`;
}

/** Several charts in one SVG, left to right (the learning-curves PNG shows loss and accuracy together). */
export function sideBySide(svgs: readonly string[], width = 640, height = 400): string {
  const inner = svgs.map((s, i) => s.replace('<svg ', `<svg x="${i * width}" y="0" `)).join('\n');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width * svgs.length}" height="${height}" viewBox="0 0 ${width * svgs.length} ${height}">\n${inner}\n</svg>`;
}
