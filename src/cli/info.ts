// `wgtrain info`: the WebGPU adapter wgtrain will use, its limits and features.

import { createGpu } from '../gpu/device.js';

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
  gpu.destroy();
  if (opts.json) { process.stdout.write(`${JSON.stringify(info)}\n`); return; }
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
  process.stdout.write(
    `adapter:  ${info.adapter}\n` +
    `binding:  ${mib(info.limits.maxStorageBufferBindingSize)} max storage binding, ${mib(info.limits.maxBufferSize)} max buffer\n` +
    `compute:  ${info.limits.maxComputeInvocationsPerWorkgroup} invocations/workgroup, ${info.limits.maxComputeWorkgroupStorageSize} B workgroup storage\n` +
    `features: ${info.features.join(', ')}\n`,
  );
}
