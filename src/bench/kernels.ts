// The kernel cases: one factory per family. Each case uploads seeded random inputs, launches the
// kernel the way the engine does in training, and checks the first launch against the float64
// reference (on an exact slice of the problem when the whole would take the reference too long).
//
// FLOPs count 2 per multiply-add. Bytes are the minimum traffic: each input read once, each output
// written once (what a perfect kernel would move); GB/s below the copy probe means re-reads or
// poorly shaped loads.

import type { Gpu } from '../gpu/device.js';
import { Tensor, f16Bits, f16Value, type DType } from '../gpu/tensor.js';
import { matmul, pickTile } from '../kernels/matmul.js';
import {
  conv2d, conv2dBackwardInput, conv2dBackwardWeight, convFlops, convGeometry, pickVersion, shareMode,
  TILE_DW, TILE_DX, TILE_FWD, type Conv2dOptions,
} from '../kernels/conv2d.js';
import { maxPool2d, maxPool2dBackward, poolBackwardVersions, readArgmax, type MaxPool2dOptions } from '../kernels/pool.js';
import { batchNorm2dBackward, batchNorm2dTrain } from '../kernels/batchnorm.js';
import { relu, reluBackward } from '../kernels/elementwise.js';
import { defaultSoftmaxVersion, labelsTensor, softmaxCrossEntropy, softmaxCrossEntropyBackward } from '../kernels/softmax.js';
import { adamStep, type AdamStepOptions } from '../kernels/optim.js';
import { matmulRef } from '../kernels/reference/matmul.js';
import { conv2dBackwardInputRef, conv2dBackwardWeightRef, conv2dRef } from '../kernels/reference/conv2d.js';
import { maxPool2dBackwardRef, maxPool2dRef, type Pool2dRefOptions } from '../kernels/reference/pool.js';
import { batchNorm2dBackwardRef, batchNorm2dTrainRef } from '../kernels/reference/batchnorm.js';
import { reluBackwardRef, reluRef } from '../kernels/reference/elementwise.js';
import { softmaxCrossEntropyBackwardRef, softmaxCrossEntropyRef } from '../kernels/reference/softmax.js';
import { adamStepRef } from '../kernels/reference/optim.js';
import { Rng } from '../util/rng.js';
import type { ActLayer, ConvLayer, PoolLayer } from './shapes.js';
import type { BenchCase, CaseInstance, Family } from './types.js';
import { compare, pick, spread, take, takeRows, worst } from './validate.js';

/** Tolerances (error relative to the output's scale): f32 sums vs float64, and exact-ish maps. */
const TOL_REDUCE = 2e-4;
const TOL_MAP = 1e-5;
/** Multiply-adds the float64 conv reference may spend on one check (≈ 0.1–0.3 s in Node). */
const REF_BUDGET = 3e7;

const F = 4; // bytes per f32
/** f16 storage (`bench --precision f16`): the output's own rounding is ~5e-4 of its scale. */
const TOL_F16 = 3e-3;
const dims = (s: readonly number[]) => `[${s.join(',')}]`;

function upload(gpu: Gpu, data: Float32Array, shape: readonly number[], dtype: DType = 'f32'): Tensor {
  return Tensor.from(gpu, data, shape, dtype);
}

/**
 * Seeded inputs as the kernel will see them: in f16 the CPU copy is rounded to f16 first, so the
 * reference sees exactly the stored values and the check measures only the kernel's own error.
 */
function asStored(a: Float32Array, dtype: DType): Float32Array {
  return dtype === 'f16' ? a.map((v) => f16Value(f16Bits(v))) : a;
}

function disposeAll(...ts: (Tensor | null | undefined)[]) { for (const t of ts) t?.dispose(); }

// ---- matmul ---------------------------------------------------------------------------------

export interface MatmulShape { M: number; N: number; K: number; transA?: boolean; transB?: boolean }

/** C[M,N] = op(A)·op(B). Checked on 8 rows of C (each row needs one row of op(A) and all of B). */
export function matmulCase(id: string, source: string, s: MatmulShape, dtype: DType = 'f32'): BenchCase {
  const { M, N, K, transA = false, transB = false } = s;
  const aShape = transA ? [K, M] : [M, K], bShape = transB ? [N, K] : [K, N];
  return {
    id: `matmul/${id}`, family: 'matmul', source,
    shape: `${transA ? 'Aᵀ' : 'A'}${dims(aShape)}·${transB ? 'Bᵀ' : 'B'}${dims(bShape)}${dtype === 'f16' ? ' f16' : ''}`,
    flops: 2 * M * N * K, bytes: (dtype === 'f16' ? 2 : F) * (M * K + K * N + M * N),
    setup(gpu) {
      const rng = new Rng(1);
      const A = asStored(rng.array(M * K), dtype), B = asStored(rng.array(K * N), dtype);
      const a = upload(gpu, A, aShape, dtype), b = upload(gpu, B, bShape, dtype);
      const t = pickTile(M);
      return {
        variant: `v2 ${t.TM}×${t.TN}${gpu.hasSubgroups ? ' sg' : ''}`,
        inputs: { A, B },
        run: () => [matmul(a, b, { transA, transB })],
        async validate([c]) {
          const rows = spread(M, 8);
          // Rows of op(A): row r is A[r, :] (or column r of the stored Aᵀ).
          const aRows = new Float32Array(rows.length * K);
          rows.forEach((r, i) => { for (let k = 0; k < K; k++) aRows[i * K + k] = transA ? A[k * M + r]! : A[r * K + k]!; });
          const ref = matmulRef(aRows, B, rows.length, N, K, { transB });
          return compare(`rows ${rows.join(',')}`, takeRows(await c!.read(), N, rows), ref, dtype === 'f16' ? TOL_F16 : TOL_REDUCE);
        },
        dispose: () => disposeAll(a, b),
      };
    },
  };
}

// ---- conv2d ---------------------------------------------------------------------------------

export type ConvPass = 'fwd' | 'dx' | 'dw';

export function convCase(l: ConvLayer, pass: ConvPass, dtype: DType = 'f32'): BenchCase {
  const xShape = [l.N, l.C, l.H, l.W], wShape = [l.K, l.C, l.R, l.R];
  const opts: Conv2dOptions = { stride: l.stride, padding: l.pad };
  const g = convGeometry(xShape, wShape, opts);
  const yShape = [g.N, g.K, g.P, g.Q];
  const nx = g.N * g.C * g.H * g.W, nw = g.K * g.C * g.R * g.S, ny = g.N * g.K * g.P * g.Q;
  const HW = g.H * g.W, PQ = g.P * g.Q, RS = g.R * g.S;
  const bytes = (dtype === 'f16' ? 2 : F) * (pass === 'fwd' ? nx + nw + g.K + ny : pass === 'dx' ? ny + nw + nx : nx + ny + nw);
  const family: Family = `conv2d.${pass}`;
  return {
    id: `${family}/${l.model}.${l.name}`, family,
    source: `${l.model === 'vgg16' ? 'VGG16' : 'ResNet34'} ${l.name}${l.count > 1 ? ` (×${l.count})` : ''}`,
    shape: `x${dims(xShape)} w${dims(wShape)}${l.stride > 1 ? ` s${l.stride}` : ''}${l.pad ? ` p${l.pad}` : ''}${dtype === 'f16' ? ' f16' : ''}`,
    flops: convFlops(g), bytes,
    setup(gpu) {
      const rng = new Rng(2);
      const [X, Wt, B, DY] = [rng.array(nx), rng.array(nw, -0.1, 0.1), rng.array(g.K), rng.array(ny)].map((a) => asStored(a, dtype)) as [Float32Array, Float32Array, Float32Array, Float32Array];
      const x = upload(gpu, X, xShape, dtype), w = upload(gpu, Wt, wShape, dtype), b = upload(gpu, B, [g.K], dtype), dY = upload(gpu, DY, yShape, dtype);
      const tol = dtype === 'f16' ? TOL_F16 : TOL_REDUCE;
      const version = pickVersion(g, pass);
      const tile = pass === 'fwd' ? `${TILE_FWD.tm}×${TILE_FWD.tk}` : pass === 'dx' ? `${TILE_DX.tm}×${TILE_DX.tk}` : `${TILE_DW.ta}×${TILE_DW.tb}`;
      const allN = spread(g.N, g.N), allC = spread(g.C, g.C), allK = spread(g.K, g.K);
      // Images checked: the first and the last (a batch-offset bug shows up in the last one).
      const ns = spread(g.N, 2);
      const inst: CaseInstance = {
        variant: version === 1 ? 'v1' : `v2 ${tile} ${shareMode(gpu)}`,
        inputs: { x: X, w: Wt, b: B, dY: DY },
        run: () => [pass === 'fwd' ? conv2d(x, w, b, opts) : pass === 'dx' ? conv2dBackwardInput(dY, w, xShape, opts) : conv2dBackwardWeight(x, dY, wShape, opts)],
        async validate([out]) {
          const got = await out!.read();
          if (pass === 'fwd') {
            // y[n, k] needs x[n] and w[k] only.
            const ks = spread(g.K, channelsFor(g.C * RS * PQ * ns.length));
            const ref = conv2dRef(take(X, g.C, HW, ns, allC), [ns.length, g.C, g.H, g.W], takeRows(Wt, g.C * RS, ks), [ks.length, g.C, g.R, g.S], pick(B, ks), opts).y;
            return compare(`n∈{${ns}} k∈{${ks}}`, take(got, g.K, PQ, ns, ks), ref, tol);
          }
          if (pass === 'dx') {
            // dX[n, c] needs dY[n] and w[:, c] only.
            const cs = spread(g.C, channelsFor(g.K * RS * PQ * ns.length));
            const ref = conv2dBackwardInputRef(take(DY, g.K, PQ, ns, allK), take(Wt, g.C, RS, allK, cs), [g.K, cs.length, g.R, g.S], [ns.length, cs.length, g.H, g.W], opts);
            return compare(`n∈{${ns}} c∈{${cs}}`, take(got, g.C, HW, ns, cs), ref, tol);
          }
          // dW[k, c] needs x[:, c] and dY[:, k] over the whole batch.
          const per = channelsFor(g.N * RS * PQ, 16);
          const ks = spread(g.K, Math.max(1, Math.floor(Math.sqrt(per)))), cs = spread(g.C, Math.max(1, Math.floor(per / ks.length)));
          const ref = conv2dBackwardWeightRef(take(X, g.C, HW, allN, cs), [g.N, cs.length, g.H, g.W], take(DY, g.K, PQ, allN, ks), [ks.length, cs.length, g.R, g.S], opts);
          return compare(`k∈{${ks}} c∈{${cs}}`, take(got, g.C, RS, ks, cs), ref, tol);
        },
        dispose: () => disposeAll(x, w, b, dY),
      };
      return inst;
    },
  };
}

/** How many channels the reference can afford when one channel costs `perChannel` multiply-adds. */
function channelsFor(perChannel: number, max = 4): number {
  return Math.max(1, Math.min(max, Math.floor(REF_BUDGET / Math.max(1, perChannel))));
}

// ---- max pooling ------------------------------------------------------------------------------

export function poolCase(l: PoolLayer, pass: 'fwd' | 'bwd'): BenchCase {
  const xShape = [l.N, l.C, l.H, l.W];
  const opts: MaxPool2dOptions = { kernel: l.kernel, stride: l.stride, padding: l.pad };
  const refOpts: Pool2dRefOptions = {
    kernel: [l.kernel, l.kernel], stride: [l.stride, l.stride], padding: [l.pad, l.pad, l.pad, l.pad],
    dilation: [1, 1], ceilMode: false, countIncludePad: true,
  };
  const P = Math.floor((l.H + 2 * l.pad - l.kernel) / l.stride) + 1, Q = Math.floor((l.W + 2 * l.pad - l.kernel) / l.stride) + 1;
  const yShape = [l.N, l.C, P, Q];
  const nx = l.N * l.C * l.H * l.W, ny = l.N * l.C * P * Q;
  const family: Family = `pool.${pass}`;
  return {
    id: `${family}/${l.model}.${l.name}`, family,
    source: `${l.model === 'vgg16' ? 'VGG16' : 'ResNet34'} ${l.name}`,
    shape: `x${dims(xShape)} max ${l.kernel}×${l.kernel} s${l.stride}${l.pad ? ` p${l.pad}` : ''}`,
    flops: 0,
    // fwd: x → y + argmax (u32); bwd: dY + argmax → dX.
    bytes: F * (pass === 'fwd' ? nx + 2 * ny : 2 * ny + nx),
    setup(gpu) {
      const rng = new Rng(3);
      const X = rng.array(nx), DY = rng.array(ny);
      const x = upload(gpu, X, xShape), dY = upload(gpu, DY, yShape);
      // The backward routes dY through the forward's argmax.
      const fwd = pass === 'bwd' ? maxPool2d(x, opts) : null;
      fwd?.y.dispose();
      const ns = spread(l.N, 2), allC = spread(l.C, l.C);
      const sub = [ns.length, l.C, l.H, l.W];
      return {
        variant: pass === 'bwd' && poolBackwardVersions(xShape, opts).includes(2) ? 'v2' : 'v1',
        inputs: { x: X, dY: DY },
        run: () => {
          if (pass === 'bwd') return [maxPool2dBackward(dY, fwd!.argmax, xShape, opts)];
          const r = maxPool2d(x, opts);
          return [r.y, r.argmax];
        },
        async validate([out, argmax]) {
          const ref = maxPool2dRef(take(X, l.C, l.H * l.W, ns, allC), sub, refOpts);
          if (pass === 'fwd') {
            const am = await readArgmax(argmax!);
            return worst(
              compare(`y n∈{${ns}}`, take(await out!.read(), l.C, P * Q, ns, allC), ref.y, TOL_MAP),
              compare('argmax', take(am, l.C, P * Q, ns, allC), ref.argmax, 0),
            );
          }
          const dX = maxPool2dBackwardRef(take(DY, l.C, P * Q, ns, allC), ref.argmax, sub, [ns.length, l.C, P, Q]);
          return compare(`dX n∈{${ns}}`, take(await out!.read(), l.C, l.H * l.W, ns, allC), dX, TOL_MAP);
        },
        dispose: () => disposeAll(x, dY, fwd?.argmax),
      };
    },
  };
}

// ---- batch norm (training mode) ---------------------------------------------------------------

export function batchNormCase(l: ActLayer, pass: 'fwd' | 'bwd'): BenchCase {
  const shape = [l.N, l.C, l.H, l.W];
  const n = l.N * l.C * l.H * l.W;
  const family: Family = `batchnorm.${pass}`;
  return {
    id: `${family}/${l.model}.${l.name}`, family,
    source: `${l.model === 'vgg16' ? 'VGG16' : 'ResNet34'} ${l.name}${l.count > 1 ? ` (×${l.count})` : ''}`,
    shape: `x${dims(shape)} train`,
    flops: 0,
    // fwd: x → y; bwd: x + dY → dX (the per-channel vectors are negligible).
    bytes: F * (pass === 'fwd' ? 2 * n : 3 * n),
    setup(gpu) {
      const rng = new Rng(4);
      const X = rng.array(n, -2, 3), DY = rng.array(n);
      const G = rng.array(l.C, 0.5, 1.5), Bt = rng.array(l.C), RM = new Float32Array(l.C), RV = new Float32Array(l.C).fill(1);
      const x = upload(gpu, X, shape), dY = upload(gpu, DY, shape), gamma = upload(gpu, G, [l.C]), beta = upload(gpu, Bt, [l.C]);
      const rm = upload(gpu, RM, [l.C]), rv = upload(gpu, RV, [l.C]);
      const ref = batchNorm2dTrainRef(X, shape, G, Bt, RM, RV);
      // The backward takes the forward's saved statistics: the reference's, rounded to f32.
      const sm = upload(gpu, Float32Array.from(ref.saveMean), [l.C]), sis = upload(gpu, Float32Array.from(ref.saveInvStd), [l.C]);
      return {
        variant: 'v2',
        inputs: { x: X, dY: DY, gamma: G, beta: Bt },
        run: () => {
          if (pass === 'fwd') {
            const r = batchNorm2dTrain(x, gamma, beta, rm, rv);
            return [r.y, r.saveMean, r.saveInvStd];
          }
          const g = batchNorm2dBackward(x, dY, gamma, sm, sis);
          return [g.dX!, g.dGamma!, g.dBeta!];
        },
        async validate([a, b, c]) {
          if (pass === 'fwd') {
            return worst(
              compare('y', await a!.read(), ref.y, TOL_REDUCE),
              compare('mean', await b!.read(), ref.saveMean, TOL_REDUCE),
              compare('invStd', await c!.read(), ref.saveInvStd, TOL_REDUCE),
              compare('runningVar', await rv.read(), ref.runningVar, TOL_REDUCE),
            );
          }
          const g = batchNorm2dBackwardRef(X, shape, DY, G, Float32Array.from(ref.saveMean), Float32Array.from(ref.saveInvStd));
          return worst(
            compare('dX', await a!.read(), g.dX, TOL_REDUCE),
            compare('dGamma', await b!.read(), g.dGamma, TOL_REDUCE),
            compare('dBeta', await c!.read(), g.dBeta, TOL_REDUCE),
          );
        },
        dispose: () => disposeAll(x, dY, gamma, beta, rm, rv, sm, sis),
      };
    },
  };
}

// ---- ReLU -----------------------------------------------------------------------------------

export function reluCase(l: ActLayer, pass: 'fwd' | 'bwd'): BenchCase {
  const shape = [l.N, l.C, l.H, l.W];
  const n = l.N * l.C * l.H * l.W;
  const family: Family = `relu.${pass}`;
  return {
    id: `${family}/${l.model}.${l.name}`, family,
    source: `${l.model === 'vgg16' ? 'VGG16' : 'ResNet34'} ${l.name}${l.count > 1 ? ` (×${l.count})` : ''}`,
    shape: `x${dims(shape)}`,
    flops: 0,
    bytes: F * (pass === 'fwd' ? 2 * n : 3 * n),
    setup(gpu) {
      const rng = new Rng(5);
      const X = rng.array(n), DY = rng.array(n);
      const x = upload(gpu, X, shape), dY = upload(gpu, DY, shape);
      return {
        variant: 'v2',
        inputs: { x: X, dY: DY },
        run: () => [pass === 'fwd' ? relu(x) : reluBackward(x, dY)],
        validate: async ([y]) => compare('all', await y!.read(), pass === 'fwd' ? reluRef(X) : reluBackwardRef(X, DY), TOL_MAP),
        dispose: () => disposeAll(x, dY),
      };
    },
  };
}

// ---- softmax cross-entropy ------------------------------------------------------------------

/** logits [N, K] of a classifier head against class labels; fwd = loss + probs, bwd = (p − y)/N. */
export function softmaxXentCase(id: string, source: string, N: number, K: number, pass: 'fwd' | 'bwd'): BenchCase {
  const family: Family = `softmax-xent.${pass}`;
  return {
    id: `${family}/${id}`, family, source, shape: `logits[${N},${K}]`,
    flops: 0, bytes: F * 2 * N * K,
    setup(gpu) {
      const rng = new Rng(6);
      const L = rng.array(N * K, -4, 4);
      const labels = Uint32Array.from({ length: N }, () => rng.int(K));
      const ref = softmaxCrossEntropyRef(L, labels, K);
      const P = Float32Array.from(ref.probs);
      const logits = upload(gpu, L, [N, K]), probs = upload(gpu, P, [N, K]), lab = labelsTensor(gpu, labels, K);
      return {
        variant: defaultSoftmaxVersion(gpu),
        inputs: { logits: L, probs: P },
        run: () => {
          if (pass === 'bwd') return [softmaxCrossEntropyBackward(probs, lab)];
          const r = softmaxCrossEntropy(logits, lab);
          return [r.loss, r.probs];
        },
        async validate([a, b]) {
          if (pass === 'bwd') return compare('dLogits', await a!.read(), softmaxCrossEntropyBackwardRef(P, labels, K), TOL_MAP);
          return worst(compare('loss', await a!.read(), [ref.loss], TOL_MAP), compare('probs', await b!.read(), ref.probs, TOL_MAP));
        },
        dispose: () => disposeAll(logits, probs, lab),
      };
    },
  };
}

// ---- Adam -----------------------------------------------------------------------------------

/** One AdamW update of an n-element parameter (in place on param, m, v). */
export function adamCase(id: string, source: string, n: number): BenchCase {
  const o: AdamStepOptions = { lr: 1e-3, beta1: 0.9, beta2: 0.99, eps: 1e-5, weightDecay: 0.01, decoupled: true, step: 1 };
  return {
    id: `adam/${id}`, family: 'adam', source, shape: `param[${n}]`,
    // Reads p, g, m, v; writes p, m, v.
    flops: 0, bytes: F * 7 * n,
    setup(gpu) {
      const rng = new Rng(7);
      const P0 = rng.array(n), G = rng.array(n);
      const p = upload(gpu, P0, [n]), g = upload(gpu, G, [n]), m = Tensor.zeros(gpu, [n]), v = Tensor.zeros(gpu, [n]);
      return {
        variant: 'v2',
        inputs: { param: P0, grad: G },
        run: () => { adamStep(p, g, m, v, o); return []; },
        async validate() {
          const pr = Float64Array.from(P0), mr = new Float64Array(n), vr = new Float64Array(n);
          adamStepRef(pr, G, mr, vr, o);
          // NOTE: the update (~lr) is tiny next to p, so compare the update itself, not p: an error in
          // it would vanish in |p|. p_gpu − p0 carries f32 rounding of p (~1e-7·|p|), hence 1e-3.
          const got = await p.read();
          const du = Float64Array.from(got, (x, i) => x - P0[i]!), dr = Float64Array.from(pr, (x, i) => x - P0[i]!);
          return worst(
            compare('Δparam', du, dr, 1e-3),
            compare('m', await m.read(), mr, TOL_MAP),
            compare('v', await v.read(), vr, TOL_MAP),
          );
        },
        dispose: () => disposeAll(p, g, m, v),
      };
    },
  };
}
