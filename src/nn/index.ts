export * from './module.js';
export * from './layers.js';
export * from './groups.js';
export { vgg16, VGG } from './models/vgg16.js';
export { resnet34, ResNet } from './models/resnet34.js';
export { replaceHead } from './models/head.js';
export { DemoCnn } from './models/demo.js';
