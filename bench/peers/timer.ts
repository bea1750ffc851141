// One clock for every contender: wall time from an idle queue to "the GPU has finished" (queue
// drain), each library draining its own device. Peers expose nothing finer (tfjs and ORT do not
// time their dispatches in a way comparable with ours), so wgtrain is timed the same way here, not
// with its GPU timestamps. A sample repeats the launch until it lasts about `targetMs`.
//
// NOTE: the contenders' samples are interleaved (round r: a sample of each in turn), so load from
// other processes on the shared cores, which drifts over seconds, hits all of them alike and the
// ratios stay meaningful even when the absolute numbers do not.

import { median } from '../../src/bench/timing.js';

export interface WallOptions { samples: number; targetMs: number; maxReps: number }
export interface WallTime { ms: number; msMin: number; reps: number }

export interface Contender {
  name: string;
  /** One launch (already warmed up: pipelines compiled, inputs resident). */
  launch(): unknown;
  /** Resolves when the contender's GPU work is done. */
  sync(): Promise<void>;
}

async function sample(c: Contender, reps: number): Promise<number> {
  await c.sync();
  const t0 = performance.now();
  for (let r = 0; r < reps; r++) await c.launch();
  await c.sync();
  return (performance.now() - t0) / reps;
}

/** Median (and best) ms per launch of each contender, samples interleaved across contenders. */
export async function timeInterleaved(cs: readonly Contender[], o: WallOptions): Promise<WallTime[]> {
  const reps: number[] = [];
  for (const c of cs) {
    const once = await sample(c, 1);
    reps.push(Math.max(1, Math.min(o.maxReps, Math.ceil(o.targetMs / Math.max(once, 1e-3)))));
  }
  const per: number[][] = cs.map(() => []);
  for (let s = 0; s < o.samples; s++) {
    for (const [i, c] of cs.entries()) per[i]!.push(await sample(c, reps[i]!));
  }
  return per.map((p, i) => ({ ms: median(p), msMin: Math.min(...p), reps: reps[i]! }));
}
