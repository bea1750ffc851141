// Runs the benchmark suite (src/bench) in a worker: the same code as `wgtrain bench`, on the
// browser's WebGPU. Posts each progress line, then the report (or an error).

import { getGpu, GpuError } from '../src/gpu/device.js';
import { runBench } from '../src/bench/run.js';
import { formatReport } from '../src/bench/report.js';
import { reportHtml } from '../src/bench/html.js';
import { avoidTiledConv, enableTuning } from './adapter.js';

export type BenchRequest = { quick: boolean; filter: string; e2e: boolean };
export type BenchMessage =
  | { kind: 'ready'; adapter: string }
  | { kind: 'line'; text: string }
  | { kind: 'done'; report: unknown; text: string; html: string }
  | { kind: 'error'; message: string; noWebgpu: boolean };

const scope = self as unknown as { postMessage(m: BenchMessage): void; onmessage: ((ev: MessageEvent<BenchRequest>) => void) | null };

const gpu = getGpu().then(
  async (g) => {
    await enableTuning(g, (text) => scope.postMessage({ kind: 'line', text }));
    scope.postMessage({ kind: 'ready', adapter: g.adapterName });
    if (avoidTiledConv(g)) scope.postMessage({ kind: 'line', text: `${g.adapterName}: convolutions run the naive v1 kernels (the tiled ones do not compile on this software adapter)` });
    return g;
  },
  (e: Error) => { scope.postMessage({ kind: 'error', message: e.message, noWebgpu: e instanceof GpuError }); return null; },
);

scope.onmessage = async (ev) => {
  const g = await gpu;
  if (!g) return;
  try {
    let filter: RegExp | undefined;
    if (ev.data.filter) {
      try { filter = new RegExp(ev.data.filter); } catch (e) { throw new Error(`filter: ${(e as Error).message}`); }
    }
    const report = await runBench(g, { quick: ev.data.quick, filter, e2e: ev.data.e2e, log: (text) => scope.postMessage({ kind: 'line', text }) });
    const text = formatReport(report);
    scope.postMessage({ kind: 'done', report, text, html: reportHtml(report, text) });
  } catch (e) {
    scope.postMessage({ kind: 'error', message: (e as Error).message, noWebgpu: false });
  }
};
