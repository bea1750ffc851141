export * from './variable.js';
export * as ops from './ops.js';
export { CapturedStep } from './capture.js';
