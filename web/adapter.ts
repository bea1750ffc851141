// Chromium's WebGPU quirks, now handled by the engine itself:
//   - src/gpu/device.ts keeps the GPUAdapter alive with the Gpu (Chromium loses the device once its
//     adapter is garbage-collected);
//   - src/kernels/conv2d.ts `pickVersion` uses the naive v1 convolutions on SwiftShader, whose shader
//     compiler never finishes the tiled v2 ones.
// What is left here only tells the user about the second.

import type { Gpu } from '../src/gpu/device.js';

/** True (and the page says why convolutions are slower) on Chromium's software adapter. */
export function avoidTiledConv(gpu: Gpu): boolean {
  return /swiftshader/i.test(gpu.adapterName);
}
