// The workloads every contender runs, with the exact input numbers (taken from wgtrain's own bench
// case, so its CPU-validated output is the reference the peers' outputs are checked against).

import type { ConvLayer } from '../../src/bench/shapes.js';

export interface MatmulWork { kind: 'matmul'; id: string; M: number; N: number; K: number; A: Float32Array; B: Float32Array }

export interface ConvWork {
  kind: 'conv'; id: string; pass: 'fwd' | 'dx' | 'dw'; layer: ConvLayer;
  /** NCHW / KCRS, as wgtrain holds them. */
  x: Float32Array; w: Float32Array; b: Float32Array; dY: Float32Array;
  P: number; Q: number;
}

export type Work = MatmulWork | ConvWork;

/** A workload set up in one library: launch it, wait for it, read its result (in wgtrain's layout). */
export interface Prepared {
  launch(): unknown;
  sync(): Promise<void>;
  /** The output of a fresh launch, converted to wgtrain's layout (NCHW / KCRS / row-major). */
  output(): Promise<Float32Array>;
  dispose(): void;
}

/** A peer library: null from `prepare` means it has no kernel for this workload (e.g. ORT backward). */
export interface Peer {
  name: string;
  prepare(w: Work): Promise<Prepared | null>;
  /** Images/s-style measurement of the small CNN's training step, if the peer can train. */
  trainStep?(size: number, batch: number, steps: number, warmup: number): Promise<{ msPerStep: number } | null>;
  close(): void;
}
