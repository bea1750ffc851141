// Every GPU kernel family, forward and backward. Each function takes and returns `Tensor`s and queues
// its dispatches on the tensor's `Gpu`; read a result with `await t.read()`.

export * from './elementwise.js';
export * from './reduce.js';
export * from './matmul.js';
export * from './conv2d.js';
export * from './pool.js';
export * from './batchnorm.js';
export * from './dropout.js';
export * from './softmax.js';
export * from './optim.js';
export * from './activation.js';
export * from './shape.js';
export * from './lrn.js';
