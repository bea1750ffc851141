// Chromium's WebGPU quirks, now handled by the engine itself:
//   - src/gpu/device.ts keeps the GPUAdapter alive with the Gpu (Chromium loses the device once its
//     adapter is garbage-collected);
//   - src/kernels/conv2d.ts `pickVersion` uses the naive v1 convolutions on SwiftShader, whose shader
//     compiler never finishes the tiled v2 ones.
// What is left here tells the user about the second, and turns on autotuning with its IndexedDB table.

import type { Gpu } from '../src/gpu/device.js';
import { hasIndexedDb, idbTuneStore } from './store.js';

/**
 * Autotuning in the browser: measure new shape classes ('auto') and keep the table in IndexedDB,
 * when the page has it; otherwise tune for this page's lifetime only.
 */
export async function enableTuning(gpu: Gpu, log: (s: string) => void): Promise<void> {
  gpu.tuner.mode = 'auto';
  if (!hasIndexedDb()) return;
  try {
    await gpu.tuner.attach(idbTuneStore());
    const n = Object.keys(gpu.tuner.table().entries).length;
    if (n) log(`autotuning: ${n} kernel shape class${n === 1 ? '' : 'es'} measured earlier on this adapter (IndexedDB)`);
  } catch (e) {
    log(`autotuning table not loaded from IndexedDB (${(e as Error).message}); tuning for this page only`);
  }
}

/** True (and the page says why convolutions are slower) on Chromium's software adapter. */
export function avoidTiledConv(gpu: Gpu): boolean {
  return /swiftshader/i.test(gpu.adapterName);
}
