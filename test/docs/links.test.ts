// The docs' code links resolve: every relative link in docs/*.md points at a file that exists, and
// a link with a fragment names something declared in that file —
//   [`Learner.trainStep`](../src/train/learner.ts#Learner.trainStep)   class Learner, then its method
//   [`conv2dBackwardWeight`](../src/kernels/conv2d.ts#conv2dBackwardWeight)   a function/const/class/method
// Inline code that looks like a repository path (`src/kernels/conv2d.ts`) must exist too.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..', '..');
const DOCS = join(ROOT, 'docs');

/** Markdown links [text](target) outside fenced code blocks, with their line numbers. */
export function markdownLinks(md: string): { target: string; line: number }[] {
  const out: { target: string; line: number }[] = [];
  let fenced = false;
  md.split('\n').forEach((text, i) => {
    if (/^\s*```/.test(text)) { fenced = !fenced; return; }
    if (fenced) return;
    for (const m of text.matchAll(/\[[^\]]*\]\(([^)\s]+)\)/g)) out.push({ target: m[1]!, line: i + 1 });
  });
  return out;
}

/** Repository paths written as inline code: `src/…`, `test/…`, `bench/…`, `scripts/…`, `docs/…`. */
export function codePaths(md: string): { path: string; line: number }[] {
  const out: { path: string; line: number }[] = [];
  let fenced = false;
  md.split('\n').forEach((text, i) => {
    if (/^\s*```/.test(text)) { fenced = !fenced; return; }
    if (fenced) return;
    for (const m of text.matchAll(/`((?:src|test|bench|scripts|docs|weights|examples)\/[\w./-]+)`/g)) out.push({ path: m[1]!, line: i + 1 });
  });
  return out;
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Index of the declaration of `name` in TypeScript source at or after `from`, or −1. */
export function declarationIndex(src: string, name: string, from = 0): number {
  const n = escape(name);
  const patterns = [
    // function / class / interface / type / enum / const / let
    new RegExp(`\\b(?:function\\*?|class|interface|type|enum|const|let|var)\\s+${n}\\b`, 'g'),
    // a method, getter/setter, or static/async/generator method: `  private async *name(` / `  name<T>(`
    new RegExp(`^[ \\t]+(?:(?:public|private|protected|static|async|override|readonly|get|set)\\s+)*\\*?\\s*${n}\\s*(?:<[^\\n]*?>)?\\s*\\(`, 'gm'),
    // a property holding a function: `  onDispatch: (…) => …` / `  timing = false`
    new RegExp(`^[ \\t]+(?:(?:public|private|protected|static|readonly)\\s+)*${n}\\s*[:=]`, 'gm'),
  ];
  let best = -1;
  for (const re of patterns) {
    re.lastIndex = from;
    const m = re.exec(src);
    if (m && (best < 0 || m.index < best)) best = m.index;
  }
  return best;
}

/** Whether `symbol` ('name' or 'Class.member') is declared in `src`. */
export function declares(src: string, symbol: string): boolean {
  const parts = symbol.split('.');
  let at = 0;
  for (const p of parts) {
    const i = declarationIndex(src, p, at);
    if (i < 0) return false;
    at = i + 1;
  }
  return true;
}

const docs = existsSync(DOCS) ? readdirSync(DOCS).filter((f) => f.endsWith('.md')).sort() : [];

describe('docs links', () => {
  it('finds symbols the way the docs name them', () => {
    const src = 'export class A {\n  static make<T extends Record<string, number>>(t: T) {}\n  private async *gen(x: number) {}\n  get size(): number { return 1; }\n  run<T>(f: () => T) {}\n}\nconst k = memo(\nexport function f() {}\n';
    for (const s of ['A', 'A.make', 'A.gen', 'A.size', 'A.run', 'k', 'f']) expect(declares(src, s), s).toBe(true);
    for (const s of ['B', 'A.missing', 'f.A']) expect(declares(src, s), s).toBe(false);
  });

  it('covers the walkthrough and the kernel guide', () => {
    expect(docs).toEqual(expect.arrayContaining(['kernels.md', 'walkthrough.md']));
  });

  for (const doc of docs) {
    it(`${doc}: every linked file exists and every named function/class is declared in it`, () => {
      const md = readFileSync(join(DOCS, doc), 'utf8');
      const problems: string[] = [];
      const links = markdownLinks(md).filter((l) => !/^[a-z]+:/i.test(l.target) && !l.target.startsWith('#'));
      for (const { target, line } of links) {
        const [path, frag] = target.split('#') as [string, string | undefined];
        const file = resolve(dirname(join(DOCS, doc)), decodeURI(path));
        if (!existsSync(file)) { problems.push(`${doc}:${line}: ${path} does not exist`); continue; }
        if (frag && /\.(ts|mjs|js)$/.test(file) && !declares(readFileSync(file, 'utf8'), frag)) {
          problems.push(`${doc}:${line}: ${frag} is not declared in ${path}`);
        }
      }
      for (const { path, line } of codePaths(md)) if (!existsSync(join(ROOT, path))) problems.push(`${doc}:${line}: \`${path}\` does not exist`);
      expect(problems).toEqual([]);
      console.log(`${doc}: ${links.length} links, ${links.filter((l) => l.target.includes('#')).length} to named code, all resolve`);
    });
  }
});
