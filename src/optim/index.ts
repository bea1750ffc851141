export * from './optimizer.js';
export * from './lr.js';
export * from './schedule.js';
