// Which cases run: the full suite (VGG16 / ResNet34 layers at 224×224, the end-to-end step at 64 and
// 224) or --quick (the same families at 56×56, small heads, one small end-to-end model), both
// narrowed by --filter.

import type { DType } from '../gpu/tensor.js';
import type { Tile } from '../kernels/matmul.js';
import type { E2eCase } from './e2e.js';
import {
  adamCase, batchNormCase, convCase, matmulCase, poolCase, reluCase, softmaxXentCase, type ConvPass,
} from './kernels.js';
import { denseLayers, resnet34Convs, resnet34Norms, resnet34Pools, vgg16Acts, vgg16Convs, vgg16Pools } from './shapes.js';
import type { TimeOptions } from './timing.js';
import type { BenchCase } from './types.js';

export interface SuiteConfig {
  /** Input size the layer tables are taken at, and the batch of the conv/pool/BN/ReLU cases. */
  size: number;
  batch: number;
  /** Rows of the classifier-head cases (dense layers, softmax cross-entropy). */
  headBatch: number;
  /** Side of the square matmul case (the 1024² comparison point). */
  matmul: number;
  /** Adam cases: [id, source, elements]. */
  adam: [string, string, number][];
  roofline: { matmulSize: number; tiles: Tile[]; copyBytes: number };
  time: Omit<TimeOptions, 'method'>;
  e2e: E2eCase[];
  e2eSteps: number;
  e2eWarmup: number;
}

const CLASSES = 1000;

/** The suite's configuration. `batch` is the end-to-end batch (the "batch configurable"). */
export function suiteConfig(quick: boolean, e2eBatch?: number): SuiteConfig {
  if (quick) {
    const b = e2eBatch ?? 4;
    return {
      size: 56, batch: 2, headBatch: 16, matmul: 512,
      adam: [['resnet34.layer4.1.conv1.weight', 'ResNet34 layer4.1.conv1.weight', 512 * 512 * 9]],
      roofline: { matmulSize: 512, tiles: [], copyBytes: 16 * 2 ** 20 },
      time: { samples: 3, targetMs: 10, maxReps: 32 },
      e2e: [
        { model: 'smallcnn', size: 32, batch: e2eBatch ?? 32, frozen: false, classes: 10 },
        { model: 'resnet34', size: 32, batch: b, frozen: true, classes: 10 },
        { model: 'resnet34', size: 32, batch: b, frozen: false, classes: 10 },
      ],
      e2eSteps: 2, e2eWarmup: 2,
    };
  }
  const b = e2eBatch ?? 4;
  const e2e: E2eCase[] = [{ model: 'smallcnn', size: 32, batch: e2eBatch ?? 32, frozen: false, classes: 10 }];
  for (const model of ['resnet34', 'vgg16'] as const) {
    for (const size of [64, 224]) {
      for (const frozen of [true, false]) e2e.push({ model, size, batch: b, frozen, classes: 10 });
    }
  }
  return {
    size: 224, batch: 1, headBatch: 64, matmul: 1024,
    adam: [
      ['resnet34.layer4.1.conv1.weight', 'ResNet34 layer4.1.conv1.weight', 512 * 512 * 9],
      ['vgg16.classifier.3.weight', 'VGG16 classifier.3.weight', 4096 * 4096],
    ],
    roofline: {
      matmulSize: 1024,
      tiles: [{ TM: 8, TN: 4, KB: 4, GM: 2, GN: 4 }, { TM: 16, TN: 4, KB: 8, GM: 2, GN: 4 }],
      copyBytes: 64 * 2 ** 20,
    },
    time: { samples: 5, targetMs: 30, maxReps: 64 },
    e2e, e2eSteps: 3, e2eWarmup: 2,
  };
}

/**
 * Every kernel case of a configuration, families in the order. With f16 storage only the
 * families that have it (matmul, conv2d) — the others are f32-only kernels.
 */
export function kernelCases(c: SuiteConfig, dtype: DType = 'f32'): BenchCase[] {
  const { size: s, batch: N, headBatch: HB } = c;
  const out: BenchCase[] = [];
  out.push(matmulCase(`${c.matmul}`, `square ${c.matmul}³`, { M: c.matmul, N: c.matmul, K: c.matmul }, dtype));
  for (const d of denseLayers(HB, CLASSES)) {
    const src = `${d.model === 'vgg16' ? 'VGG16' : 'ResNet34'} ${d.name}`;
    out.push(matmulCase(`${d.model}.${d.name}.fwd`, `${src} y = x·Wᵀ`, { M: d.N, N: d.K, K: d.C, transB: true }, dtype));
    out.push(matmulCase(`${d.model}.${d.name}.dW`, `${src} dW = dYᵀ·x`, { M: d.K, N: d.C, K: d.N, transA: true }, dtype));
  }
  const convs = [...vgg16Convs(s, N), ...resnet34Convs(s, N)];
  for (const pass of ['fwd', 'dx', 'dw'] as ConvPass[]) for (const l of convs) out.push(convCase(l, pass, dtype));
  if (dtype === 'f16') return out;
  const pools = [...vgg16Pools(s, N), ...resnet34Pools(s, N)];
  for (const pass of ['fwd', 'bwd'] as const) for (const l of pools) out.push(poolCase(l, pass));
  for (const pass of ['fwd', 'bwd'] as const) for (const l of resnet34Norms(s, N)) out.push(batchNormCase(l, pass));
  for (const pass of ['fwd', 'bwd'] as const) for (const l of vgg16Acts(s, N)) out.push(reluCase(l, pass));
  for (const pass of ['fwd', 'bwd'] as const) out.push(softmaxXentCase(`head${HB}x${CLASSES}`, `classifier output, batch ${HB}`, HB, CLASSES, pass));
  for (const [id, src, n] of c.adam) out.push(adamCase(id, src, n));
  return out;
}
