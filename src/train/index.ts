export * from './learner.js';
export * from './lrfind.js';
export * from './checkpoint.js';
export * from './plots.js';
export * from './memory.js';
