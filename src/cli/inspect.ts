// `wgtrain inspect M.onnx`: what is in an ONNX file, as the engine sees it — producer, opset, op
// histogram, input/output shapes, parameters, layer groups, detected family, whether BatchNorm was
// folded away (then BN cannot train), and the largest tensor against the adapter's binding limit.

import { existsSync, statSync } from 'node:fs';
import { getGpu } from '../gpu/device.js';
import { readModel } from '../onnx/reader.js';
import { importModel } from '../onnx/import.js';
import { groupParameters } from '../nn/groups.js';
import { UserError } from './errors.js';

export async function inspectCommand(path: string, flags: { json?: boolean }) {
  if (!existsSync(path)) throw new UserError(`model file '${path}' does not exist`);
  if (statSync(path).isDirectory()) throw new UserError(`'${path}' is a folder: pass the .onnx file inside it`);
  const onnx = await readModel(path);
  const gpu = await getGpu();
  const m = importModel(gpu, onnx);
  const ops: Record<string, number> = {};
  for (const n of m.graph.nodes) ops[n.onnxOp] = (ops[n.onnxOp] ?? 0) + 1;
  const params = m.namedParameters();
  let largest = { name: '', bytes: 0, shape: [] as number[] };
  for (const [n, t] of m.stateDict()) if (t.size * 4 > largest.bytes) largest = { name: n, bytes: t.size * 4, shape: [...t.shape] };
  const groups = groupParameters(m).map((g, i) => ({ group: i, tensors: g.length, parameters: g.reduce((s, [, p]) => s + p.size, 0), first: g[0]?.[0] ?? null, last: g.at(-1)?.[0] ?? null }));
  const shape = (v: { shape: (number | string)[] | null }) => (v.shape ? v.shape.map(String) : null);
  const info = {
    file: path, producer: `${onnx.producerName} ${onnx.producerVersion}`.trim(), irVersion: onnx.irVersion, opset: m.opset,
    family: m.family, batchNorm: m.hasBatchNorm ? 'present (trainable)' : 'absent or folded into convolutions (BatchNorm cannot train)',
    inputs: m.graph.inputs.map((v) => ({ name: v.name, shape: shape(v) })), outputs: m.graph.outputs.map((v) => ({ name: v.name, shape: shape(v) })),
    ops, nodes: m.graph.nodes.length, parameters: m.numParameters(), parameterTensors: params.length,
    layerGroups: groups, metadata: onnx.metadata,
    largestTensor: { ...largest, bindingLimit: gpu.maxBinding, fitsOneBinding: largest.bytes <= gpu.maxBinding },
    adapter: gpu.adapterName,
  };
  m.dispose(); gpu.destroy();
  if (flags.json) { process.stdout.write(`${JSON.stringify(info)}\n`); return; }
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
  process.stdout.write([
    `${path}: ${info.family === 'other' ? 'CNN' : info.family} (producer ${info.producer || 'unknown'}, IR ${info.irVersion}, opset ${info.opset})`,
    `inputs:  ${info.inputs.map((v) => `${v.name} [${v.shape?.join(', ') ?? '?'}]`).join(', ')}`,
    `outputs: ${info.outputs.map((v) => `${v.name} [${v.shape?.join(', ') ?? '?'}]`).join(', ')}`,
    `ops:     ${Object.entries(ops).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ')}`,
    `params:  ${info.parameters.toLocaleString('en-US')} in ${info.parameterTensors} tensors`,
    `BN:      ${info.batchNorm}`,
    ...groups.map((g) => `group ${g.group}: ${g.parameters.toLocaleString('en-US')} parameters (${g.first} … ${g.last})`),
    `largest: ${largest.name} [${largest.shape.join(', ')}] ${mib(largest.bytes)} vs binding limit ${mib(gpu.maxBinding)}${info.largestTensor.fitsOneBinding ? '' : ' (split across bindings)'}`,
    ...Object.entries(onnx.metadata).map(([k, v]) => `meta:    ${k} = ${v.length > 100 ? `${v.slice(0, 100)}…` : v}`),
  ].join('\n') + '\n');
}
