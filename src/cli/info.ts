// `wgtrain info`: the WebGPU adapter wgtrain will use, its limits and features, and what the
// autotuner has measured on it.

import { createGpu } from '../gpu/device.js';
import { fileTuneStore } from '../data/node.js';

export async function infoCommand(opts: { json?: boolean }) {
  const gpu = await createGpu();
  const l = gpu.limits;
  const info = {
    adapter: gpu.adapterName,
    features: [...gpu.features].sort(),
    limits: {
      maxStorageBufferBindingSize: Number(l.maxStorageBufferBindingSize),
      maxBufferSize: Number(l.maxBufferSize),
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
    },
  };
  const store = fileTuneStore();
  const table = await store.load(gpu.adapterName);
  const tuned = Object.entries(table?.entries ?? {});
  const changed = tuned.filter(([, e]) => e.pick !== e.candidates[0]).length;
  Object.assign(info, { autotune: { file: store.where, classes: tuned.length, nonDefault: changed } });
  gpu.destroy();
  if (opts.json) { process.stdout.write(`${JSON.stringify(info)}\n`); return; }
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
  process.stdout.write(
    `adapter:  ${info.adapter}\n` +
    `binding:  ${mib(info.limits.maxStorageBufferBindingSize)} max storage binding, ${mib(info.limits.maxBufferSize)} max buffer\n` +
    `compute:  ${info.limits.maxComputeInvocationsPerWorkgroup} invocations/workgroup, ${info.limits.maxComputeWorkgroupStorageSize} B workgroup storage\n` +
    `features: ${info.features.join(', ')}\n` +
    `autotune: ${tuned.length} kernel shape classes measured on this adapter (${changed} run a variant other than the heuristic default); ${store.where}\n`,
  );
}
