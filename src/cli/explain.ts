// `wgtrain explain`: the plan of a fine-tuning run, before it runs.
//
//   wgtrain explain [--model M.onnx] [--data DIR | --classes K] [--size S] [--batch N|auto]
//                   [--epochs N] [--freeze-epochs N] [--lr X|A:B] [--unfreeze all|K] [--memory-budget MiB] [--json]
//
// Prints what `wgtrain finetune` with the same flags would do: the layer groups and their parameters;
// per stage (fastai fine_tune: the head alone, then unfrozen) which groups are frozen, every group's
// LR after slice() spreading, how BatchNorm behaves, the batch size the memory planner picks and the
// memory it plans for; and the kernels one training step launches per layer, and which of them
// freezing skips.
//
// Nothing is guessed: the kernels are those of one real training step per stage (at batch 1 unless
// --batch N), traced (train/trace.ts) with the LR at 0, so weights stay bit-identical; BatchNorm's
// running statistics are restored after it. The memory numbers are planBatch's measurements
// (train/memory.ts). NOTE: the defaults mirror finetune's (demo recipe without --model/--data).

import { readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import type { Gpu } from '../gpu/device.js';
import { freezeTo, groupParameters } from '../nn/groups.js';
import { slice, spreadLr } from '../optim/lr.js';
import { Learner } from '../train/learner.js';
import { planBatch, type BatchPlan } from '../train/memory.js';
import {
  kernelCounts, layerKernels, layerOfParam, STEP_PHASES, TraceRecorder, tracedTrainStep, type StepPhase, type TracedStep,
} from '../train/trace.js';
import { Rng } from '../util/rng.js';
import { demoDataPath, demoModelPath, loadOnnx, openGpu, parseSizes, positiveInt, resolveRecipe } from './session.js';
import { UserError } from './errors.js';

export interface ExplainFlags {
  model?: string; data?: string; classes?: string; size?: string; batch?: string; epochs?: string; freezeEpochs?: string;
  lr?: string; unfreeze?: string; memoryBudget?: string; seed?: string; traceBatch?: string; json?: boolean;
}

/** The run `explain` describes, resolved as `finetune` resolves its flags. */
export interface ExplainOptions {
  model: string;
  classes: number;
  /** Input size (default: the model's). */
  size?: number;
  batch: number | 'auto';
  epochs: number;
  freezeEpochs: number;
  /** fastai base LR and the unfrozen stage's spread (finetune's --lr semantics). */
  baseLr: number;
  lrMult: number;
  unfreeze: 'all' | number;
  budgetBytes: number;
  seed: number;
  /** Batch of the traced step (default 1). */
  traceBatch?: number;
}

export type Counts = Record<string, number>;

export interface StagePlan {
  name: 'head' | 'unfrozen';
  epochs: number;
  frozenGroups: number[];
  trainableParams: number;
  frozenParams: number;
  /** Per group: peak LR of the one-cycle schedule, its start (peak/div) and end (peak/divFinal). */
  lr: { peak: number[]; start: number[]; end: number[]; pctStart: number; div: number; divFinal: number };
  batchNorm: string | null;
  batch: { used: number; planned: number };
  /** Bytes: weights, gradients of trainable parameters, Adam state, and planBatch's measurements. */
  memory: { parameters: number; gradients: number; optimizer: number; perImage: number; fixed: number; total: number };
  kernels: { total: number; byPhase: Record<StepPhase, number>; byName: Counts };
}

export interface LayerPlan {
  layer: string;
  group: number | null;
  parameters: number;
  stages: Record<string, { frozen: boolean } & Record<StepPhase, Counts>>;
}

export interface ExplainPlan {
  model: { path: string; family: string; parameters: number; batchNorm: boolean; input: number[]; classes: number; head: string[] };
  budgetBytes: number;
  /** Batch of the traced steps (kernel counts are for this batch). */
  traceBatch: number;
  groups: { index: number; layers: string[]; tensors: number; parameters: number }[];
  stages: StagePlan[];
  layers: LayerPlan[];
}

export function registerExplain(program: Command) {
  program.command('explain')
    .description('the plan of a fine-tuning run before it runs: groups, frozen layers, LRs, kernels per layer, memory, batch')
    .option('--model <file>', 'ONNX model (default: the demo model in weights/)')
    .option('--data <dir>', 'image folder: the new head gets one output per class subfolder')
    .option('--classes <k>', 'classes of the new head, without --data (default: the demo data\'s)')
    .option('--size <px>', "input size (default: the model's)")
    .option('--batch <n|auto>', 'batch size, or auto: what the memory planner picks (default 32)')
    .option('--epochs <n>', 'epochs of the unfrozen stage (as finetune)')
    .option('--freeze-epochs <n>', 'epochs of the head stage (as finetune)')
    .option('--lr <x|a:b>', 'as finetune: base LR, or the unfrozen range low:high')
    .option('--unfreeze <all|K>', 'after the head stage unfreeze all groups or the top K (default all)')
    .option('--memory-budget <MiB>', 'GPU memory the planner may use (default 2048)')
    .option('--seed <n>', 'seed of the new head (default 42)')
    .option('--trace-batch <n>', 'batch of the traced step that lists the kernels (default 1)')
    .option('--json', 'print the plan as one JSON object')
    .action(explainCommand);
}

/** Resolves flags exactly as `finetune` does (demo recipe when neither --model nor --data is given). */
export function explainOptions(flags: ExplainFlags): ExplainOptions {
  const r = resolveRecipe(flags);
  let classes: number;
  if (flags.classes !== undefined) classes = positiveInt('--classes', flags.classes, 2, 2);
  else classes = classFolders(resolve(flags.data ?? demoDataPath()), flags.data ? '--data' : 'the demo data').length;
  if (classes < 2) throw new UserError(`${flags.data ?? 'the demo data'} has ${classes} class folder(s); a classifier needs at least 2`);
  const sizes = flags.size === undefined ? undefined : parseSizes(flags.size, 0);
  return {
    model: flags.model ?? demoModelPath(), classes, size: sizes?.at(-1),
    batch: r.batch, epochs: r.epochs, freezeEpochs: r.freezeEpochs, baseLr: r.baseLr, lrMult: r.lrMult, unfreeze: r.unfreeze,
    budgetBytes: positiveInt('--memory-budget', flags.memoryBudget, 2048) * 2 ** 20,
    seed: r.seed,
    traceBatch: positiveInt('--trace-batch', flags.traceBatch, 1),
  };
}

function classFolders(dir: string, what: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory() && !d.name.startsWith('.')).map((d) => d.name);
  } catch {
    throw new UserError(`${what} '${dir}' cannot be read: pass --data DIR (one subfolder per class) or --classes K`);
  }
}

export async function explainCommand(flags: ExplainFlags) {
  const o = explainOptions(flags);
  const gpu = await openGpu({}, 'cached');
  const plan = await explainPlan(gpu, o, (s) => process.stderr.write(`warning: ${s}\n`));
  process.stdout.write(flags.json ? `${JSON.stringify(plan)}\n` : formatPlan(plan));
  gpu.destroy();
}

/** Builds the plan: loads the model, attaches the new head, measures memory and traces one step per stage. */
export async function explainPlan(gpu: Gpu, o: ExplainOptions, warn: (s: string) => void = () => {}): Promise<ExplainPlan> {
  const loaded = await loadOnnx(gpu, o.model, warn);
  const model = loaded.model;
  const headBefore = new Set(model.parameters());
  model.cutAt('before-last-gemm', o.classes, o.seed);
  const size = o.size ?? loaded.preprocessing.size;
  const learner = new Learner(gpu, model, { numClasses: o.classes, replay: false });
  try {
    const groups = groupParameters(model);
    const n = groups.length;
    const groupOf = new Map<string, number>();
    groups.forEach((g, i) => g.forEach(([name]) => groupOf.set(layerOfParam(name), i)));
    const sizeOf = new Map(model.namedParameters().map(([name, p]) => [name, p.size]));
    const total = [...sizeOf.values()].reduce((a, b) => a + b, 0);

    // The stages of Learner.fineTune, with their freeze states and LRs.
    const stages: { name: 'head' | 'unfrozen'; epochs: number; frozen: number; peak: number[]; pctStart: number; div: number }[] = [];
    if (o.freezeEpochs > 0) stages.push({ name: 'head', epochs: o.freezeEpochs, frozen: n - 1, peak: spreadLr(slice(o.baseLr), n), pctStart: 0.99, div: 25 });
    if (o.epochs > 0) {
      const lr = o.baseLr / 2;
      stages.push({ name: 'unfrozen', epochs: o.epochs, frozen: o.unfreeze === 'all' ? 0 : Math.max(0, n - o.unfreeze), peak: spreadLr(slice(lr / o.lrMult, lr), n), pctStart: 0.3, div: 5 });
    }
    if (!stages.length) throw new UserError('nothing to explain: --epochs and --freeze-epochs are both 0');

    // Memory first, on a fresh optimizer (as finetune plans both stages before training).
    const plans: BatchPlan[] = [];
    for (const s of stages) {
      freezeTo(model, s.frozen);
      try {
        plans.push(await planBatch(learner, [3, size, size], { budgetBytes: o.budgetBytes }));
      } catch (e) {
        throw new UserError(`--size ${size} does not fit this model (${(e as Error).message.split('\n')[0]}); it was made for ${loaded.preprocessing.size}×${loaded.preprocessing.size}`);
      }
    }

    // One traced step per stage, LR 0 (weights unchanged), BatchNorm statistics restored afterwards.
    // NOTE: dispatch counts barely depend on the batch (split-K partial sums and batch chunks can
    // add a reduction or a chunk), so batch 1 keeps explain quick on any model.
    const traceBatch = o.traceBatch ?? 1;
    const rng = new Rng(o.seed);
    const batch = {
      x: rng.array(traceBatch * 3 * size * size, -2, 2), shape: [traceBatch, 3, size, size] as const,
      labels: Uint32Array.from({ length: traceBatch }, (_, i) => i % o.classes),
    };
    const buffers = await Promise.all(model.namedBuffers().map(async ([, t]) => [t, await t.read()] as const));
    const traced: TracedStep[] = [];
    model.train();
    for (const s of stages) {
      freezeTo(model, s.frozen);
      learner.optimizer.setLr(new Array<number>(n).fill(0));
      const rec = new TraceRecorder(gpu, { timing: false }).attach(learner);
      await tracedTrainStep(learner, rec, batch, { stage: s.name });
      await rec.finish();
      traced.push(rec.steps[0]!);
      for (const [t, d] of buffers) t.write(d);
    }

    const stagePlans: StagePlan[] = stages.map((s, i) => {
      const step = traced[i]!, p = plans[i]!;
      const byName = Object.fromEntries([...kernelCounts(step)].sort(([a], [b]) => a.localeCompare(b)));
      const byPhase = Object.fromEntries(STEP_PHASES.map((ph) => [ph, step.phases.filter((q) => q.phase === ph).reduce((a, q) => a + q.kernels.length, 0)])) as Record<StepPhase, number>;
      const used = o.batch === 'auto' ? p.batch : o.batch;
      const frozenGroups = Array.from({ length: s.frozen }, (_, g) => g);
      return {
        name: s.name, epochs: s.epochs, frozenGroups, trainableParams: step.trainableParams, frozenParams: step.frozenParams,
        lr: { peak: s.peak, start: s.peak.map((l) => l / s.div), end: s.peak.map((l) => l / 1e5), pctStart: s.pctStart, div: s.div, divFinal: 1e5 },
        batchNorm: !model.hasBatchNorm ? null : s.frozen === 0 ? 'every BatchNorm normalises with batch statistics and updates its running statistics'
          : `BatchNorm in groups ${range(frozenGroups)} uses its running statistics (frozen, not updated); trainable ones use batch statistics`,
        batch: { used, planned: p.batch },
        memory: {
          parameters: 4 * total, gradients: 4 * step.trainableParams, optimizer: p.optimizerBytes, perImage: p.perImageBytes, fixed: p.fixedBytes,
          total: 4 * total + p.fixedBytes + p.optimizerBytes + used * p.perImageBytes,
        },
        kernels: { total: Object.values(byName).reduce((a, b) => a + b, 0), byPhase, byName },
      };
    });

    // Per layer: kernels by stage and phase (layers in the order the forward meets them).
    const layers = new Map<string, LayerPlan>();
    traced.forEach((step, i) => {
      const frozenLayers = new Set(step.frozen.map((f) => f.layer));
      for (const l of layerKernels(step)) {
        let lp = layers.get(l.layer);
        if (!lp) {
          const params = [...sizeOf].filter(([name]) => layerOfParam(name) === l.layer).reduce((a, [, v]) => a + v, 0);
          layers.set(l.layer, (lp = { layer: l.layer, group: groupOf.get(l.layer) ?? null, parameters: params, stages: {} }));
        }
        lp.stages[stages[i]!.name] = {
          frozen: frozenLayers.has(l.layer),
          ...Object.fromEntries(STEP_PHASES.map((ph) => [ph, Object.fromEntries(l.phases[ph])])) as Record<StepPhase, Counts>,
        };
      }
    });
    // Parameterless layers (ReLU after conv1, …) run with the layer before them: same group.
    let lastGroup: number | null = null;
    for (const lp of layers.values()) { if (lp.group === null && lp.layer !== 'loss') lp.group = lastGroup; lastGroup = lp.group ?? lastGroup; }

    return {
      model: {
        path: loaded.path, family: model.family, parameters: total, batchNorm: model.hasBatchNorm, input: [3, size, size], classes: o.classes,
        head: model.namedParameters().filter(([, p]) => !headBefore.has(p)).map(([name]) => name),
      },
      budgetBytes: o.budgetBytes, traceBatch,
      groups: groups.map((g, i) => ({
        index: i, layers: [...new Set(g.map(([name]) => layerOfParam(name)))], tensors: g.length, parameters: g.reduce((a, [, p]) => a + p.size, 0),
      })),
      stages: stagePlans,
      layers: [...layers.values()],
    };
  } finally {
    learner.dispose();
    model.dispose();
  }
}

// ---- text --------------------------------------------------------------------------------------

const int = (v: number) => v.toLocaleString('en-US');
function bytes(b: number): string {
  if (b < 1024) return `${b} B`;
  if (b < 2 ** 20) return `${(b / 1024).toFixed(1)} KiB`;
  if (b < 2 ** 30) return `${(b / 2 ** 20).toFixed(1)} MiB`;
  return `${(b / 2 ** 30).toFixed(2)} GiB`;
}
const lrs = (v: number[]) => v.map((x) => x.toExponential(2)).join('  ');

function range(g: number[]): string {
  if (!g.length) return 'none';
  return g.length === 1 ? `${g[0]}` : `${g[0]}–${g.at(-1)}`;
}

function counts(c: Counts): string {
  const e = Object.entries(c);
  return e.length ? e.map(([k, v]) => (v > 1 ? `${k} ×${v}` : k)).join(', ') : '—';
}

function listLayers(ls: string[]): string {
  return ls.length <= 6 ? ls.join(', ') : `${ls.slice(0, 3).join(', ')}, … (${ls.length - 5} more), ${ls.slice(-2).join(', ')}`;
}

/** The plan as text (what `wgtrain explain` prints). */
export function formatPlan(p: ExplainPlan): string {
  const L: string[] = [];
  const m = p.model;
  L.push(`model    ${m.path}`);
  L.push(`         ${m.family}, ${int(m.parameters)} parameters, BatchNorm ${m.batchNorm ? 'present' : 'absent (folded into the convolutions)'}; input ${m.input.join('×')}`);
  L.push(`         new head ${[...new Set(m.head.map(layerOfParam))].join(', ')}: ${m.classes} classes`);
  L.push('');
  L.push('layer groups (freezing and discriminative LRs work per group)');
  for (const g of p.groups) L.push(`  ${g.index}  ${int(g.parameters).padStart(11)} parameters in ${String(g.tensors).padStart(3)} tensors   ${listLayers(g.layers)}`);
  p.stages.forEach((s, i) => {
    L.push('');
    const frozen = s.frozenGroups.length ? `groups ${range(s.frozenGroups)} frozen (${int(s.frozenParams)} parameters)` : 'nothing frozen';
    L.push(`stage ${i + 1}: ${s.name} — ${s.epochs} epoch${s.epochs === 1 ? '' : 's'}, ${frozen}, ${int(s.trainableParams)} trainable`);
    L.push(`  LR per group, one-cycle peak:   ${lrs(s.lr.peak)}`);
    L.push(`    starts at peak/${s.lr.div}, peaks at ${Math.round(100 * s.lr.pctStart)}% of the stage, ends at peak/${s.lr.divFinal.toExponential(0).replace('+', '')}${s.frozenGroups.length ? '; frozen groups have an LR but no update' : ''}`);
    if (s.batchNorm) L.push(`  ${s.batchNorm}`);
    L.push(`  batch ${s.batch.used}${s.batch.used === s.batch.planned ? ' (the memory planner\'s pick)' : `; the memory planner would pick ${s.batch.planned} within ${bytes(p.budgetBytes)}`}`);
    const mm = s.memory;
    L.push(`  memory: weights ${bytes(mm.parameters)}, gradients ${bytes(mm.gradients)}, Adam state ${bytes(mm.optimizer)}, activations ${bytes(mm.perImage)}/image, workspace ${bytes(mm.fixed)} → ~${bytes(mm.total)} at batch ${s.batch.used}`);
    const k = s.kernels;
    const full = p.stages.find((x) => x.frozenGroups.length === 0);
    const skipped = full && full !== s ? `; freezing skips ${full.kernels.total - k.total} of the unfrozen step's ${full.kernels.total}` : '';
    L.push(`  one step at batch ${p.traceBatch}: ${k.total} dispatches (forward ${k.byPhase.forward}, backward ${k.byPhase.backward}, optimizer ${k.byPhase.optimizer})${skipped}`);
  });
  L.push('');
  L.push(`kernels per layer, one training step at batch ${p.traceBatch} (ReLU, pooling and residual adds count with the layer before them)`);
  const pad = Math.max(...p.stages.map((s) => s.name.length));
  for (const l of p.layers) {
    L.push(`  ${l.layer}${l.group !== null ? ` (group ${l.group}${l.parameters ? `, ${int(l.parameters)} parameters` : ''})` : ''}`);
    for (const s of p.stages) {
      const st = l.stages[s.name];
      if (!st) continue;
      const bwd = st.frozen && !Object.keys(st.backward).length ? 'skipped (frozen)' : counts(st.backward);
      const upd = l.parameters === 0 ? '' : ` | update ${st.frozen ? 'none (frozen)' : counts(st.optimizer)}`;
      L.push(`    ${s.name.padEnd(pad)}  forward ${counts(st.forward)} | backward ${bwd}${upd}`);
    }
  }
  return `${L.join('\n')}\n`;
}
