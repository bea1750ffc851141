// ONNX reader: serialized ModelProto bytes -> plain TypeScript objects (no Long, no protobufjs classes,
// no views into the file buffer). Nothing here interprets operators; normalize.ts does.
//
//   decodeModel(bytes)              pure, synchronous, works in the browser; tensors stored as EXTERNAL
//                                   data come back with `external` set and no data yet
//   loadExternalData(model, read)   fills those from an injected reader (a File map in the browser)
//   readModel(pathOrBytes, opts)    the Node entry point: file (read in chunks) + external data
//   readTensorProto(bytes)          one TensorProto (the backend tests' input_K.pb / output_K.pb)
//
// Tensor data, by ONNX data type (TensorValues):
//   FLOAT, FLOAT16, BFLOAT16, DOUBLE          -> Float32Array (the engine computes in f32; dataType keeps
//                                                what the file stored, so a caller can tell)
//   INT32, INT16, INT8, UINT16, UINT8, BOOL   -> Int32Array (BOOL as 0/1)
//   INT64, UINT32, UINT64                     -> number[] (checked to fit a JS number exactly)
//   anything else (STRING, COMPLEX*, FLOAT8*, 4-bit) -> OnnxError naming the tensor and its type
// Where the bytes come from, in the order ONNX prescribes: external file (data_location = EXTERNAL), else
// raw_data when present, else the typed field (float_data, int32_data, int64_data, double_data,
// uint64_data). raw_data is little-endian, fixed width.

import {
  AttributeType,
  DataLocation,
  DataType,
  dataTypeName,
  decodeModelProto,
  decodeTensorProto,
  hasField,
  type AttributeProto,
  type GraphProto,
  type Int64,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from './schema.js';

// ---- public types -----------------------------------------------------------------------------

/** An error in an ONNX file or an unsupported feature in it; the message is one line saying what to do. */
export class OnnxError extends Error {
  override name = 'OnnxError';
  // NOTE: always one line — names quoted from a damaged file may contain newlines.
  constructor(message: string) { super(message.replace(/[\r\n]+/g, ' ')); }
}

export type TensorValues = Float32Array | Int32Array | number[];

/** Where a tensor's bytes live when the model stores them outside the .onnx file. */
export interface ExternalRef {
  /** Path relative to the model file's directory (validated: no absolute paths, no `..`). */
  location: string;
  /** Byte offset in that file. */
  offset: number;
  /** Byte count; null when the file does not say (then it is numel × element size). */
  length: number | null;
}

export interface OnnxTensor {
  name: string;
  /** Shape; [] for a scalar. */
  dims: number[];
  /** ONNX DataType code as stored in the file (FLOAT16 stays FLOAT16 here even though data is f32). */
  dataType: number;
  data: TensorValues;
  /** Set when the bytes came (or still have to come) from an external file. */
  external?: ExternalRef;
}

/** A dimension of a declared shape: a size, a symbolic name (dim_param), or null when unknown. */
export type DeclaredDim = number | string | null;

export interface ValueInfo {
  name: string;
  /** Which TypeProto variant: CNN graphs only use 'tensor'. */
  kind: 'tensor' | 'sparse_tensor' | 'sequence' | 'map' | 'optional' | 'opaque' | 'unknown';
  /** Element DataType code; 0 when not declared. */
  elemType: number;
  /** null when the rank is unknown (no shape in the file). */
  shape: DeclaredDim[] | null;
}

/** An attribute value, tagged with its ONNX attribute type (so an exporter can write it back as it was). */
export type AttrValue =
  | { type: 'float'; value: number }
  | { type: 'int'; value: number }
  | { type: 'string'; value: string }
  | { type: 'tensor'; value: OnnxTensor }
  | { type: 'floats'; value: number[] }
  | { type: 'ints'; value: number[] }
  | { type: 'strings'; value: string[] }
  | { type: 'tensors'; value: OnnxTensor[] }
  /** Subgraphs, sparse tensors, type protos: kept only as a marker (no CNN op needs them). */
  | { type: 'unsupported'; protoType: number };

export interface OnnxNode {
  /** May be '' (ONNX does not require node names). */
  name: string;
  opType: string;
  /** '' for the default ONNX domain ('ai.onnx' is mapped to ''). */
  domain: string;
  /** Value names; '' marks an omitted optional input/output. */
  inputs: string[];
  outputs: string[];
  attrs: Record<string, AttrValue>;
}

export interface OnnxGraph {
  name: string;
  /** In file order (normalize() checks and establishes topological order). */
  nodes: OnnxNode[];
  initializers: Map<string, OnnxTensor>;
  /** Real inputs only: names that are also initializers are dropped (IR ≤ 3 lists every weight here). */
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  /** Declared types/shapes of intermediate values (graph.value_info), by name. */
  valueInfo: Map<string, ValueInfo>;
}

export interface OnnxModel {
  irVersion: number;
  producerName: string;
  producerVersion: string;
  /** Operator set version by domain; '' is the default ONNX domain. */
  opsets: Map<string, number>;
  metadata: Record<string, string>;
  graph: OnnxGraph;
}

/** Reads `length` bytes at `offset` of the external file `location` (relative to the model's folder). */
export type ExternalDataReader = (location: string, offset: number, length: number) => Promise<Uint8Array>;

export interface ReadModelOptions {
  /** Folder that external-data locations are relative to; defaults to the model file's folder. */
  baseDir?: string;
  /** Custom source of external data (e.g. the browser); defaults to the file system under baseDir. */
  readExternal?: ExternalDataReader;
  /** Do not load external data: tensors keep `external` and empty data (enough for `inspect`). */
  skipExternalData?: boolean;
}

// ---- entry points -----------------------------------------------------------------------------

/**
 * Decodes a serialized model. Pure and synchronous: no file system. Tensors stored as external data
 * come back with `external` set and zero-length data; use loadExternalData (or readModel) to fill them.
 */
export function decodeModel(bytes: Uint8Array): OnnxModel {
  let proto: ModelProto;
  try {
    proto = decodeModelProto(bytes);
  } catch (e) {
    throw new OnnxError(`not an ONNX model (${(e as Error).message}; ${bytes.byteLength} bytes): ` +
      'expected a serialized onnx.ModelProto; the file may be truncated or of another format');
  }
  if (!proto.graph || !hasField(proto, 'graph')) {
    throw new OnnxError(`not an ONNX model (no graph in ${bytes.byteLength} bytes): ` +
      'expected a serialized onnx.ModelProto; the file may be truncated or of another format');
  }
  const opsets = new Map<string, number>();
  for (const o of proto.opset_import ?? []) {
    opsets.set(canonicalDomain(o.domain ?? ''), int64ToNumber(o.version ?? 0, 'opset_import.version'));
  }
  const metadata: Record<string, string> = {};
  for (const kv of proto.metadata_props ?? []) metadata[kv.key ?? ''] = kv.value ?? '';
  return {
    irVersion: int64ToNumber(proto.ir_version ?? 0, 'ir_version'),
    producerName: proto.producer_name ?? '',
    producerVersion: proto.producer_version ?? '',
    opsets,
    metadata,
    graph: convertGraph(proto.graph),
  };
}

/** Decodes one serialized TensorProto (input_K.pb / output_K.pb of the ONNX backend tests). */
export function readTensorProto(bytes: Uint8Array): OnnxTensor {
  let proto: TensorProto;
  try {
    proto = decodeTensorProto(bytes);
  } catch (e) {
    throw new OnnxError(`not an ONNX TensorProto (${(e as Error).message}): the file may be truncated`);
  }
  const t = convertTensor(proto);
  if (t.external) throw new OnnxError(`tensor '${t.name}' refers to external data, which a lone TensorProto cannot resolve`);
  return t;
}

/** Tensors (initializers and attribute tensors) whose data still has to be read from an external file. */
export function pendingExternalTensors(model: OnnxModel): OnnxTensor[] {
  const out: OnnxTensor[] = [];
  const visit = (t: OnnxTensor) => { if (isPendingExternal(t)) out.push(t); };
  for (const t of model.graph.initializers.values()) visit(t);
  for (const n of model.graph.nodes) {
    for (const a of Object.values(n.attrs)) {
      if (a.type === 'tensor') visit(a.value);
      else if (a.type === 'tensors') a.value.forEach(visit);
    }
  }
  return out;
}

/** True for a tensor whose data lives in an external file and has not been loaded yet. */
export function isPendingExternal(t: OnnxTensor): boolean {
  return t.external !== undefined && t.data.length === 0 && numel(t.dims) > 0;
}

/** Fills every pending external tensor of `model` through `read`. */
export async function loadExternalData(model: OnnxModel, read: ExternalDataReader): Promise<void> {
  for (const t of pendingExternalTensors(model)) {
    const ref = t.external!;
    const want = numel(t.dims) * bytesPerElement(t.name, t.dataType);
    if (ref.length !== null && ref.length !== want) {
      throw new OnnxError(`tensor '${t.name}' (${dataTypeName(t.dataType)} [${t.dims}]) has external length ` +
        `${ref.length} bytes but its shape needs ${want}: the model and '${ref.location}' do not match`);
    }
    const bytes = await read(ref.location, ref.offset, want);
    if (bytes.byteLength !== want) {
      throw new OnnxError(`tensor '${t.name}': '${ref.location}' gave ${bytes.byteLength} bytes at offset ` +
        `${ref.offset}, expected ${want}: the data file is truncated or belongs to another model`);
    }
    t.data = decodeRaw(t.name, t.dataType, bytes, numel(t.dims));
  }
}

/**
 * Node entry point: reads a model from a path (in chunks; the file may be large) or from bytes, and
 * loads its external data from `baseDir` (default: the model file's folder).
 */
export async function readModel(src: string | Uint8Array, opts: ReadModelOptions = {}): Promise<OnnxModel> {
  let bytes: Uint8Array;
  let baseDir = opts.baseDir;
  if (typeof src === 'string') {
    const path = await import('node:path');
    bytes = await readFileRange(src, 0, null, `ONNX model '${src}'`, 'check the path', MAX_PROTOBUF);
    baseDir ??= path.dirname(path.resolve(src));
  } else {
    bytes = src;
  }
  const model = decodeModel(bytes);
  if (opts.skipExternalData) return model;
  const pending = pendingExternalTensors(model);
  if (pending.length === 0) return model;
  let read = opts.readExternal;
  if (!read) {
    if (baseDir === undefined) {
      throw new OnnxError(`the model stores ${pending.length} tensors in external file ` +
        `'${pending[0]!.external!.location}': pass the model's path, or baseDir (the folder holding that file)`);
    }
    read = nodeExternalReader(baseDir);
  }
  await loadExternalData(model, read);
  return model;
}

// ---- Node file access (the only part that needs `fs`; imported lazily so browsers never load it) --

/** Largest single read: Node refuses reads above 2 GiB, and smaller chunks keep progress responsive. */
const CHUNK = 256 * 1024 * 1024;
/** Protobuf messages cannot exceed 2 GiB: bigger models keep their weights as external data. */
const MAX_PROTOBUF = 2 ** 31 - 1;

/**
 * Reads bytes [offset, offset + length) of a file into one preallocated array, in chunks (length null:
 * to the end). NOTE: not readFileSync: that fails above 2 GiB, and a Buffer from Node's pool would be
 * shared with unrelated data.
 */
async function readFileRange(
  file: string, offset: number, length: number | null, what: string, ifMissing = 'check the path', maxBytes = Infinity,
): Promise<Uint8Array> {
  const fs = await import('node:fs/promises');
  let fh;
  try {
    fh = await fs.open(file, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new OnnxError(`${what} not found: ${ifMissing}`);
    throw new OnnxError(`${what} cannot be opened (${code ?? (e as Error).message})`);
  }
  try {
    const size = (await fh.stat()).size;
    const n = length ?? size - offset;
    if (n > maxBytes) {
      throw new OnnxError(`${what} has ${size} bytes, more than a protobuf can hold (2 GiB): it is not a single-file ` +
        'ONNX model; export with external data (torch.onnx.export does so above 2 GiB)');
    }
    if (offset + n > size) {
      throw new OnnxError(`${what} is too short: bytes [${offset}, ${offset + n}) were asked for but it has ` +
        `${size}; the data file is truncated or belongs to another model`);
    }
    const out = new Uint8Array(n);
    for (let pos = 0; pos < n;) {
      const { bytesRead } = await fh.read(out, pos, Math.min(CHUNK, n - pos), offset + pos);
      if (bytesRead === 0) throw new OnnxError(`${what} ended early at byte ${offset + pos}`);
      pos += bytesRead;
    }
    return out;
  } finally {
    await fh.close();
  }
}

/** External data from files under `baseDir`. */
export function nodeExternalReader(baseDir: string): ExternalDataReader {
  return async (location, offset, length) => {
    const path = await import('node:path');
    const file = path.join(baseDir, location);
    return readFileRange(file, offset, length, `external data file '${location}' (in ${baseDir})`,
      'the model keeps its weights there; copy that file next to the .onnx file');
  };
}

// ---- graph conversion ---------------------------------------------------------------------------

function canonicalDomain(d: string): string {
  return d === 'ai.onnx' ? '' : d;
}

function convertGraph(g: GraphProto): OnnxGraph {
  const initializers = new Map<string, OnnxTensor>();
  for (const tp of g.initializer ?? []) {
    const t = convertTensor(tp);
    initializers.set(t.name, t);
  }
  const valueInfo = new Map<string, ValueInfo>();
  for (const vi of g.value_info ?? []) valueInfo.set(vi.name ?? '', convertValueInfo(vi));
  return {
    name: g.name ?? '',
    nodes: (g.node ?? []).map(convertNode),
    initializers,
    // NOTE: IR version 3 and older list every initializer as a graph input too (so that it could be
    // overridden at run time); they are weights, not inputs a user feeds.
    inputs: (g.input ?? []).map(convertValueInfo).filter((v) => !initializers.has(v.name)),
    outputs: (g.output ?? []).map(convertValueInfo),
    valueInfo,
  };
}

function convertValueInfo(vi: ValueInfoProto): ValueInfo {
  const name = vi.name ?? '';
  const t = vi.type;
  const tensorType = t && hasField(t, 'tensor_type') ? t.tensor_type
    : t && hasField(t, 'sparse_tensor_type') ? t.sparse_tensor_type : null;
  let kind: ValueInfo['kind'] = 'unknown';
  if (t) {
    if (hasField(t, 'tensor_type')) kind = 'tensor';
    else if (hasField(t, 'sparse_tensor_type')) kind = 'sparse_tensor';
    else if (hasField(t, 'sequence_type')) kind = 'sequence';
    else if (hasField(t, 'map_type')) kind = 'map';
    else if (hasField(t, 'optional_type')) kind = 'optional';
    else if (hasField(t, 'opaque_type')) kind = 'opaque';
  }
  let shape: DeclaredDim[] | null = null;
  if (tensorType && hasField(tensorType, 'shape') && tensorType.shape) {
    shape = (tensorType.shape.dim ?? []).map((d): DeclaredDim => {
      if (hasField(d, 'dim_value')) return int64ToNumber(d.dim_value!, `shape of '${name}'`);
      if (hasField(d, 'dim_param') && d.dim_param) return d.dim_param;
      return null;
    });
  }
  return { name, kind, elemType: tensorType?.elem_type ?? 0, shape };
}

function convertNode(np: NodeProto, index: number): OnnxNode {
  const name = np.name ?? '';
  const opType = np.op_type ?? '';
  const attrs: Record<string, AttrValue> = {};
  for (const ap of np.attribute ?? []) {
    const where = `attribute '${ap.name}' of node '${name || `#${index}`}' (${opType})`;
    attrs[ap.name ?? ''] = convertAttribute(ap, where);
  }
  return {
    name,
    opType,
    domain: canonicalDomain(np.domain ?? ''),
    inputs: [...(np.input ?? [])],
    outputs: [...(np.output ?? [])],
    attrs,
  };
}

const utf8 = new TextDecoder();

function convertAttribute(ap: AttributeProto, where: string): AttrValue {
  const type = ap.type || inferAttributeType(ap);
  switch (type) {
    case AttributeType.FLOAT: return { type: 'float', value: ap.f ?? 0 };
    case AttributeType.INT: return { type: 'int', value: int64ToNumber(ap.i ?? 0, where) };
    case AttributeType.STRING: return { type: 'string', value: utf8.decode(ap.s ?? new Uint8Array()) };
    case AttributeType.TENSOR:
      if (!ap.t) throw new OnnxError(`${where} is declared TENSOR but holds none: the file is malformed`);
      return { type: 'tensor', value: convertTensor(ap.t) };
    case AttributeType.FLOATS: return { type: 'floats', value: [...(ap.floats ?? [])] };
    case AttributeType.INTS: return { type: 'ints', value: (ap.ints ?? []).map((v) => int64ToNumber(v, where)) };
    case AttributeType.STRINGS: return { type: 'strings', value: (ap.strings ?? []).map((s) => utf8.decode(s)) };
    case AttributeType.TENSORS: return { type: 'tensors', value: (ap.tensors ?? []).map(convertTensor) };
    default: return { type: 'unsupported', protoType: type };
  }
}

/**
 * NOTE: IR version 1 files have no AttributeProto.type: the type is whichever value field is set. An
 * empty list is ambiguous (nothing on the wire); we call it INTS, and no op here cares which.
 */
function inferAttributeType(ap: AttributeProto): number {
  if (hasField(ap, 'f')) return AttributeType.FLOAT;
  if (hasField(ap, 'i')) return AttributeType.INT;
  if (hasField(ap, 's')) return AttributeType.STRING;
  if (hasField(ap, 't')) return AttributeType.TENSOR;
  if (hasField(ap, 'g')) return AttributeType.GRAPH;
  if (ap.floats?.length) return AttributeType.FLOATS;
  if (ap.ints?.length) return AttributeType.INTS;
  if (ap.strings?.length) return AttributeType.STRINGS;
  if (ap.tensors?.length) return AttributeType.TENSORS;
  if (ap.graphs?.length) return AttributeType.GRAPHS;
  return AttributeType.INTS;
}

// ---- tensors ------------------------------------------------------------------------------------

export function numel(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

/** Bytes per element in raw_data; throws for types we do not decode. */
function bytesPerElement(name: string, dataType: number): number {
  switch (dataType) {
    case DataType.FLOAT: case DataType.INT32: case DataType.UINT32: return 4;
    case DataType.DOUBLE: case DataType.INT64: case DataType.UINT64: return 8;
    case DataType.FLOAT16: case DataType.BFLOAT16: case DataType.INT16: case DataType.UINT16: return 2;
    case DataType.INT8: case DataType.UINT8: case DataType.BOOL: return 1;
    default: throw unsupportedType(name, dataType);
  }
}

function unsupportedType(name: string, dataType: number): OnnxError {
  return new OnnxError(`tensor '${name}' has data type ${dataTypeName(dataType)}, which wgtrain does not read ` +
    '(supported: FLOAT, FLOAT16, BFLOAT16, DOUBLE, INT8/16/32/64, UINT8/16/32/64, BOOL): convert the model to float32');
}

function convertTensor(tp: TensorProto): OnnxTensor {
  const name = tp.name ?? '';
  const dims = (tp.dims ?? []).map((d) => int64ToNumber(d, `dims of tensor '${name}'`));
  const dataType = tp.data_type ?? 0;
  const n = numel(dims);
  if (dims.some((d) => d < 0)) throw new OnnxError(`tensor '${name}' has negative dims [${dims}]: the file is malformed`);

  if (tp.data_location === DataLocation.EXTERNAL) {
    bytesPerElement(name, dataType); // reject unreadable types now, not after reading a file
    return { name, dims, dataType, data: emptyFor(dataType), external: externalRef(name, tp) };
  }
  if (tp.raw_data && tp.raw_data.byteLength > 0) return { name, dims, dataType, data: decodeRaw(name, dataType, tp.raw_data, n) };
  return { name, dims, dataType, data: decodeTyped(name, dataType, tp, n) };
}

function emptyFor(dataType: number): TensorValues {
  if (isFloatType(dataType)) return new Float32Array(0);
  if (dataType === DataType.INT64 || dataType === DataType.UINT32 || dataType === DataType.UINT64) return [];
  return new Int32Array(0);
}

/** FLOAT, FLOAT16, BFLOAT16, DOUBLE: the types that decode to Float32Array. */
export function isFloatType(dataType: number): boolean {
  return dataType === DataType.FLOAT || dataType === DataType.FLOAT16
    || dataType === DataType.BFLOAT16 || dataType === DataType.DOUBLE;
}

function externalRef(name: string, tp: TensorProto): ExternalRef {
  const kv = new Map((tp.external_data ?? []).map((e) => [e.key ?? '', e.value ?? '']));
  const location = kv.get('location');
  if (!location) throw new OnnxError(`tensor '${name}' is stored externally but names no location: the file is malformed`);
  // NOTE: a model file must not be able to make us read arbitrary files: only paths below its folder.
  const parts = location.split(/[\\/]/);
  if (location.startsWith('/') || location.startsWith('\\') || /^[A-Za-z]:/.test(location) || parts.includes('..')) {
    throw new OnnxError(`tensor '${name}' refers to external data at '${location}': only paths relative to the ` +
      "model's folder without '..' are allowed; move the data file next to the model");
  }
  const int = (key: string): number | null => {
    const v = kv.get(key);
    if (v === undefined || v === '') return null;
    if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) {
      throw new OnnxError(`tensor '${name}' has external_data ${key} '${v}', which is not a byte count`);
    }
    return Number(v);
  };
  return { location: parts.filter((p) => p !== '' && p !== '.').join('/'), offset: int('offset') ?? 0, length: int('length') };
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * raw_data -> values. NOTE: `raw` is usually a view into the whole file, at any byte offset: typed
 * arrays need their offset aligned to the element size, so we copy the bytes into a fresh buffer first
 * (which also lets the file buffer be freed).
 */
function decodeRaw(name: string, dataType: number, raw: Uint8Array, n: number): TensorValues {
  const size = bytesPerElement(name, dataType);
  if (raw.byteLength !== n * size) {
    throw new OnnxError(`tensor '${name}' (${dataTypeName(dataType)}) has ${raw.byteLength} bytes of data but its ` +
      `shape needs ${n} × ${size}: the file is malformed`);
  }
  const copy = new Uint8Array(raw.byteLength);
  copy.set(raw);
  const buf = copy.buffer;
  if (!LITTLE_ENDIAN) return decodeRawBigEndianHost(name, dataType, new DataView(buf), n);
  switch (dataType) {
    case DataType.FLOAT: return new Float32Array(buf);
    case DataType.DOUBLE: return Float32Array.from(new Float64Array(buf));
    case DataType.FLOAT16: return halfToFloat(new Uint16Array(buf));
    case DataType.BFLOAT16: return bfloat16ToFloat(new Uint16Array(buf));
    case DataType.INT32: return new Int32Array(buf);
    case DataType.INT16: return Int32Array.from(new Int16Array(buf));
    case DataType.UINT16: return Int32Array.from(new Uint16Array(buf));
    case DataType.INT8: return Int32Array.from(new Int8Array(buf));
    case DataType.UINT8: return Int32Array.from(copy);
    case DataType.BOOL: return Int32Array.from(copy, (b) => (b !== 0 ? 1 : 0));
    case DataType.UINT32: return Array.from(new Uint32Array(buf));
    case DataType.INT64: return Array.from(new BigInt64Array(buf), (v) => bigToNumber(v, `tensor '${name}'`));
    case DataType.UINT64: return Array.from(new BigUint64Array(buf), (v) => bigToNumber(v, `tensor '${name}'`));
    default: throw unsupportedType(name, dataType);
  }
}

/** The same as decodeRaw's typed-array path, element by element, for a big-endian host. */
function decodeRawBigEndianHost(name: string, dataType: number, v: DataView, n: number): TensorValues {
  const f32 = (get: (i: number) => number) => Float32Array.from({ length: n }, (_, i) => get(i));
  const i32 = (get: (i: number) => number) => Int32Array.from({ length: n }, (_, i) => get(i));
  switch (dataType) {
    case DataType.FLOAT: return f32((i) => v.getFloat32(4 * i, true));
    case DataType.DOUBLE: return f32((i) => v.getFloat64(8 * i, true));
    case DataType.FLOAT16: return halfToFloat(Uint16Array.from({ length: n }, (_, i) => v.getUint16(2 * i, true)));
    case DataType.BFLOAT16: return bfloat16ToFloat(Uint16Array.from({ length: n }, (_, i) => v.getUint16(2 * i, true)));
    case DataType.INT32: return i32((i) => v.getInt32(4 * i, true));
    case DataType.INT16: return i32((i) => v.getInt16(2 * i, true));
    case DataType.UINT16: return i32((i) => v.getUint16(2 * i, true));
    case DataType.INT8: return i32((i) => v.getInt8(i));
    case DataType.UINT8: return i32((i) => v.getUint8(i));
    case DataType.BOOL: return i32((i) => (v.getUint8(i) !== 0 ? 1 : 0));
    case DataType.UINT32: return Array.from({ length: n }, (_, i) => v.getUint32(4 * i, true));
    case DataType.INT64: return Array.from({ length: n }, (_, i) => bigToNumber(v.getBigInt64(8 * i, true), `tensor '${name}'`));
    case DataType.UINT64: return Array.from({ length: n }, (_, i) => bigToNumber(v.getBigUint64(8 * i, true), `tensor '${name}'`));
    default: throw unsupportedType(name, dataType);
  }
}

/** The typed *_data fields -> values. */
function decodeTyped(name: string, dataType: number, tp: TensorProto, n: number): TensorValues {
  const check = <T extends { length: number }>(field: string, values: T): T => {
    if (values.length !== n) {
      throw new OnnxError(`tensor '${name}' (${dataTypeName(dataType)}, dims product ${n}) has ${values.length} ` +
        `values in ${field}${values.length === 0 ? ' and no raw_data' : ''}: the file is malformed`);
    }
    return values;
  };
  const int32 = tp.int32_data ?? [];
  switch (dataType) {
    case DataType.FLOAT: return Float32Array.from(check('float_data', tp.float_data ?? []));
    case DataType.DOUBLE: return Float32Array.from(check('double_data', tp.double_data ?? []));
    // NOTE: FLOAT16/BFLOAT16 in int32_data: each int32 holds one value's 16 bits (the low half).
    case DataType.FLOAT16: return halfToFloat(Uint16Array.from(check('int32_data', int32)));
    case DataType.BFLOAT16: return bfloat16ToFloat(Uint16Array.from(check('int32_data', int32)));
    case DataType.INT32: case DataType.INT16: case DataType.INT8:
    case DataType.UINT16: case DataType.UINT8:
      return Int32Array.from(check('int32_data', int32));
    case DataType.BOOL: return Int32Array.from(check('int32_data', int32), (b) => (b !== 0 ? 1 : 0));
    case DataType.INT64: return check('int64_data', tp.int64_data ?? []).map((v) => int64ToNumber(v, `tensor '${name}'`));
    case DataType.UINT32: case DataType.UINT64:
      return check('uint64_data', tp.uint64_data ?? []).map((v) => int64ToNumber(v, `tensor '${name}'`));
    default: throw unsupportedType(name, dataType);
  }
}

/**
 * IEEE 754 half (1 sign, 5 exponent, 10 mantissa bits) -> f32.
 *   normal:    (−1)^s · 2^(e−15) · (1 + m/1024)
 *   subnormal: (−1)^s · 2^(−14) · (m/1024)           (e = 0)
 *   e = 31:    ±Infinity (m = 0) or NaN
 */
export function halfToFloat(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i]!;
    const sign = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0) out[i] = sign * m * 2 ** -24; // 2^(−14) · m / 2^10
    else if (e === 31) out[i] = m ? NaN : sign * Infinity;
    else out[i] = sign * (1 + m / 1024) * 2 ** (e - 15);
  }
  return out;
}

/** bfloat16 is the top half of an f32: shift the bits back into place. */
function bfloat16ToFloat(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) u[i] = bits[i]! << 16;
  return out;
}

// ---- 64-bit integers ------------------------------------------------------------------------------

const INT64_MAX = 2n ** 63n - 1n;
const INT64_MIN = -(2n ** 63n);

/**
 * An int64 as a JS number, exactly. NOTE: INT64_MAX / INT64_MIN are ONNX's "to the end" sentinels
 * (Slice ends, etc.); they become ±MAX_SAFE_INTEGER, which keeps that meaning for any real shape. Any
 * other value beyond 2^53 cannot be represented and is an error.
 */
function bigToNumber(v: bigint, what: string): number {
  if (v >= -BigInt(Number.MAX_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(v);
  if (v === INT64_MAX || v === 2n ** 64n - 1n) return Number.MAX_SAFE_INTEGER;
  if (v === INT64_MIN) return -Number.MAX_SAFE_INTEGER;
  throw new OnnxError(`${what}: the integer ${v} does not fit a JS number (|x| > 2^53); wgtrain cannot represent it`);
}

export function int64ToNumber(v: Int64, what: string): number {
  if (typeof v === 'number') return v;
  // A Long: 32-bit halves; reassemble as a bigint so the range check is exact.
  const big = v.unsigned
    ? (BigInt(v.high >>> 0) << 32n) | BigInt(v.low >>> 0)
    : (BigInt(v.high) << 32n) | BigInt(v.low >>> 0);
  return bigToNumber(big, what);
}

// ---- the other direction: plain objects -> proto messages (for the exporter and for tests) ----------

/**
 * An OnnxTensor as a TensorProto with little-endian raw_data. Float data is written as FLOAT (what the
 * engine holds, whatever the file had: FLOAT16/BFLOAT16/DOUBLE came in converted); integer types keep
 * their type.
 */
export function tensorToProto(t: OnnxTensor): TensorProto {
  const n = t.data.length;
  const src = t.data as ArrayLike<number>;
  const dataType = isFloatType(t.dataType) ? DataType.FLOAT : t.dataType;
  const size = bytesPerElement(t.name, dataType);
  const raw = new Uint8Array(n * size);
  const v = new DataView(raw.buffer);
  for (let i = 0; i < n; i++) {
    const x = src[i]!;
    switch (dataType) {
      case DataType.FLOAT: v.setFloat32(4 * i, x, true); break;
      case DataType.INT32: v.setInt32(4 * i, x, true); break;
      case DataType.UINT32: v.setUint32(4 * i, x, true); break;
      case DataType.INT16: v.setInt16(2 * i, x, true); break;
      case DataType.UINT16: v.setUint16(2 * i, x, true); break;
      case DataType.INT8: v.setInt8(i, x); break;
      case DataType.UINT8: case DataType.BOOL: v.setUint8(i, x); break;
      case DataType.INT64: v.setBigInt64(8 * i, BigInt(x), true); break;
      case DataType.UINT64: v.setBigUint64(8 * i, BigInt(x), true); break;
      default: throw unsupportedType(t.name, dataType);
    }
  }
  return { name: t.name, dims: [...t.dims], data_type: dataType, raw_data: raw };
}

/** An attribute as an AttributeProto (with its `type` set, as IR ≥ 2 requires). */
export function attrToProto(name: string, a: AttrValue): AttributeProto {
  switch (a.type) {
    case 'float': return { name, type: AttributeType.FLOAT, f: a.value };
    case 'int': return { name, type: AttributeType.INT, i: a.value };
    case 'string': return { name, type: AttributeType.STRING, s: new TextEncoder().encode(a.value) };
    case 'tensor': return { name, type: AttributeType.TENSOR, t: tensorToProto(a.value) };
    case 'floats': return { name, type: AttributeType.FLOATS, floats: [...a.value] };
    case 'ints': return { name, type: AttributeType.INTS, ints: [...a.value] };
    case 'strings': return { name, type: AttributeType.STRINGS, strings: a.value.map((s) => new TextEncoder().encode(s)) };
    case 'tensors': return { name, type: AttributeType.TENSORS, tensors: a.value.map(tensorToProto) };
    case 'unsupported': throw new OnnxError(`attribute '${name}' has attribute type ${a.protoType}, which wgtrain cannot write`);
    default: return a satisfies never;
  }
}
