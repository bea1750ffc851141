// wgtrain's library API. The GPU runtime's names are exported flat (getGpu, Tensor, …); each layer
// of the engine above it is a namespace, so the same op name can exist at two levels
// (kernels.conv2d works on Tensors, ops.conv2d on autograd Variables):
//
//   import { getGpu, Tensor, kernels } from 'wgtrain';
//   const gpu = await getGpu();
//   const y = kernels.relu(kernels.conv2d(x, w, b, { padding: 1 }));
export * from './gpu/index.js';
export * as kernels from './kernels/index.js';
export * as reference from './kernels/reference.js';
export * as autograd from './autograd/index.js';
export * as nn from './nn/index.js';
export * as optim from './optim/index.js';
export * as onnx from './onnx/index.js';
export * as data from './data/index.js';
export * as train from './train/index.js';
/** Node-only helpers: image folders on disk (sharp), atomic file writes, split manifests. */
export * as node from './data/node.js';
