export * from './gpu/index.js';
