// Single-node ONNX models of the benchmark workloads, written with wgtrain's own ONNX encoder, for
// onnxruntime-web (which runs ONNX graphs only). Weights are initializers, so the session sees the
// same situation as an inference deployment: only the activation is an input.
//
//   conv:  Y = Conv(X, W, B)      X [N,C,H,W], W [K,C,R,S], B [K], pads/strides as the workload
//   gemm:  Y = MatMul(A, B)       A [M,K] an input, B [K,N] an initializer

import { encodeModelProto, type ModelProto, type NodeProto, type ValueInfoProto, AttributeType, DataType } from '../../src/onnx/schema.js';
import { tensorToProto } from '../../src/onnx/reader.js';

function valueInfo(name: string, dims: readonly number[]): ValueInfoProto {
  return { name, type: { tensor_type: { elem_type: DataType.FLOAT, shape: { dim: dims.map((d) => ({ dim_value: d })) } } } };
}

function model(node: NodeProto, inputs: ValueInfoProto[], output: ValueInfoProto, inits: { name: string; dims: number[]; data: Float32Array }[]): Uint8Array {
  const proto: ModelProto = {
    ir_version: 8,
    producer_name: 'wgtrain-bench',
    opset_import: [{ domain: '', version: 17 }],
    graph: {
      name: node.op_type ?? 'g',
      node: [node],
      input: inputs,
      output: [output],
      initializer: inits.map((t) => tensorToProto({ name: t.name, dims: t.dims, dataType: DataType.FLOAT, data: t.data })),
    },
  };
  return encodeModelProto(proto);
}

export interface ConvModelSpec {
  xShape: readonly [number, number, number, number];
  w: Float32Array; wShape: readonly [number, number, number, number];
  b: Float32Array;
  stride: number; pad: number;
  yShape: readonly [number, number, number, number];
}

/** One Conv node: input 'x', initializers 'w' and 'b', output 'y'. */
export function convModel(s: ConvModelSpec): Uint8Array {
  const ints = (name: string, v: number[]) => ({ name, type: AttributeType.INTS, ints: v });
  return model(
    {
      op_type: 'Conv', name: 'conv', input: ['x', 'w', 'b'], output: ['y'],
      attribute: [
        ints('kernel_shape', [s.wShape[2], s.wShape[3]]), ints('strides', [s.stride, s.stride]),
        ints('pads', [s.pad, s.pad, s.pad, s.pad]), ints('dilations', [1, 1]),
      ],
    },
    [valueInfo('x', s.xShape)], valueInfo('y', s.yShape),
    [{ name: 'w', dims: [...s.wShape], data: s.w }, { name: 'b', dims: [s.wShape[0]], data: s.b }],
  );
}

/** One MatMul node: input 'a' [M,K], initializer 'b' [K,N], output 'y' [M,N]. */
export function matmulModel(M: number, K: number, N: number, b: Float32Array): Uint8Array {
  return model({ op_type: 'MatMul', name: 'matmul', input: ['a', 'b'], output: ['y'] },
    [valueInfo('a', [M, K])], valueInfo('y', [M, N]), [{ name: 'b', dims: [K, N], data: b }]);
}
