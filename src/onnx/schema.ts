// The subset of onnx.proto (https://github.com/onnx/onnx/blob/main/onnx/onnx.proto) that wgtrain reads and
// writes, written here as a protobufjs reflection descriptor: no .proto file is loaded at run time and no
// code is generated ahead of time. Field names are the proto's own (snake_case), so the descriptor reads
// like onnx.proto, and decoded messages carry the same names.
//
// NOTE: onnx.proto is proto2, but protobufjs treats JSON descriptors as proto3. Two differences matter
// to the encoder: (1) in proto2 a repeated scalar is packed only where the .proto says `[packed = true]`
// (TensorProto's *_data fields), so every repeated scalar below states `packed` explicitly; (2) proto2
// writes every field that is set, even to its default (proto3 drops i = 0), so every field is marked
// proto2 (see `proto2` below). Decoders accept both forms of (1).
//
// Fields we leave out are skipped by the decoder (protobuf ignores unknown fields): doc strings,
// sparse tensors, subgraph attributes' contents, training info, functions, TensorProto.segment.

import * as protobufNs from 'protobufjs/light.js';

// NOTE: protobufjs is CommonJS. Under Node's ESM loader `import *` yields { default: module }, under
// bundlers (esbuild, vite) the module itself; take whichever holds `Root`.
const protobuf: typeof protobufNs =
  (protobufNs as unknown as { default?: typeof protobufNs }).default ?? protobufNs;

// ---- enums ------------------------------------------------------------------------------------

/** TensorProto.DataType: the element type of a tensor. */
export const DataType = {
  UNDEFINED: 0,
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
  COMPLEX64: 14,
  COMPLEX128: 15,
  BFLOAT16: 16,
  FLOAT8E4M3FN: 17,
  FLOAT8E4M3FNUZ: 18,
  FLOAT8E5M2: 19,
  FLOAT8E5M2FNUZ: 20,
  UINT4: 21,
  INT4: 22,
  FLOAT4E2M1: 23,
  FLOAT8E8M0: 24,
} as const;
export type DataType = (typeof DataType)[keyof typeof DataType];

const DATA_TYPE_NAMES = new Map<number, string>(Object.entries(DataType).map(([k, v]) => [v, k]));

/** 'FLOAT', 'INT64', … or 'data type 99' for a code this table does not know. */
export function dataTypeName(code: number): string {
  return DATA_TYPE_NAMES.get(code) ?? `data type ${code}`;
}

/** AttributeProto.AttributeType. */
export const AttributeType = {
  UNDEFINED: 0,
  FLOAT: 1,
  INT: 2,
  STRING: 3,
  TENSOR: 4,
  GRAPH: 5,
  FLOATS: 6,
  INTS: 7,
  STRINGS: 8,
  TENSORS: 9,
  GRAPHS: 10,
  SPARSE_TENSOR: 11,
  SPARSE_TENSORS: 12,
  TYPE_PROTO: 13,
  TYPE_PROTOS: 14,
} as const;
export type AttributeType = (typeof AttributeType)[keyof typeof AttributeType];

/** TensorProto.DataLocation. */
export const DataLocation = { DEFAULT: 0, EXTERNAL: 1 } as const;

// ---- the descriptor ---------------------------------------------------------------------------

const unpacked = { packed: false };
const packed = { packed: true };

/**
 * Marks every field proto2. NOTE: protobufjs reads JSON descriptors as proto3 by default, where a
 * scalar equal to its default (i = 0, f = 0) is never written; in proto2 a field that is set is written.
 * That matters to readers of IR-1 files, which find an attribute's type from the field present.
 */
function proto2<T extends Record<string, object>>(fields: T): T {
  return Object.fromEntries(Object.entries(fields).map(([k, f]) => [k, { ...f, edition: 'proto2' }])) as T;
}

/** protobufjs JSON descriptor of package `onnx` (field numbers from onnx.proto). */
export const ONNX_DESCRIPTOR = {
  nested: {
    onnx: {
      nested: {
        ModelProto: {
          fields: proto2({
            ir_version: { type: 'int64', id: 1 },
            producer_name: { type: 'string', id: 2 },
            producer_version: { type: 'string', id: 3 },
            domain: { type: 'string', id: 4 },
            model_version: { type: 'int64', id: 5 },
            doc_string: { type: 'string', id: 6 },
            graph: { type: 'GraphProto', id: 7 },
            opset_import: { rule: 'repeated', type: 'OperatorSetIdProto', id: 8 },
            metadata_props: { rule: 'repeated', type: 'StringStringEntryProto', id: 14 },
          }),
        },
        OperatorSetIdProto: {
          fields: proto2({
            domain: { type: 'string', id: 1 },
            version: { type: 'int64', id: 2 },
          }),
        },
        StringStringEntryProto: {
          fields: proto2({
            key: { type: 'string', id: 1 },
            value: { type: 'string', id: 2 },
          }),
        },
        GraphProto: {
          fields: proto2({
            node: { rule: 'repeated', type: 'NodeProto', id: 1 },
            name: { type: 'string', id: 2 },
            initializer: { rule: 'repeated', type: 'TensorProto', id: 5 },
            doc_string: { type: 'string', id: 10 },
            input: { rule: 'repeated', type: 'ValueInfoProto', id: 11 },
            output: { rule: 'repeated', type: 'ValueInfoProto', id: 12 },
            value_info: { rule: 'repeated', type: 'ValueInfoProto', id: 13 },
          }),
        },
        NodeProto: {
          fields: proto2({
            input: { rule: 'repeated', type: 'string', id: 1 },
            output: { rule: 'repeated', type: 'string', id: 2 },
            name: { type: 'string', id: 3 },
            op_type: { type: 'string', id: 4 },
            attribute: { rule: 'repeated', type: 'AttributeProto', id: 5 },
            doc_string: { type: 'string', id: 6 },
            domain: { type: 'string', id: 7 },
          }),
        },
        AttributeProto: {
          fields: proto2({
            name: { type: 'string', id: 1 },
            f: { type: 'float', id: 2 },
            i: { type: 'int64', id: 3 },
            s: { type: 'bytes', id: 4 },
            t: { type: 'TensorProto', id: 5 },
            // g (6) and graphs (11) hold subgraphs (If, Loop, Scan): decoded only far enough to see
            // that they are there, which is all an error message needs.
            g: { type: 'GraphProto', id: 6 },
            floats: { rule: 'repeated', type: 'float', id: 7, options: unpacked },
            ints: { rule: 'repeated', type: 'int64', id: 8, options: unpacked },
            strings: { rule: 'repeated', type: 'bytes', id: 9 },
            tensors: { rule: 'repeated', type: 'TensorProto', id: 10 },
            graphs: { rule: 'repeated', type: 'GraphProto', id: 11 },
            doc_string: { type: 'string', id: 13 },
            type: { type: 'int32', id: 20 },
            ref_attr_name: { type: 'string', id: 21 },
          }),
        },
        TensorProto: {
          fields: proto2({
            dims: { rule: 'repeated', type: 'int64', id: 1, options: unpacked },
            data_type: { type: 'int32', id: 2 },
            float_data: { rule: 'repeated', type: 'float', id: 4, options: packed },
            int32_data: { rule: 'repeated', type: 'int32', id: 5, options: packed },
            string_data: { rule: 'repeated', type: 'bytes', id: 6 },
            int64_data: { rule: 'repeated', type: 'int64', id: 7, options: packed },
            name: { type: 'string', id: 8 },
            raw_data: { type: 'bytes', id: 9 },
            double_data: { rule: 'repeated', type: 'double', id: 10, options: packed },
            uint64_data: { rule: 'repeated', type: 'uint64', id: 11, options: packed },
            doc_string: { type: 'string', id: 12 },
            external_data: { rule: 'repeated', type: 'StringStringEntryProto', id: 13 },
            data_location: { type: 'int32', id: 14 },
          }),
        },
        ValueInfoProto: {
          fields: proto2({
            name: { type: 'string', id: 1 },
            type: { type: 'TypeProto', id: 2 },
            doc_string: { type: 'string', id: 3 },
          }),
        },
        TypeProto: {
          // `value` is a oneof in onnx.proto; a decoder only ever sees one of these set.
          fields: proto2({
            tensor_type: { type: 'TypeProtoTensor', id: 1 },
            sequence_type: { type: 'TypeProtoOther', id: 4 },
            map_type: { type: 'TypeProtoOther', id: 5 },
            denotation: { type: 'string', id: 6 },
            opaque_type: { type: 'TypeProtoOther', id: 7 },
            sparse_tensor_type: { type: 'TypeProtoTensor', id: 8 },
            optional_type: { type: 'TypeProtoOther', id: 9 },
          }),
        },
        // TypeProto.Tensor (and TypeProto.SparseTensor, which has the same two fields).
        TypeProtoTensor: {
          fields: proto2({
            elem_type: { type: 'int32', id: 1 },
            shape: { type: 'TensorShapeProto', id: 2 },
          }),
        },
        // Sequence / Map / Optional / Opaque: we only need to know that one is present.
        TypeProtoOther: { fields: proto2({}) },
        TensorShapeProto: {
          fields: proto2({
            dim: { rule: 'repeated', type: 'TensorShapeProtoDimension', id: 1 },
          }),
        },
        TensorShapeProtoDimension: {
          // oneof value { dim_value = 1; dim_param = 2 }
          fields: proto2({
            dim_value: { type: 'int64', id: 1 },
            dim_param: { type: 'string', id: 2 },
            denotation: { type: 'string', id: 3 },
          }),
        },
      },
    },
  },
};

// ---- message shapes ---------------------------------------------------------------------------
// What the decoder returns (and what the encoder accepts). int64 fields decode as `Long` (protobufjs
// uses the `long` package when it is installed) and encode from a plain number. Absent scalar fields read
// as the type's default through the prototype; absent repeated fields are []. Use `hasField` to tell
// "absent" from "default" where that matters (AttributeProto without `type`).

/** A 64-bit integer as protobufjs decodes it: a `Long` (from the `long` package), or a number. */
export interface LongLike { low: number; high: number; unsigned: boolean; toNumber(): number; toString(): string }
export type Int64 = number | LongLike;

export interface ModelProto {
  ir_version?: Int64;
  producer_name?: string;
  producer_version?: string;
  domain?: string;
  model_version?: Int64;
  doc_string?: string;
  graph?: GraphProto | null;
  opset_import?: OperatorSetIdProto[];
  metadata_props?: StringStringEntryProto[];
}

export interface OperatorSetIdProto { domain?: string; version?: Int64 }
export interface StringStringEntryProto { key?: string; value?: string }

export interface GraphProto {
  node?: NodeProto[];
  name?: string;
  initializer?: TensorProto[];
  doc_string?: string;
  input?: ValueInfoProto[];
  output?: ValueInfoProto[];
  value_info?: ValueInfoProto[];
}

export interface NodeProto {
  input?: string[];
  output?: string[];
  name?: string;
  op_type?: string;
  attribute?: AttributeProto[];
  doc_string?: string;
  domain?: string;
}

export interface AttributeProto {
  name?: string;
  f?: number;
  i?: Int64;
  s?: Uint8Array;
  t?: TensorProto | null;
  g?: GraphProto | null;
  floats?: number[];
  ints?: Int64[];
  strings?: Uint8Array[];
  tensors?: TensorProto[];
  graphs?: GraphProto[];
  doc_string?: string;
  type?: number;
  ref_attr_name?: string;
}

export interface TensorProto {
  dims?: Int64[];
  data_type?: number;
  float_data?: number[];
  int32_data?: number[];
  string_data?: Uint8Array[];
  int64_data?: Int64[];
  name?: string;
  raw_data?: Uint8Array;
  double_data?: number[];
  uint64_data?: Int64[];
  doc_string?: string;
  external_data?: StringStringEntryProto[];
  data_location?: number;
}

export interface ValueInfoProto { name?: string; type?: TypeProto | null; doc_string?: string }

export interface TypeProto {
  tensor_type?: TypeProtoTensor | null;
  sequence_type?: object | null;
  map_type?: object | null;
  denotation?: string;
  opaque_type?: object | null;
  sparse_tensor_type?: TypeProtoTensor | null;
  optional_type?: object | null;
}

export interface TypeProtoTensor { elem_type?: number; shape?: TensorShapeProto | null }
export interface TensorShapeProto { dim?: TensorShapeProtoDimension[] }
export interface TensorShapeProtoDimension { dim_value?: Int64; dim_param?: string; denotation?: string }

// ---- codec ------------------------------------------------------------------------------------

const root = protobuf.Root.fromJSON(ONNX_DESCRIPTOR);
const ModelType = root.lookupType('onnx.ModelProto');
const TensorType = root.lookupType('onnx.TensorProto');

/**
 * Decodes a serialized ModelProto. NOTE: `bytes` fields (raw_data) come back as VIEWS into `bytes`
 * (no copy), often not 4-byte aligned: copy them out before making typed arrays, and do not keep the
 * message around longer than needed (it pins the whole input buffer). Throws protobufjs errors on
 * malformed input; reader.ts turns those into OnnxError.
 */
export function decodeModelProto(bytes: Uint8Array): ModelProto {
  return ModelType.decode(bytes) as unknown as ModelProto;
}

/** Decodes a serialized TensorProto (the backend tests' input_K.pb / output_K.pb). */
export function decodeTensorProto(bytes: Uint8Array): TensorProto {
  return TensorType.decode(bytes) as unknown as TensorProto;
}

/** Serializes a ModelProto (plain object with the proto's field names; numbers for int64). */
export function encodeModelProto(model: ModelProto): Uint8Array {
  return ModelType.encode(model as Record<string, unknown>).finish();
}

/** Serializes a TensorProto. */
export function encodeTensorProto(tensor: TensorProto): Uint8Array {
  return TensorType.encode(tensor as Record<string, unknown>).finish();
}

/** True when a decoded message carries `field` on the wire (not just the prototype's default). */
export function hasField(msg: object, field: string): boolean {
  return Object.prototype.hasOwnProperty.call(msg, field);
}
