// CPU reference implementations of every kernel: plain loops in float64, the ground truth for tests
// and benchmark validation. One file per op family under reference/, re-exported here.

export * from './reference/elementwise.js';
export * from './reference/pool.js';
export * from './reference/batchnorm.js';
export * from './reference/dropout.js';
export * from './reference/softmax.js';
export * from './reference/optim.js';
export * from './reference/conv2d.js';
export * from './reference/matmul.js';
export * from './reference/activation.js';
export * from './reference/shape.js';
export * from './reference/lrn.js';
