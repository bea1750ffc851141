import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readdir, rm } from 'node:fs/promises';
import { DataError } from '../../src/data/errors.js';
import type { LabeledItem } from '../../src/data/folder.js';
import { loadSplitManifest, openImageFolder, saveSplitManifest } from '../../src/data/node.js';
import { parseManifest, resolveSplit, serializeManifest, stratifiedSplit, valCount } from '../../src/data/split.js';
import { Rng } from '../helpers.js';
import { put, putSolid, tempDir } from './fixtures.js';

let tmp: { dir: string; cleanup: () => Promise<void> };
beforeAll(async () => { tmp = await tempDir(); });
afterAll(async () => { await tmp.cleanup(); });

/** Class c gets counts[c] items named "<class>/<k>.png". */
function items(classes: string[], counts: number[]): LabeledItem[] {
  return classes.flatMap((c, label) => Array.from({ length: counts[label]! }, (_, k) => ({ path: `${c}/${k}.png`, label })));
}

const perClass = (xs: LabeledItem[], n: number) => Array.from({ length: n }, (_, c) => xs.filter((i) => i.label === c).length);

describe('stratifiedSplit', () => {
  const classes = ['a', 'b', 'c', 'd', 'e', 'f'];
  const counts = [10, 5, 2, 1, 7, 3];

  it('takes round(n·valFraction) of each class, at least 1 (n ≥ 2), leaving at least 1 to train', () => {
    // 0.2: 10 → 2, 5 → 1, 2 → round(0.4)=0 → 1, 1 → 0, 7 → round(1.4) = 1, 3 → round(0.6) = 1
    const s = stratifiedSplit(items(classes, counts), { valFraction: 0.2, seed: 1, classes });
    expect(perClass(s.val, 6)).toEqual([2, 1, 1, 0, 1, 1]);
    expect(perClass(s.train, 6)).toEqual([8, 4, 1, 1, 6, 2]);
    // 0.5: 10 → 5, 5 → round(2.5) = 3, 2 → 1, 1 → 0, 7 → 4, 3 → 2
    const h = stratifiedSplit(items(classes, counts), { valFraction: 0.5, seed: 1, classes });
    expect(perClass(h.val, 6)).toEqual([5, 3, 1, 0, 4, 2]);
    // 0.9 would leave 2 → 2 with nothing to train on: clamped to n − 1.
    expect([10, 5, 2, 1].map((n) => valCount(n, 0.9))).toEqual([9, 4, 1, 0]);
    // 0: no validation at all.
    expect(stratifiedSplit(items(classes, counts), { valFraction: 0, seed: 1, classes }).val).toEqual([]);
  });

  it('is a partition: every item once, labels kept', () => {
    const all = items(classes, counts);
    const s = stratifiedSplit(all, { valFraction: 0.3, seed: 9, classes });
    const key = (i: LabeledItem) => `${i.label}:${i.path}`;
    expect([...s.train, ...s.val].map(key).sort()).toEqual(all.map(key).sort());
  });

  it('is deterministic, independent of input order, and changes with the seed', () => {
    const all = items(classes, counts);
    const a = stratifiedSplit(all, { valFraction: 0.3, seed: 42, classes });
    const b = stratifiedSplit(new Rng(5).shuffle([...all]), { valFraction: 0.3, seed: 42, classes });
    expect(b.manifest).toEqual(a.manifest);
    const c = stratifiedSplit(all, { valFraction: 0.3, seed: 43, classes });
    expect(c.manifest.val).not.toEqual(a.manifest.val);
  });

  it("a class's split does not change when other classes change", () => {
    const a = stratifiedSplit(items(['cat', 'dog'], [20, 20]), { valFraction: 0.25, seed: 3, classes: ['cat', 'dog'] });
    const b = stratifiedSplit(items(['ant', 'cat', 'dog'], [5, 20, 31]), { valFraction: 0.25, seed: 3, classes: ['ant', 'cat', 'dog'] });
    const cats = (xs: string[]) => xs.filter((p) => p.startsWith('cat/'));
    expect(cats(b.manifest.val)).toEqual(cats(a.manifest.val));
  });

  it('rejects a bad fraction', () => {
    expect(() => stratifiedSplit([], { valFraction: 1, seed: 0, classes: [] })).toThrow(DataError);
    expect(() => stratifiedSplit([], { valFraction: -0.1, seed: 0, classes: [] })).toThrow(/validation fraction must be in \[0, 1\)/);
  });
});

describe('split manifest', () => {
  async function dataset(root: string) {
    for (const c of ['cat', 'dog']) for (let k = 0; k < 6; k++) await putSolid(root, `${c}/${k}.png`, 2, 2, [k, k, k]);
    return openImageFolder(root, { onWarning: () => {} });
  }

  it('round trip: save (atomically), load, resolve → the same split', async () => {
    const root = `${tmp.dir}/rt`;
    const ds = await dataset(root);
    const split = stratifiedSplit(ds.items, { valFraction: 0.34, seed: 7, classes: ds.classes });
    expect(split.manifest).toMatchObject({ version: 1, seed: 7, valFraction: 0.34, classes: ['cat', 'dog'] });
    const file = `${tmp.dir}/rt-split.json`;
    await saveSplitManifest(file, split.manifest);
    expect((await readdir(tmp.dir)).filter((f) => f.includes('.tmp'))).toEqual([]); // no temp file left
    const loaded = await loadSplitManifest(file);
    expect(loaded).toEqual(split.manifest);
    const again = await resolveSplit(loaded, ds, file);
    expect(again.train).toEqual(split.train);
    expect(again.val).toEqual(split.val);
    expect(again.unlisted).toEqual([]);
    // Overwriting goes through the same temp + rename.
    await saveSplitManifest(file, { ...split.manifest, seed: 8 });
    expect((await loadSplitManifest(file)).seed).toBe(8);
  });

  it('names the files that no longer exist; reports images added since', async () => {
    const root = `${tmp.dir}/missing`;
    const ds = await dataset(root);
    const split = stratifiedSplit(ds.items, { valFraction: 0.34, seed: 7, classes: ds.classes });
    await rm(`${root}/${split.manifest.val[0]}`);
    await expect(resolveSplit(split.manifest, ds, 'split.json')).rejects.toThrow(
      new RegExp(`1 file of the saved split "split.json" no longer exists in ".*": "${split.manifest.val[0]}"; restore them`),
    );
    await putSolid(root, 'cat/new.png', 2, 2, [1, 1, 1]);
    const ds2 = await openImageFolder(root, { onWarning: () => {} });
    const kept = { ...split.manifest, val: split.manifest.val.slice(1) };
    expect((await resolveSplit(kept, ds2)).unlisted).toEqual(['cat/new.png']);
  });

  it('rejects changed classes and malformed files', async () => {
    const ds = await dataset(`${tmp.dir}/cls`);
    const split = stratifiedSplit(ds.items, { valFraction: 0.2, seed: 1, classes: ds.classes });
    await expect(resolveSplit({ ...split.manifest, classes: ['cat', 'cow'] }, ds)).rejects.toThrow(/class folders .* differ from those of the saved split/);
    expect(() => parseManifest('{', 'x.json')).toThrow(/split manifest "x.json" is not valid \(not JSON/);
    expect(() => parseManifest(JSON.stringify({ ...split.manifest, version: 2 }), 'x.json')).toThrow(/version 2/);
    expect(() => parseManifest(JSON.stringify({ ...split.manifest, train: [1] }), 'x.json')).toThrow(/train is not a list of strings/);
    expect(parseManifest(serializeManifest(split.manifest), 'x.json')).toEqual(split.manifest);
    await expect(loadSplitManifest(`${tmp.dir}/none.json`)).rejects.toThrow(/split manifest ".*none.json" does not exist/);
    await put(tmp.dir, 'bad.json', '[]');
    await expect(loadSplitManifest(`${tmp.dir}/bad.json`)).rejects.toThrow(DataError);
  });
});
