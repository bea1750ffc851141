// Stratified, seeded train/validation split, and the manifest that reproduces it exactly.
//
// Per class c with n images (listed in path order first, so the input order does not matter):
//   shuffle them with Rng(mixSeed(seed, STREAM.split, hash(class name)))
//   the first v go to validation, the rest to training, where
//     v = 0                                   if n = 1 or valFraction = 0
//     v = clamp(round(n · valFraction), 1, n − 1)   otherwise
// NOTE: round is half up (Math.round) of n·valFraction as computed in float64. The clamp keeps at
// least one validation image per class (a class with no validation image has no accuracy to show) and
// at least one training image (a class with none cannot be learned).
// NOTE: each class's shuffle is seeded by its NAME, not its label, so adding a class or images of
// another class leaves a class's split unchanged.
//
// The manifest lists the relative paths of both sides. Saved next to a run (and inside checkpoints),
// it makes the split survive a resume even if the seed logic or the folder listing order changed;
// resolveSplit checks that the files still exist and names the missing ones.

import { Rng } from '../util/rng.js';
import { DataError } from './errors.js';
import { compareCodePoints, type LabeledItem } from './folder.js';
import type { ImageSource } from './image.js';
import { hashString, mixSeed, STREAM } from './seed.js';

export interface SplitManifest {
  /** Format version of this object; bumped if its meaning ever changes. */
  version: 1;
  seed: number;
  valFraction: number;
  classes: string[];
  /** Relative paths ('/'-separated, the first segment is the class folder), in code-point order. */
  train: string[];
  val: string[];
}

export interface Split {
  train: LabeledItem[];
  val: LabeledItem[];
  manifest: SplitManifest;
  /** resolveSplit only: images of the dataset that the saved split does not list (added since); unused. */
  unlisted?: string[];
}

export interface SplitOptions {
  /** Fraction of each class sent to validation, in [0, 1). */
  valFraction: number;
  seed: number;
  /** Class names by label (ImageFolder.classes); recorded in the manifest. */
  classes: readonly string[];
}

/** The number of validation images for a class of n (see the header). */
export function valCount(n: number, valFraction: number): number {
  if (n <= 1 || valFraction === 0) return 0;
  return Math.min(Math.max(Math.round(n * valFraction), 1), n - 1);
}

export function stratifiedSplit(items: readonly LabeledItem[], opts: SplitOptions): Split {
  const { valFraction, seed, classes } = opts;
  if (!(valFraction >= 0 && valFraction < 1)) {
    throw new DataError(`validation fraction must be in [0, 1), got ${valFraction}: e.g. --val-split 0.2`);
  }
  if (!Number.isInteger(seed)) throw new DataError(`seed must be an integer, got ${seed}`);
  const byClass: LabeledItem[][] = classes.map(() => []);
  for (const it of items) {
    if (!(it.label >= 0 && it.label < classes.length)) throw new Error(`stratifiedSplit: label ${it.label} of "${it.path}" is not a class index`);
    byClass[it.label]!.push(it);
  }
  const train: LabeledItem[] = [], val: LabeledItem[] = [];
  byClass.forEach((members, label) => {
    members.sort((a, b) => compareCodePoints(a.path, b.path));
    new Rng(mixSeed(seed, STREAM.split, hashString(classes[label]!))).shuffle(members);
    const v = valCount(members.length, valFraction);
    val.push(...members.slice(0, v));
    train.push(...members.slice(v));
  });
  const byPath = (a: LabeledItem, b: LabeledItem) => compareCodePoints(a.path, b.path);
  train.sort(byPath);
  val.sort(byPath);
  return {
    train, val,
    manifest: { version: 1, seed, valFraction, classes: [...classes], train: train.map((i) => i.path), val: val.map((i) => i.path) },
  };
}

// ---- the manifest as a file ----------------------------------------------------------------------

export function serializeManifest(m: SplitManifest): string {
  return `${JSON.stringify(m, null, 1)}\n`;
}

/** Parses and validates a manifest; `where` names the file in error messages. */
export function parseManifest(text: string, where: string): SplitManifest {
  const bad = (what: string): never => {
    throw new DataError(`split manifest "${where}" is not valid (${what}): delete it to make a new split`);
  };
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch (e) {
    return bad(`not JSON: ${(e as Error).message}`);
  }
  if (typeof m !== 'object' || m === null) return bad('not an object');
  const q = m as Record<string, unknown>;
  if (q.version !== 1) bad(`version ${JSON.stringify(q.version)}, this wgtrain reads version 1`);
  if (!Number.isInteger(q.seed)) bad('seed is not an integer');
  if (!(typeof q.valFraction === 'number' && q.valFraction >= 0 && q.valFraction < 1)) bad('valFraction is not in [0, 1)');
  const strings = (k: string) => {
    const v = q[k];
    if (!(Array.isArray(v) && v.every((s) => typeof s === 'string'))) bad(`${k} is not a list of strings`);
  };
  strings('classes');
  strings('train');
  strings('val');
  return m as SplitManifest;
}

/** The label of a manifest path: the index of its first segment (its class folder) in `classes`. */
function labelOf(path: string, classes: readonly string[], where: string): number {
  const label = classes.indexOf(path.split('/')[0]!);
  if (label < 0) throw new DataError(`split manifest "${where}" lists "${path}", which is in no listed class: delete the manifest to make a new split`);
  return label;
}

/**
 * Rebuilds a saved split for a dataset. Checks that the dataset has the manifest's classes, in the
 * same order (labels are indices), and that every listed file still exists; names what is missing.
 * Images added to the dataset since are not used; they are returned in `unlisted` for the caller to
 * mention.
 */
export async function resolveSplit(
  manifest: SplitManifest,
  dataset: { classes: readonly string[]; source: ImageSource; items?: readonly LabeledItem[] },
  where = 'split manifest',
): Promise<Split> {
  const { classes } = manifest;
  if (classes.length !== dataset.classes.length || classes.some((c, i) => c !== dataset.classes[i])) {
    throw new DataError(
      `the class folders of "${dataset.source.root}" (${dataset.classes.join(', ')}) differ from those of the saved split ` +
      `"${where}" (${classes.join(', ')}): restore the folders, or delete the manifest to make a new split`,
    );
  }
  const all = [...manifest.train, ...manifest.val];
  const kinds = await Promise.all(all.map((p) => dataset.source.stat(p)));
  const missing = all.filter((_, i) => kinds[i] !== 'file');
  if (missing.length > 0) {
    const shown = missing.slice(0, 5).map((p) => `"${p}"`).join(', ') + (missing.length > 5 ? ` and ${missing.length - 5} more` : '');
    throw new DataError(
      `${missing.length} file${missing.length === 1 ? '' : 's'} of the saved split "${where}" no longer exist${missing.length === 1 ? 's' : ''} ` +
      `in "${dataset.source.root}": ${shown}; restore them, or delete the manifest to make a new split`,
    );
  }
  const items = (paths: string[]) => paths.map((path) => ({ path, label: labelOf(path, classes, where) }));
  const listed = new Set(all);
  const unlisted = (dataset.items ?? []).map((it) => it.path).filter((p) => !listed.has(p));
  return { train: items(manifest.train), val: items(manifest.val), manifest, unlisted };
}
