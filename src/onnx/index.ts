export { decodeModel, readModel, readTensorProto, OnnxError, type OnnxModel, type OnnxTensor } from './reader.js';
export { normalize, type NormGraph, type NormNode } from './normalize.js';
export { importModel, OnnxModule, detectFamily, type ImportOptions, type ModelFamily } from './import.js';
export { exportOnnx, type ExportOptions } from './export.js';
