// The page: wires the form to the training worker and draws what it reports. No GPU work here —
// everything heavy runs in worker.ts, so the page stays responsive during training.
//
// For automation and tests the page exposes `window.wgtrain`: `call(request)` (the worker protocol),
// and `state` / `model` / `data` (what the page last heard). `document.body.dataset.status` mirrors
// the run's status (idle, training, paused, stopped, done).

import { droppedFiles, stripCommonRoot, type RelativeFile } from '../src/data/browser.js';
import { learningCurves, lineChart } from '../src/train/plots.js';
import type { Progress } from '../src/train/learner.js';
import { TrainingWorker, WorkerFailure } from './client.js';
import type { DataInfo, Event, ModelInfo, Prediction, Request, RunSettings, RunState, SplitInfo } from './protocol.js';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
const pct = (v: number) => `${(100 * v).toFixed(1)}%`;

const NO_WEBGPU_HELP =
  'WebGPU is not available in this browser, and wgtrain trains on the GPU through WebGPU. ' +
  'Use a recent Chrome or Edge (Chromium on Linux: start it with --enable-unsafe-webgpu), ' +
  'and open the app from http://localhost or an https:// address.';

interface AppState {
  ready: boolean;
  model: ModelInfo | null;
  data: DataInfo | null;
  split: SplitInfo | null;
  state: RunState;
  steps: [number, number][];
  busy: boolean;
}

const app: AppState = {
  ready: false, model: null, data: null, split: null, busy: false, steps: [],
  state: { status: 'idle', history: [], classes: [], progress: null, totalEpochs: 0, eval: null, origin: null, settings: null },
};

const worker = new TrainingWorker(new URL('./worker.js', import.meta.url), onEvent);
(window as unknown as { wgtrain: unknown }).wgtrain = {
  call: (req: Request) => worker.call(req),
  get state() { return app.state; },
  get model() { return app.model; },
  get data() { return app.data; },
  get split() { return app.split; },
};

// ---- messages -----------------------------------------------------------------------------------

function showError(e: unknown) {
  const box = $('error');
  if (e instanceof WorkerFailure && e.kind === 'no-webgpu') {
    box.innerHTML = `<strong>WebGPU unavailable.</strong> ${esc(NO_WEBGPU_HELP)} <span class="muted">(${esc(e.message)})</span>`;
    box.dataset.kind = 'no-webgpu';
  } else {
    const msg = e instanceof Error ? e.message : String(e);
    box.textContent = msg.split('\n')[0]!;
    box.dataset.kind = e instanceof WorkerFailure ? e.kind : 'internal';
    if (!(e instanceof WorkerFailure) || e.kind === 'internal') console.error(e);
  }
  box.hidden = false;
}

function clearError() { if ($('error').dataset.kind !== 'no-webgpu') $('error').hidden = true; }

function log(text: string, level: 'info' | 'warning' = 'info') {
  const line = document.createElement('div');
  line.className = level;
  line.textContent = `${new Date().toLocaleTimeString()}  ${text}`;
  $('log').prepend(line);
}

/** Runs a worker call from a button: disables the page's actions meanwhile, shows errors. */
async function act<T>(fn: () => Promise<T>): Promise<T | undefined> {
  clearError();
  app.busy = true;
  refreshButtons();
  try {
    return await fn();
  } catch (e) {
    showError(e);
    return undefined;
  } finally {
    app.busy = false;
    refreshButtons();
  }
}

// ---- drawing ------------------------------------------------------------------------------------

function renderModel(m: ModelInfo) {
  app.model = m;
  $('model-info').classList.remove('muted');
  $('model-info').innerHTML = `
    <div class="title">${esc(m.name)}</div>
    <table class="kv">
      <tr><th>graph</th><td>${esc(m.family === 'other' ? 'CNN' : m.family)} · ${esc(m.io)}</td></tr>
      <tr><th>parameters</th><td>${m.params.toLocaleString('en-US')} in ${m.groups.length} layer groups (${m.groups.map((g) => g.toLocaleString('en-US')).join(' / ')})</td></tr>
      <tr><th>ops</th><td>${esc(m.ops)}</td></tr>
      <tr><th>input</th><td>${m.preprocessing.size}×${m.preprocessing.size} RGB, mean [${m.preprocessing.mean.map((v) => v.toFixed(3)).join(', ')}]${m.preprocessingGuessed ? ' <em>(guessed: the file carries no preprocessing)</em>' : ''}</td></tr>
      ${m.classes ? `<tr><th>trained on</th><td>${esc(m.classes.join(', '))}</td></tr>` : ''}
    </table>`;
  // The CLI's defaults: the small demo model likes a larger learning rate than fastai's 2e-3.
  $<HTMLInputElement>('lr').value = m.demo ? '0.01' : '0.002';
}

function renderData(d: DataInfo, s: SplitInfo | null) {
  app.data = d;
  app.split = s;
  const max = Math.max(1, ...d.counts);
  const rows = d.classes.map((c, i) => {
    const n = d.counts[i]!, tr = s?.train[i] ?? 0, va = s?.val[i] ?? 0;
    return `<tr><td class="cls">${esc(c)}</td><td class="num">${n}</td>
      <td class="barcell"><div class="hbar" style="width:${(100 * n) / max}%"><div class="val" style="width:${n ? (100 * va) / n : 0}%"></div></div></td>
      <td class="num">${s ? tr : ''}</td><td class="num">${s ? va : ''}</td></tr>`;
  }).join('');
  const total = d.counts.reduce((a, b) => a + b, 0);
  const used = s ? s.train.reduce((a, b) => a + b, 0) + s.val.reduce((a, b) => a + b, 0) : 0;
  $('data-info').innerHTML = `
    <div class="title">${esc(d.root)}: ${d.classes.length} classes, ${total.toLocaleString('en-US')} images${d.skipped.length ? `, ${d.skipped.length} unreadable skipped` : ''}</div>
    <table class="counts"><tr><th>class</th><th>images</th><th></th><th>train</th><th>val</th></tr>${rows}</table>
    ${s ? `<div class="muted small">split: seed ${s.seed}, ${pct(s.valSplit)} of each class for validation${s.perClass ? `, first ${s.perClass} images per class (${used} used)` : ''}; dark: validation share</div>` : ''}`;
}

function svgInto(id: string, svg: string) { $(id).innerHTML = svg; }

function renderCurves() {
  const h = app.state.history;
  if (h.length) {
    const c = learningCurves(h);
    svgInto('loss-chart', c.loss);
    svgInto('acc-chart', c.accuracy);
  } else { svgInto('loss-chart', ''); svgInto('acc-chart', ''); }
  renderSteps();
}

let stepsDrawn = 0;
function renderSteps() {
  if (!app.steps.length) { svgInto('step-chart', ''); return; }
  stepsDrawn = performance.now();
  svgInto('step-chart', lineChart({ title: 'Training loss per step (this session)', xLabel: 'step', yLabel: 'loss', series: [{ name: 'batch loss', points: app.steps }] }));
}

function renderState(s: RunState) {
  app.state = s;
  document.body.dataset.status = s.status;
  renderCurves();
  const done = s.history.length, total = s.totalEpochs;
  if (s.status !== 'training') {
    const what: Record<RunState['status'], string> = {
      idle: 'Choose a model and images, then Fine-tune.',
      training: '', paused: `Paused (${done} of ${total} epochs done): Continue resumes.`,
      stopped: `Stopped: ${done} of ${total} epochs are in the checkpoint; Resume continues from there.`,
      done: `Finished: ${done} epochs.`,
    };
    $('progress-text').textContent = what[s.status];
    if (s.status === 'done') $('bar').style.width = '100%';
  }
  const ev = s.eval;
  const last = s.history.at(-1);
  $('result').innerHTML = ev
    ? `<div class="title">Validation: accuracy <b id="val-acc">${pct(ev.accuracy)}</b>, loss ${ev.loss.toFixed(4)} (${ev.n} images)</div><div class="chart small-chart">${ev.confusionSvg}</div>`
    : last ? `<div class="muted">last epoch: ${esc(last.stage)} ${last.epoch}/${last.epochs}, train loss ${last.trainLoss.toFixed(4)}, validation accuracy ${last.valAcc !== undefined ? pct(last.valAcc) : '–'}</div>` : '';
  refreshButtons();
}

function renderProgress(p: Progress, rate: number) {
  const total = app.state.totalEpochs || 1;
  // Fraction of the whole run: finished epochs + this one's share.
  const f = (app.state.history.length + p.step / Math.max(1, p.steps)) / total;
  $('bar').style.width = `${Math.min(100, 100 * f).toFixed(1)}%`;
  // NOTE: the step in flight when Pause was pressed still reports; say that the run waits after it.
  const paused = app.state.status === 'paused' ? ' · paused (Continue resumes)' : '';
  $('progress-text').textContent = `${p.stage} epoch ${p.epoch}/${p.epochs} · step ${p.step}/${p.steps} · loss ${p.loss.toFixed(4)}${rate > 0 ? ` · ${rate.toFixed(0)} img/s` : ''}${paused}`;
  app.steps.push([app.steps.length + 1, p.loss]);
  // Redraw the step chart at most 4 times a second.
  if (performance.now() - stepsDrawn > 250 || p.step === p.steps) renderSteps();
}

function renderPrediction(p: Prediction) {
  const order = p.probs.map((v, i) => [v, i] as const).sort((a, b) => b[0] - a[0]);
  $('bars').innerHTML = order.map(([v, i], k) => `
    <div class="pbar${k === 0 ? ' top' : ''}"><span class="cls">${esc(p.classes[i]!)}</span>
      <span class="track"><span class="fill" style="width:${(100 * v).toFixed(1)}%"></span></span>
      <span class="num">${pct(v)}</span></div>`).join('') + `<div class="muted small">${p.ms.toFixed(0)} ms</div>`;
  $('bars').dataset.top = p.classes[order[0]![1]]!;
}

function refreshButtons() {
  const st = app.state.status;
  const running = st === 'training' || st === 'paused';
  const idle = app.ready && !app.busy && !running;
  const dis = (id: string, d: boolean) => { $<HTMLButtonElement>(id).disabled = d; };
  for (const id of ['demo-model', 'demo-data']) dis(id, !idle);
  dis('lr-find', !(idle && app.model && app.data));
  dis('train', !(idle && app.model && app.data));
  dis('pause', !running);
  $('pause').textContent = st === 'paused' ? 'Continue' : 'Pause';
  dis('stop', !running);
  dis('resume', !(idle && st === 'stopped'));
  const has = st !== 'idle';
  dis('dl-ckpt', !(has && app.state.progress));
  dis('dl-split', !(has && app.state.progress));
  dis('dl-onnx', !(idle && has && app.state.progress));
  for (const id of ['model-file', 'data-folder', 'import-ckpt', 'predict-file']) $<HTMLInputElement>(id).disabled = !app.ready || running || app.busy;
}

// ---- events from the worker -----------------------------------------------------------------------

function onEvent(e: Event) {
  switch (e.event) {
    case 'progress': renderProgress(e.p, e.imgPerSec); break;
    case 'epoch': {
      const r = e.record;
      log(`${r.stage} epoch ${r.epoch}/${r.epochs}: train loss ${r.trainLoss.toFixed(4)} acc ${pct(r.trainAcc)}, validation loss ${r.valLoss?.toFixed(4) ?? '–'} acc ${r.valAcc !== undefined ? pct(r.valAcc) : '–'} (${(r.ms / 1000).toFixed(1)} s); checkpoint saved`);
      renderState(e.state);
      break;
    }
    case 'state': renderState(e.state); break;
    case 'log': log(e.text, e.level); break;
    default: e satisfies never;
  }
}

// ---- actions ------------------------------------------------------------------------------------

const num = (id: string) => Number($<HTMLInputElement>(id).value);

function settings(): RunSettings {
  const u = $<HTMLSelectElement>('unfreeze').value;
  return {
    epochs: num('epochs'), freezeEpochs: num('freeze-epochs'), lr: num('lr'), lrMult: num('lr-mult'), batch: num('batch'),
    valSplit: num('val-split'), seed: num('seed'), perClass: num('per-class'), unfreeze: u === 'all' ? 'all' : Number(u),
  };
}

async function resplit() {
  if (!app.data) return;
  const s = await worker.call({ op: 'split', valSplit: num('val-split'), seed: num('seed'), perClass: num('per-class') });
  renderData(app.data, s);
}

async function loadData(req: Extract<Request, { op: 'loadData' }>) {
  await act(async () => {
    const d = await worker.call(req);
    renderData(d, null);
    await resplit();
    log(`images: ${d.root}, ${d.classes.length} classes`);
  });
}

async function loadFolder(files: readonly RelativeFile[], fallbackRoot: string) {
  if (!files.length) { showError(new Error('that folder holds no files')); return; }
  const first = files[0]![0].split('/')[0]!;
  const stripped = stripCommonRoot(files);
  const root = stripped.length && stripped[0]![0] !== files[0]![0] ? first : fallbackRoot;
  await loadData({ op: 'loadData', root, files: stripped.map(([p, f]) => [p, f] as [string, Blob]) });
}

function download(name: string, data: BlobPart, type = 'application/octet-stream') {
  const url = URL.createObjectURL(new Blob([data], { type }));
  const a = document.createElement('a');
  a.href = url; a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

async function train(kind: 'train' | 'resume') {
  clearError();
  app.steps = [];
  const req: Request = kind === 'train' ? { op: 'train', settings: settings() } : { op: 'resume' };
  if (kind === 'train') { $('result').innerHTML = ''; $('bar').style.width = '0%'; }
  const t0 = performance.now();
  try {
    const s = await worker.call(req);
    renderState(s);
    if (s.status === 'done') log(`run finished in ${((performance.now() - t0) / 1000).toFixed(0)} s${s.eval ? `: validation accuracy ${pct(s.eval.accuracy)}` : ''}`);
  } catch (e) { showError(e); }
  refreshButtons();
}

function adopt(r: { state: RunState; model: ModelInfo; data: DataInfo; split: SplitInfo; resumable: boolean }) {
  renderModel(r.model);
  renderData(r.data, r.split);
  app.steps = [];
  renderState(r.state);
  // The form shows what the adopted run trains with (its plan); its split comes from the checkpoint.
  const st = r.state.settings;
  if (st) {
    const set = (id: string, v: number | string) => { $<HTMLInputElement>(id).value = String(v); };
    set('epochs', st.epochs); set('freeze-epochs', st.freezeEpochs); set('lr', st.lr); set('lr-mult', st.lrMult);
    if (st.batch !== 'auto') set('batch', st.batch);
    set('val-split', st.valSplit); set('seed', st.seed);
    const u = $<HTMLSelectElement>('unfreeze');
    if ([...u.options].some((o) => o.value === String(st.unfreeze))) u.value = String(st.unfreeze);
  }
  $<HTMLInputElement>('per-class').value = '0';
}

function bind() {
  $('demo-model').onclick = () => act(async () => { renderModel(await worker.call({ op: 'loadModel', demo: true })); log('model: the demo CNN'); });
  $<HTMLInputElement>('model-file').onchange = (ev) => {
    const f = (ev.target as HTMLInputElement).files?.[0];
    if (f) void act(async () => { const b = await f.arrayBuffer(); renderModel(await worker.call({ op: 'loadModel', name: f.name, bytes: b }, [b])); log(`model: ${f.name}`); });
    (ev.target as HTMLInputElement).value = '';
  };
  $('demo-data').onclick = () => loadData({ op: 'loadData', demo: true });
  $<HTMLInputElement>('data-folder').onchange = (ev) => {
    const input = ev.target as HTMLInputElement;
    const files = [...(input.files ?? [])];
    input.value = '';
    void loadFolder(files.map((f) => [f.webkitRelativePath || f.name, f] as const), 'the selected folder');
  };
  for (const id of ['val-split', 'seed', 'per-class']) $(id).onchange = () => { if (app.state.status !== 'training' && app.state.status !== 'paused') void act(resplit); };

  const drop = (id: string, onDrop: (ev: DragEvent) => void) => {
    const el = $(id);
    el.addEventListener('dragover', (ev) => { ev.preventDefault(); el.classList.add('over'); });
    el.addEventListener('dragleave', () => el.classList.remove('over'));
    el.addEventListener('drop', (ev) => { ev.preventDefault(); el.classList.remove('over'); onDrop(ev); });
  };
  drop('data-drop', (ev) => {
    if (!ev.dataTransfer) return;
    const pending = droppedFiles(ev.dataTransfer.items);
    void pending.then((files) => loadFolder(files, 'the dropped files'));
  });
  drop('predict-drop', (ev) => { const f = ev.dataTransfer?.files[0]; if (f) void predict(f); });
  $<HTMLInputElement>('predict-file').onchange = (ev) => {
    const f = (ev.target as HTMLInputElement).files?.[0];
    if (f) void predict(f);
    (ev.target as HTMLInputElement).value = '';
  };

  $('lr-find').onclick = () => act(async () => {
    $('lr-result').hidden = false;
    $('lr-text').textContent = 'running the LR finder…';
    const r = await worker.call({ op: 'lrFind', settings: settings(), numIt: num('lr-iters') });
    svgInto('lr-plot', r.svg);
    const s = r.suggestions;
    $('lr-text').innerHTML = `${r.iterations} iterations in ${(r.ms / 1000).toFixed(1)} s. Suggestions: valley <b>${s.valley.toExponential(1)}</b>, slide ${s.slide.toExponential(1)}, min/10 ${s.minimum.toExponential(1)}, steep ${s.steep.toExponential(1)} <button id="use-valley">use valley</button>`;
    $('use-valley').onclick = () => { $<HTMLInputElement>('lr').value = s.valley.toPrecision(2); };
  });
  $('train').onclick = () => { void train('train'); };
  $('resume').onclick = () => { void train('resume'); };
  $('pause').onclick = () => { void worker.call({ op: app.state.status === 'paused' ? 'continue' : 'pause' }).then(renderState, showError); };
  $('stop').onclick = () => { void worker.call({ op: 'stop' }).then(renderState, showError); $('progress-text').textContent = 'stopping after this step…'; };
  $<HTMLInputElement>('pause-epoch').onchange = (ev) => { void worker.call({ op: 'pauseAtEpochEnd', on: (ev.target as HTMLInputElement).checked }); };

  $('dl-onnx').onclick = () => act(async () => { const r = await worker.call({ op: 'exportOnnx' }); download('model.onnx', r.bytes); });
  $('dl-ckpt').onclick = () => act(async () => { const r = await worker.call({ op: 'checkpoint' }); download('checkpoint.safetensors', r.bytes); });
  $('dl-split').onclick = () => act(async () => { const r = await worker.call({ op: 'checkpoint' }); download('split.json', r.split, 'application/json'); });
  $<HTMLInputElement>('import-ckpt').onchange = (ev) => {
    const f = (ev.target as HTMLInputElement).files?.[0];
    (ev.target as HTMLInputElement).value = '';
    if (f) void act(async () => {
      const b = await f.arrayBuffer();
      const r = await worker.call({ op: 'importCheckpoint', bytes: b, name: f.name }, [b]);
      adopt(r);
      log(`imported ${f.name}: ${r.state.history.length} of ${r.state.totalEpochs} epochs done${r.resumable ? '; Resume continues it' : ' (finished: ready to predict and export)'}`);
    });
  };
}

async function predict(f: File) {
  const img = $<HTMLImageElement>('predict-img');
  img.src = URL.createObjectURL(f);
  img.hidden = false;
  await act(async () => {
    const b = await f.arrayBuffer();
    renderPrediction(await worker.call({ op: 'predict', bytes: b }, [b]));
  });
}

async function offerSaved() {
  const s = await worker.call({ op: 'savedRun' }).catch(() => null);
  if (!s) return;
  const box = $('saved');
  box.innerHTML = `A run saved in this browser (${esc(new Date(s.savedAt).toLocaleString())}): ${esc(s.model)} on ${esc(s.data)}, ${s.epochsDone} of ${s.totalEpochs} epochs${s.done ? ' (finished)' : ''}.
    <button id="restore-saved">${s.done ? 'Restore' : 'Resume it'}</button> <button id="discard-saved">Discard</button>`;
  box.hidden = false;
  $('restore-saved').onclick = () => {
    box.hidden = true;
    void act(async () => {
      const r = await worker.call({ op: 'restoreSaved' });
      adopt(r);
      log(`restored the saved run: ${r.state.history.length} of ${r.state.totalEpochs} epochs done`);
      return r;
    }).then((r) => { if (r?.resumable) void train('resume'); });
  };
  $('discard-saved').onclick = () => { box.hidden = true; void worker.call({ op: 'discardSaved' }); };
}

async function start() {
  bind();
  renderState(app.state);
  try {
    const info = await worker.call({ op: 'init' });
    app.ready = true;
    $('gpu').textContent = `WebGPU: ${info.adapter === 'unknown adapter' ? 'ready' : info.adapter}`;
    $('gpu').classList.add('ok');
    document.body.dataset.gpu = 'ready';
    refreshButtons();
    await offerSaved();
  } catch (e) {
    $('gpu').textContent = 'WebGPU: unavailable';
    $('gpu').classList.add('bad');
    document.body.dataset.gpu = 'unavailable';
    showError(e);
  }
}

void start();
