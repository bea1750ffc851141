// Timing one kernel launch. Two clocks:
//
//   gpu-timestamp  the adapter writes a timestamp at the start and end of every compute pass
//                  (`timestamp-query`); a launch's time is the sum over its dispatches. Excludes the
//                  JavaScript that encodes the launch and the submit, i.e. what the kernel costs.
//   queue-drain    wall clock from an empty queue to `onSubmittedWorkDone` after the launch: includes
//                  encode, submit and the drain (~0.1 ms on lavapipe). The only clock without
//                  timestamps, and the one peers are compared with (they give us nothing finer).
//
// A sample repeats the launch `reps` times in one submit, so a sample lasts about `targetMs` even for
// kernels of a few microseconds. NOTE: this matters with timestamps too: Dawn quantises them (65.5 µs
// steps on lavapipe), so a single 20 µs dispatch would read as 0 or 65 µs.
// Warm-up (pipeline compiles, pool fill) is excluded: the caller has run the launch at least once.
// Shared by `wgtrain bench` and the autotuner (tune.ts).

import type { Gpu } from './device.js';

export type TimingMethod = 'gpu-timestamp' | 'queue-drain';

export interface TimeOptions {
  /** Timed samples (the median is reported). */
  samples: number;
  /** Aim for samples of about this many milliseconds. */
  targetMs: number;
  /** Upper bound on launches per sample. */
  maxReps: number;
  method: TimingMethod;
}

export interface Timed {
  /** Median ms per launch with `method`. */
  ms: number;
  msMin: number;
  /** Median wall-clock ms per launch (= ms for queue-drain). */
  wallMs: number;
  samples: number;
  reps: number;
}

export function median(a: readonly number[]): number {
  if (!a.length) return NaN;
  const s = [...a].sort((p, q) => p - q);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** The clock to use on this device: timestamps when the adapter has them, unless told otherwise. */
export function timingMethod(gpu: Gpu, prefer: TimingMethod = 'gpu-timestamp'): TimingMethod {
  return prefer === 'gpu-timestamp' && gpu.hasTimestamps ? 'gpu-timestamp' : 'queue-drain';
}

/**
 * Times `launch` (which encodes one launch and releases its outputs). Runs one untimed launch first
 * to size `reps`.
 */
export async function timeLaunch(gpu: Gpu, launch: () => void, o: TimeOptions): Promise<Timed> {
  await gpu.sync();
  let t0 = performance.now();
  launch();
  await gpu.sync();
  const once = performance.now() - t0;
  const reps = Math.max(1, Math.min(o.maxReps, Math.ceil(o.targetMs / Math.max(once, 1e-3))));
  const useStamps = o.method === 'gpu-timestamp';
  const wasTiming = gpu.timing;
  if (useStamps) { gpu.setTiming(true); await gpu.takeTimings(); }
  const walls: number[] = [], stamps: number[] = [];
  try {
    for (let s = 0; s < o.samples; s++) {
      await gpu.sync();
      t0 = performance.now();
      for (let r = 0; r < reps; r++) launch();
      await gpu.sync();
      walls.push((performance.now() - t0) / reps);
      if (useStamps) stamps.push((await gpu.takeTimings()).reduce((a, t) => a + t.ms, 0) / reps);
    }
  } finally {
    if (useStamps && !wasTiming) gpu.setTiming(false);
  }
  const main = useStamps ? stamps : walls;
  return { ms: median(main), msMin: Math.min(...main), wallMs: median(walls), samples: o.samples, reps };
}
