// Layer groups and freezing, fastai semantics (finetune-semantics.md):
//   freezeTo(n):  groups [0, n) frozen, groups [n, end) trainable; negative n counts from the end.
//   freeze():     freezeTo(−1): everything but the last group (the head) frozen.
//   unfreeze():   freezeTo(0): everything trainable.
// Freezing sets `trainable = false` on parameters: they get no gradient buffer, no optimizer state
// and no backward work; BatchNorm layers in a frozen group also stop updating their running
// statistics (BnPolicy 'auto').

import type { Module, Parameter } from './module.js';

/** A model split into ordered layer groups (body → head). */
export interface Grouped {
  /** Group i as a list of modules; every parameter belongs to exactly one group. */
  layerGroups(): Module[][];
}

export function freezeTo(model: Grouped, n: number) {
  const groups = model.layerGroups();
  const k = n < 0 ? groups.length + n : n;
  if (!Number.isInteger(n) || k < 0 || k > groups.length) {
    throw new Error(`freezeTo(${n}): the model has ${groups.length} layer groups`);
  }
  groups.forEach((g, i) => { for (const m of g) m.setTrainable(i >= k); });
}

export function freeze(model: Grouped) { freezeTo(model, -1); }
export function unfreeze(model: Grouped) { freezeTo(model, 0); }

/** Parameters of each group with their full dotted names, for building optimizer groups. */
export function groupParameters(model: Module & Grouped): [string, Parameter][][] {
  const byParam = new Map<Parameter, string>(model.namedParameters().map(([n, p]) => [p, n]));
  const groups = model.layerGroups().map((g) => g.flatMap((m) => m.parameters().map((p): [string, Parameter] => [byParam.get(p) ?? p.name, p])));
  const seen = groups.flat().length;
  if (seen !== byParam.size) throw new Error(`layer groups cover ${seen} of the model's ${byParam.size} parameters`);
  return groups;
}
