// Replacing a pretrained model's classifier with a new one for the target classes.

import type { Gpu } from '../../gpu/device.js';
import { Linear, Sequential, type InitOptions } from '../layers.js';
import { ResNet } from './resnet34.js';
import { VGG } from './vgg16.js';

/**
 * Replaces the final Linear with a fresh one of `numClasses` outputs (PyTorch default init, seeded):
 * VGG's classifier.6, ResNet's fc. Returns the model (now with the new head's parameters trainable).
 */
export function replaceHead<M extends VGG | ResNet>(gpu: Gpu, model: M, numClasses: number, o: InitOptions = {}): M {
  if (!Number.isInteger(numClasses) || numClasses < 2) throw new Error(`replaceHead: need at least 2 classes, got ${numClasses}`);
  if (model instanceof VGG) {
    const old = model.classifier.at(-1) as Linear;
    model.classifier.set(-1, new Linear(gpu, old.inFeatures, numClasses, o));
    old.dispose();
  } else if (model instanceof ResNet) {
    const old = model.fc as Linear | Sequential;
    const inF = old instanceof Linear ? old.inFeatures : 512;
    model.fc = new Linear(gpu, inF, numClasses, o);
    model.setChild('fc', model.fc);
    old.dispose();
  }
  return model;
}
