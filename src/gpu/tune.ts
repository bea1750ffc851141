// Autotuning: for each adapter and shape class, which variant of a kernel family is fastest.
//
// What is fast differs by adapter (software-adapter.md): on lavapipe, loads shared through subgroup
// shuffles win and workgroup barriers are expensive; on real GPUs shared-memory tiles win. So a kernel
// family offers several variants ("candidates", named by short ids like 'v2.8x4') and its launcher
// asks the tuner which one to run:
//
//   launcher (sync)         tuner.choose(family, cls, spec) → a candidate id, or undefined
//                           undefined = "use your heuristic default" (no measurement yet, tuning off,
//                           or only one candidate). A miss queues the problem when the mode is 'auto'.
//   learner / bench (async) await tuner.settle() measures every queued problem: each candidate runs on
//                           seeded random inputs of the class's shape; its output is compared with the
//                           default's (a variant that computes something else is never chosen), then
//                           timed (median of a few samples, GPU timestamps where the adapter has them);
//                           the fastest wins.
//   store                   the table is saved per adapter (a JSON file in Node: data/node.ts
//                           `fileTuneStore`; IndexedDB in the browser: web/store.ts), so the next
//                           process starts tuned and measures nothing.
//
// A shape class is whatever the family says matters for speed (conv: channels, window, stride, image
// size, batch rounded to a power of two; matmul: dimensions rounded to powers of two and alignment).
// NOTE: an entry is trusted only while the family still offers the same candidates: new or removed
// variants (a newer wgtrain) make the old entry a miss, so it is measured again.
// NOTE: tuned choices change which kernel runs, hence the float summation order: results stay within
// f32 rounding of each other but are not bitwise equal across adapters or tuning states. 'off' gives
// the heuristic defaults everywhere (what the test suite uses, via WGTRAIN_AUTOTUNE=off).

import type { Gpu } from './device.js';
import type { Tensor } from './tensor.js';
import { timeLaunch, timingMethod } from './timing.js';

/** 'auto': use the table, measure misses at the next settle(). 'cached': use the table, never measure. 'off': defaults only. */
export type TuneMode = 'auto' | 'cached' | 'off';
export const TUNE_MODES: readonly TuneMode[] = ['auto', 'cached', 'off'];

/** A trial: inputs of one shape class, set up once, and a way to run any candidate on them. */
export interface TuneTrial {
  /** Encodes one launch of candidate `id`; returns its output (the tuner disposes it). */
  run(id: string): Tensor;
  /** Releases the inputs. */
  dispose(): void;
}

/** What a launcher tells the tuner about one problem (built lazily: only on the first use of a class). */
export interface TuneSpec {
  /** Candidate ids; [0] is the heuristic default (what runs until the class is measured). */
  candidates: readonly string[];
  /** Sets up seeded inputs of the class's (possibly scaled-down) shape. */
  trial(gpu: Gpu): TuneTrial;
  /** Multiply-adds·2 of one trial launch (for the report's GFLOP/s), if meaningful. */
  flops?: number;
  /** Largest accepted difference from the default's output, relative to its scale (default 1e-3; f16 storage needs more). */
  tolerance?: number;
}

/** One measured class. `ms[id]` is null for a candidate that failed or computed a different result. */
export interface TuneEntry {
  pick: string;
  candidates: readonly string[];
  ms: Record<string, number | null>;
  /** Why a candidate was rejected, when one was. */
  rejected?: Record<string, string>;
  flops?: number;
  /** ISO time of the measurement. */
  at: string;
}

/** The table for one adapter, as stored. */
export interface TuneTable { schema: 1; adapter: string; entries: Record<string, TuneEntry> }

/** Where tables live between processes. Keyed by adapter name. */
export interface TuneStore {
  /** For messages ('~/.cache/wgtrain/autotune.json', 'IndexedDB'). */
  readonly where: string;
  load(adapter: string): Promise<TuneTable | null>;
  save(table: TuneTable): Promise<void>;
}

export interface SettleOptions {
  /** Called before each problem is measured. */
  onProblem?: (key: string, index: number, total: number) => void;
}

/** A measured problem, as settle() reports it. */
export interface TuneResult extends TuneEntry { key: string }

/**
 * Relative error (vs the default's output scale) above which a candidate is rejected: f32 variants
 * differ only in summation order (~1e-6 here); f16 outputs by up to one rounding step (~1e-3).
 */
const TOL = 1e-3;
/** Timing per candidate: a few short samples are enough to separate variants that matter. */
const TIMING = { samples: 2, targetMs: 8, maxReps: 8 };
/** A variant replaces the default only if it takes at most this fraction of the default's time. */
const SWITCH = 0.95;

export class Tuner {
  /** Set by the CLI (`--autotune`) or WGTRAIN_AUTOTUNE; the library default is 'auto'. */
  mode: TuneMode;
  private entries = new Map<string, TuneEntry>();
  private queue = new Map<string, TuneSpec>();
  /** choose()'s answer per key, so a launch after the first is one Map lookup. */
  private resolved = new Map<string, string | undefined>();
  private store: TuneStore | null = null;
  /** Sees every key launchers ask about (`wgtrain bench` reports the choice of each case). */
  onChoose: ((key: string) => void) | null = null;

  constructor(private readonly gpu: Gpu, mode?: TuneMode) {
    this.mode = mode ?? modeFromEnv() ?? 'auto';
  }

  /** Problems waiting for settle(). */
  get pending(): number { return this.queue.size; }

  /** Where the table is kept (null: this process only). */
  get storeWhere(): string | null { return this.store?.where ?? null; }

  /**
   * The candidate to run for (family, class), or undefined for the launcher's heuristic default.
   * Synchronous and cheap after the first call per class: launchers call it on every launch.
   */
  choose(family: string, cls: string, spec: () => TuneSpec): string | undefined {
    if (this.mode === 'off') return undefined;
    const key = `${family}|${cls}`;
    this.onChoose?.(key);
    if (this.resolved.has(key)) return this.resolved.get(key);
    // Queued and not yet measured: the default, without rebuilding the spec on every launch.
    if (this.queue.has(key)) return undefined;
    const s = spec();
    const e = this.entries.get(key);
    let pick: string | undefined;
    if (s.candidates.length < 2) pick = undefined;
    else if (e && sameList(e.candidates, s.candidates)) pick = e.pick === s.candidates[0] ? undefined : e.pick;
    else if (this.mode === 'auto') { this.queue.set(key, s); return undefined; } // not resolved yet: ask again after settle()
    this.resolved.set(key, pick);
    return pick;
  }

  /** Measures every queued problem, records the winners and saves the table. */
  async settle(o: SettleOptions = {}): Promise<TuneResult[]> {
    if (!this.queue.size) return [];
    const gpu = this.gpu;
    const problems = [...this.queue];
    this.queue.clear();
    // NOTE: tuning launches are not part of the user's work: hide them from dispatch observers
    // (traces, `explain`) and don't let them move the pool's peak.
    const observer = gpu.onDispatch;
    gpu.onDispatch = null;
    const out: TuneResult[] = [];
    try {
      for (const [i, [key, spec]] of problems.entries()) {
        o.onProblem?.(key, i, problems.length);
        const entry = await measure(gpu, spec);
        this.entries.set(key, entry);
        this.resolved.set(key, entry.pick === spec.candidates[0] ? undefined : entry.pick);
        out.push({ key, ...entry });
      }
    } finally {
      gpu.onDispatch = observer;
    }
    await this.save();
    return out;
  }

  /** Uses `store` for this adapter: loads its table (entries already measured here are kept). */
  async attach(store: TuneStore): Promise<void> {
    this.store = store;
    const t = await store.load(this.gpu.adapterName);
    if (t && t.schema === 1) {
      for (const [k, e] of Object.entries(t.entries)) if (!this.entries.has(k) && validEntry(e)) this.entries.set(k, e);
      this.resolved.clear();
    }
  }

  /** The measured classes (for `wgtrain bench` and `wgtrain info`). */
  table(): TuneTable {
    return { schema: 1, adapter: this.gpu.adapterName, entries: Object.fromEntries(this.entries) };
  }

  /** The entry for one key ('family|class'), if measured. */
  entry(key: string): TuneEntry | undefined { return this.entries.get(key); }

  /** Forgets every measurement (and the queue); the store is rewritten on the next settle(). */
  clear() { this.entries.clear(); this.queue.clear(); this.resolved.clear(); }

  private async save() {
    if (this.store) await this.store.save(this.table());
  }
}

function modeFromEnv(): TuneMode | undefined {
  const v = typeof process !== 'undefined' ? process.env?.WGTRAIN_AUTOTUNE : undefined;
  return v && (TUNE_MODES as readonly string[]).includes(v) ? (v as TuneMode) : undefined;
}

const sameList = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x, i) => x === b[i]);

function validEntry(e: unknown): e is TuneEntry {
  const x = e as TuneEntry;
  return !!x && typeof x.pick === 'string' && Array.isArray(x.candidates) && x.candidates.includes(x.pick) && typeof x.ms === 'object';
}

/** Runs, checks and times every candidate of one problem; the default is the reference and the fallback. */
async function measure(gpu: Gpu, spec: TuneSpec): Promise<TuneEntry> {
  const ms: Record<string, number | null> = {};
  const rejected: Record<string, string> = {};
  const method = timingMethod(gpu);
  const trial = spec.trial(gpu);
  try {
    const [dflt] = spec.candidates;
    let ref: Float32Array | null = null;
    for (const id of spec.candidates) {
      try {
        // The first launch compiles the pipeline and is the one checked against the default's output.
        const y = trial.run(id);
        const v = await y.read();
        y.dispose();
        gpu.check();
        if (!ref) ref = v;
        else {
          const err = relError(v, ref);
          if (!(err <= (spec.tolerance ?? TOL))) { ms[id] = null; rejected[id] = `differs from ${dflt} (relative error ${err.toExponential(1)})`; continue; }
        }
        // The fastest sample, not the median: other work on the machine only ever slows a sample down.
        const t = await timeLaunch(gpu, () => trial.run(id).dispose(), { ...TIMING, method });
        ms[id] = t.msMin;
      } catch (e) {
        if (id === dflt) throw e; // the default must work: that is a bug, not a tuning result
        ms[id] = null;
        rejected[id] = (e as Error).message.split('\n')[0]!;
      }
    }
  } finally {
    trial.dispose();
  }
  // The default stays unless another variant is clearly faster (timing noise must not switch kernels).
  let pick = spec.candidates[0]!;
  for (const id of spec.candidates) if (ms[id] != null && ms[id]! < ms[pick]!) pick = id;
  if (ms[pick]! > SWITCH * ms[spec.candidates[0]!]!) pick = spec.candidates[0]!;
  return {
    pick, candidates: [...spec.candidates], ms, at: new Date().toISOString(),
    ...(Object.keys(rejected).length ? { rejected } : {}), ...(spec.flops ? { flops: spec.flops } : {}),
  };
}

/** max |a − b| / max(max |b|, 1e-30): error relative to the output's scale. */
function relError(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Infinity;
  let d = 0, s = 0;
  for (let i = 0; i < a.length; i++) { d = Math.max(d, Math.abs(a[i]! - b[i]!)); s = Math.max(s, Math.abs(b[i]!)); }
  return d / Math.max(s, 1e-30);
}

/** True for adapters that run on the CPU (small tuning budgets). */
export function isSoftwareAdapter(name: string): boolean {
  return /llvmpipe|lavapipe|swiftshader|software/i.test(name);
}
