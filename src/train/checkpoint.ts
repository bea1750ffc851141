// Checkpoints: one self-describing file in the safetensors layout, portable between Node and the
// browser (and readable by PyTorch's `safetensors.torch.load_file`):
//
//   [8 bytes: header length L, little-endian u64] [L bytes: JSON header] [raw little-endian tensors]
//   header = { "<name>": { "dtype": "F32", "shape": [...], "data_offsets": [begin, end] }, …,
//              "__metadata__": { "wgtrain": "<JSON string: WgtrainMeta>" } }
//
// Tensor names: the model's state_dict names (`layer3.1.conv2.weight`, `bn1.running_mean`) and the
// optimizer's state as `optim.<param name>.m` / `.v` — keyed by name, so a checkpoint taken with the
// base frozen (no state for it) resumes correctly after unfreezing. safetensors metadata values must
// be strings, so ours is one JSON string.

import type { Gpu } from '../gpu/device.js';
import { Tensor } from '../gpu/tensor.js';
import type { Module } from '../nn/module.js';
import type { Optimizer } from '../optim/optimizer.js';
import type { EpochRecord } from './learner.js';

export const CHECKPOINT_FORMAT = 1;

export interface Preprocessing {
  size: number;
  channelOrder: 'RGB';
  mean: [number, number, number];
  std: [number, number, number];
  /** Eval resize: shorter side to size/resizeRatio before the centre crop (torchvision 0.875). */
  resizeRatio?: number;
}

export interface WgtrainMeta {
  format: number;
  /** What was trained: the source model's path/name and hash, so a mismatched resume is refused. */
  model: { source: string; hash?: string; family?: string };
  classes: string[];
  preprocessing: Preprocessing;
  /** Where training stands: stage, epochs of it done, and the run's plan (to resume it exactly). */
  progress: { stage: 'head' | 'unfrozen' | 'fit'; epoch: number; done: boolean };
  plan: Record<string, unknown>;
  /** Names of parameters that were trainable when the checkpoint was written. */
  trainable: string[];
  optimizer: { kind: string; steps: Record<string, number>; groups: { name: string; lr: number }[] };
  rng?: Record<string, unknown>;
  history: EpochRecord[];
  split?: unknown;
  createdAt: string;
}

export interface CheckpointTensor { name: string; shape: number[]; data: Float32Array }

/** Serialises tensors + metadata to safetensors bytes. */
export function encodeSafetensors(tensors: readonly CheckpointTensor[], meta: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: meta };
  let offset = 0;
  const seen = new Set<string>();
  for (const t of tensors) {
    if (seen.has(t.name)) throw new Error(`checkpoint: duplicate tensor name '${t.name}'`);
    seen.add(t.name);
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new Error(`checkpoint: '${t.name}' has shape [${t.shape}] but ${t.data.length} values`);
    header[t.name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + n * 4] };
    offset += n * 4;
  }
  let json = JSON.stringify(header);
  // NOTE: pad the header with spaces so the tensor data starts 8-byte aligned (the format allows it
  // and it lets readers view the data as Float32Array without copying).
  json += ' '.repeat((8 - ((8 + new TextEncoder().encode(json).length) % 8)) % 8);
  const hbytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + hbytes.length + offset);
  const dv = new DataView(out.buffer);
  dv.setBigUint64(0, BigInt(hbytes.length), true);
  out.set(hbytes, 8);
  let p = 8 + hbytes.length;
  for (const t of tensors) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), p);
    p += t.data.byteLength;
  }
  return out;
}

/** Parses safetensors bytes (F32 tensors only). Errors say what is wrong with the file. */
export function decodeSafetensors(bytes: Uint8Array): { tensors: Map<string, CheckpointTensor>; meta: Record<string, string> } {
  if (bytes.length < 8) throw new Error('not a checkpoint: file shorter than 8 bytes');
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const hlen = Number(dv.getBigUint64(0, true));
  if (hlen <= 0 || 8 + hlen > bytes.length) throw new Error('not a checkpoint (safetensors header length is out of range)');
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + hlen)));
  } catch {
    throw new Error('not a checkpoint (its header is not JSON)');
  }
  const base = 8 + hlen;
  const tensors = new Map<string, CheckpointTensor>();
  let meta: Record<string, string> = {};
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') { meta = v as Record<string, string>; continue; }
    const e = v as { dtype: string; shape: number[]; data_offsets: [number, number] };
    if (e.dtype !== 'F32') throw new Error(`checkpoint tensor '${name}' has dtype ${e.dtype}; wgtrain checkpoints hold F32 only`);
    const [b, f] = e.data_offsets;
    if (!(b >= 0 && f >= b && base + f <= bytes.length)) throw new Error(`checkpoint is truncated: tensor '${name}' lies past the end of the file`);
    const n = e.shape.reduce((a, c) => a * c, 1);
    if (n * 4 !== f - b) throw new Error(`checkpoint tensor '${name}': shape [${e.shape}] does not match its ${f - b} bytes`);
    // Copy: the source may be unaligned and is usually dropped right after loading.
    const data = new Float32Array(n);
    new Uint8Array(data.buffer).set(bytes.subarray(base + b, base + f));
    tensors.set(name, { name, shape: e.shape, data });
  }
  return { tensors, meta };
}

/** Reads the model's state_dict and the optimizer's state back from the GPU. */
export async function collectTensors(model: Module, optimizer: Optimizer | null): Promise<CheckpointTensor[]> {
  const out: CheckpointTensor[] = [];
  for (const [name, t] of model.stateDict()) out.push({ name, shape: [...t.shape], data: await t.read() });
  if (optimizer) {
    for (const [name, t] of optimizer.stateTensors().tensors) out.push({ name: `optim.${name}`, shape: [...t.shape], data: await t.read() });
  }
  return out;
}

/** Builds checkpoint bytes for a model (+ optimizer) and metadata. */
export async function saveCheckpoint(model: Module, optimizer: Optimizer | null, meta: Omit<WgtrainMeta, 'format' | 'createdAt' | 'trainable' | 'optimizer'>): Promise<Uint8Array> {
  const full: WgtrainMeta = {
    ...meta,
    format: CHECKPOINT_FORMAT,
    createdAt: new Date().toISOString(),
    trainable: model.namedParameters().filter(([, p]) => p.trainable).map(([n]) => n),
    optimizer: optimizer
      ? { kind: optimizer.kind, steps: optimizer.stateTensors().steps, groups: optimizer.groups.map((g) => ({ name: g.name, lr: g.lr })) }
      : { kind: 'none', steps: {}, groups: [] },
  };
  return encodeSafetensors(await collectTensors(model, optimizer), { wgtrain: JSON.stringify(full) });
}

export function checkpointMeta(bytes: Uint8Array): WgtrainMeta {
  const { meta } = decodeSafetensors(bytes);
  return parseMeta(meta);
}

function parseMeta(meta: Record<string, string>): WgtrainMeta {
  if (!meta.wgtrain) throw new Error('this safetensors file is not a wgtrain checkpoint (no wgtrain metadata); pass the checkpoint.safetensors written by `wgtrain finetune`');
  const m = JSON.parse(meta.wgtrain) as WgtrainMeta;
  if (m.format !== CHECKPOINT_FORMAT) throw new Error(`checkpoint format ${m.format} is not supported by this wgtrain (format ${CHECKPOINT_FORMAT})`);
  return m;
}

/**
 * Loads a checkpoint into a model (and optimizer): every state_dict entry must be present with its
 * shape — a mismatch names the first offending tensors and says why (a different model or class
 * count). Parameter trainable flags are restored.
 */
export function loadCheckpoint(gpu: Gpu, bytes: Uint8Array, model: Module, optimizer: Optimizer | null): WgtrainMeta {
  const { tensors, meta } = decodeSafetensors(bytes);
  const m = parseMeta(meta);
  const problems: string[] = [];
  const sd = model.stateDict();
  for (const [name, t] of sd) {
    const c = tensors.get(name);
    if (!c) problems.push(`'${name}' is missing`);
    else if (c.shape.join(',') !== t.shape.join(',')) problems.push(`'${name}' is [${c.shape}] in the checkpoint but [${t.shape}] in the model`);
  }
  const extra = [...tensors.keys()].filter((n) => !n.startsWith('optim.') && !sd.some(([s]) => s === n));
  if (extra.length) problems.push(`${extra.length} tensors the model does not have (e.g. '${extra[0]}')`);
  if (problems.length) {
    throw new Error(`checkpoint does not match this model: ${problems.slice(0, 3).join('; ')}${problems.length > 3 ? ` (+${problems.length - 3} more)` : ''} — was it written for another model or class count?`);
  }
  for (const [name, t] of sd) t.write(tensors.get(name)!.data);
  const trainable = new Set(m.trainable);
  for (const [name, p] of model.namedParameters()) p.trainable = trainable.has(name);
  if (optimizer) {
    const st: [string, Tensor][] = [];
    for (const [name, c] of tensors) {
      if (name.startsWith('optim.')) st.push([name.slice(6), Tensor.from(gpu, c.data, c.shape)]);
    }
    optimizer.loadState({ tensors: st, steps: m.optimizer.steps });
    for (const [, t] of st) t.dispose();
  }
  return m;
}
