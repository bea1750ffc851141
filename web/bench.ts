// The benchmark page: starts the suite in bench-worker.ts and shows its progress, charts and table.
// URL parameters preset the form and start at once: bench.html?run&filter=relu&e2e=0&full.

import type { BenchMessage, BenchRequest } from './bench-worker.js';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);
const worker = new Worker(new URL('./bench-worker.js', import.meta.url), { type: 'module', name: 'wgtrain-bench' });
let total = 0, done = 0, json = '';

if (params.has('filter')) $<HTMLInputElement>('filter').value = params.get('filter')!;
if (params.get('e2e') === '0') $<HTMLInputElement>('e2e').checked = false;

function line(text: string) {
  const d = document.createElement('div');
  d.textContent = text;
  $('log').prepend(d);
  // "[3/40] conv2d.fwd/…": advance the bar.
  const m = /^\[(\d+)\/(\d+)\]/.exec(text);
  if (m) { done = Number(m[1]); total = Number(m[2]); $('bar').style.width = `${(100 * done) / total}%`; }
  $('status').textContent = text;
}

function run() {
  const req: BenchRequest = { quick: !params.has('full'), filter: $<HTMLInputElement>('filter').value.trim(), e2e: $<HTMLInputElement>('e2e').checked };
  $<HTMLButtonElement>('run').disabled = true;
  document.body.dataset.status = 'running';
  $('table').textContent = '';
  $('charts').innerHTML = '';
  $('bar').style.width = '0%';
  worker.postMessage(req);
}

worker.onmessage = (ev: MessageEvent<BenchMessage>) => {
  const m = ev.data;
  switch (m.kind) {
    case 'ready':
      $('gpu').textContent = `WebGPU: ${m.adapter === 'unknown adapter' ? 'ready' : m.adapter}`;
      $('gpu').classList.add('ok');
      $<HTMLButtonElement>('run').disabled = false;
      if (params.has('run')) run();
      break;
    case 'line': line(m.text); break;
    case 'done': {
      $('bar').style.width = '100%';
      $('status').textContent = 'done';
      $('table').textContent = m.text;
      // The charts of the HTML report (its SVGs), without its page around them.
      const doc = new DOMParser().parseFromString(m.html, 'text/html');
      $('charts').replaceChildren(...[...doc.querySelectorAll('svg')].map((s) => document.importNode(s, true)));
      json = JSON.stringify(m.report, null, 1);
      $<HTMLButtonElement>('dl-json').disabled = false;
      $<HTMLButtonElement>('run').disabled = false;
      document.body.dataset.status = 'done';
      break;
    }
    case 'error':
      $('error').textContent = m.noWebgpu
        ? `WebGPU unavailable: ${m.message}. Use a recent Chrome or Edge (Chromium on Linux: --enable-unsafe-webgpu), from http://localhost or https.`
        : m.message;
      $('error').hidden = false;
      $<HTMLButtonElement>('run').disabled = !!m.noWebgpu;
      document.body.dataset.status = 'error';
      if (m.noWebgpu) { $('gpu').textContent = 'WebGPU: unavailable'; $('gpu').classList.add('bad'); }
      break;
    default: m satisfies never;
  }
};

$('run').onclick = run;
$('dl-json').onclick = () => {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([json], { type: 'application/json' }));
  a.download = 'bench.json';
  a.click();
};
