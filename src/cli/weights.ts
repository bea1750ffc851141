// `wgtrain weights list|pull`: the public pretrained models of weights/manifest.json.
//
//   wgtrain weights list [--json]                 what can be fetched, its size, checksum, licence
//   wgtrain weights pull NAME [--dir weights/]    download → weights/NAME.onnx, SHA-256 checked
//
// The manifest says, per model, where the ONNX file lives and what the model expects (input size,
// preprocessing, class list): an ONNX file carries none of that (design.md, "preprocessing travels
// with the model"). The download itself (resume, streaming hash, atomic rename) is in download.ts.

import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import type { ModelFamily } from '../onnx/import.js';
import { checkPreprocessing, type Preprocessing } from '../data/preprocessing.js';
import { UserError } from './errors.js';
import { downloadFile, formatBytes, progressReporter, sha256File, type DownloadResult } from './download.js';

export interface WeightsEntry {
  /** Also the file name: `NAME.onnx`. Lowercase letters, digits, `.`, `_`, `-`. */
  name: string;
  family: ModelFamily;
  description: string;
  /** Where the ONNX file is; null when there is no official one (then `recipe` says how to make it). */
  url: string | null;
  /** SHA-256 (lowercase hex) of the file at url; null when none was published. Never guessed. */
  sha256: string | null;
  /** File size in bytes, for display; null when unknown. The checksum, not this, decides. */
  bytes: number | null;
  /** Where sha256/bytes come from, or why there is none. */
  checksumSource: string;
  /** Input tensor shape without the batch: [C, H, W]. */
  inputSize: [number, number, number];
  preprocessing: Preprocessing;
  classes: { dataset: string; count: number; url: string; order?: string };
  licence: string;
  /** The model card or documentation page. */
  source: string;
  /** For url null: the command that produces the file. */
  recipe: string | null;
  notes?: string;
}

export interface WeightsManifest {
  format: 'wgtrain-weights-manifest';
  version: 1;
  about?: string;
  models: WeightsEntry[];
}

/** How the commands talk to the user; tests pass their own. */
export interface CliIo {
  out: (s: string) => void;
  err: (s: string) => void;
  /** stderr is a terminal: redraw the progress bar in place. */
  tty: boolean;
}

const processIo: CliIo = {
  out: (s) => { process.stdout.write(s); },
  err: (s) => { process.stderr.write(s); },
  tty: process.stderr.isTTY === true,
};

const NAME_RE = /^[a-z0-9][a-z0-9._-]*$/;
const SHA256_RE = /^[0-9a-f]{64}$/;
const FAMILIES: readonly ModelFamily[] = ['vgg16', 'resnet34', 'other'];

/**
 * weights/manifest.json of the package (next to the demo model).
 * NOTE: found by walking up from this module, which is src/cli/ in the repo and dist/ when bundled.
 */
export function defaultManifestPath(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    if (existsSync(join(d, 'package.json'))) return join(d, 'weights', 'manifest.json');
    d = dirname(d);
  }
  return join(process.cwd(), 'weights', 'manifest.json');
}

/** Reads and checks a manifest; every problem is a UserError naming the file and the entry. */
export function loadManifest(path: string): WeightsManifest {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `is not readable JSON (${(e as Error).message})`;
    throw new UserError(`weights manifest '${path}' ${why}`);
  }
  return checkManifest(json, path);
}

export function checkManifest(json: unknown, path = 'manifest'): WeightsManifest {
  const bad = (what: string): never => { throw new UserError(`weights manifest '${path}': ${what}`); };
  const m = json as Partial<WeightsManifest> | null;
  if (typeof m !== 'object' || m === null || m.format !== 'wgtrain-weights-manifest') {
    bad('not a wgtrain weights manifest (format must be "wgtrain-weights-manifest")');
  }
  if (m!.version !== 1) bad(`version ${String(m!.version)} is not supported (this wgtrain reads version 1)`);
  if (!Array.isArray(m!.models)) bad('"models" must be a list');
  const seen = new Set<string>();
  for (const [i, e] of m!.models!.entries()) {
    const at = (what: string) => bad(`model ${typeof e?.name === 'string' ? `'${e.name}'` : `#${i}`}: ${what}`);
    if (typeof e !== 'object' || e === null) at('not an object');
    if (typeof e.name !== 'string' || !NAME_RE.test(e.name)) at('name must be lowercase letters, digits, ".", "_", "-"');
    if (seen.has(e.name)) at('listed twice');
    seen.add(e.name);
    if (!FAMILIES.includes(e.family)) at(`family must be one of ${FAMILIES.join(', ')}`);
    for (const k of ['description', 'checksumSource', 'licence', 'source'] as const) {
      if (typeof e[k] !== 'string' || !e[k]) at(`${k} must be a non-empty string`);
    }
    if (e.url !== null && !(typeof e.url === 'string' && /^https?:\/\//.test(e.url))) at('url must be an http(s) URL or null');
    if (e.url === null && !(typeof e.recipe === 'string' && e.recipe)) at('with url null, recipe must say how to make the file');
    if (e.sha256 !== null && !(typeof e.sha256 === 'string' && SHA256_RE.test(e.sha256))) at('sha256 must be 64 lowercase hex digits or null');
    if (e.bytes !== null && !(Number.isInteger(e.bytes) && e.bytes > 0)) at('bytes must be a positive integer or null');
    try {
      checkPreprocessing(e.preprocessing);
    } catch (err) {
      at((err as Error).message);
    }
    const s = e.inputSize;
    if (!(Array.isArray(s) && s.length === 3 && s[0] === 3 && s[1] === e.preprocessing.size && s[2] === e.preprocessing.size)) {
      at(`inputSize must be [3, ${e.preprocessing.size}, ${e.preprocessing.size}] (RGB, preprocessing.size)`);
    }
    const c = e.classes;
    if (!(c && typeof c.dataset === 'string' && Number.isInteger(c.count) && c.count > 0 && typeof c.url === 'string')) {
      at('classes must be { dataset, count, url }');
    }
  }
  return m as WeightsManifest;
}

export function findEntry(manifest: WeightsManifest, name: string): WeightsEntry {
  const e = manifest.models.find((x) => x.name === name);
  if (!e) throw new UserError(`no pretrained model named '${name}': known are ${manifest.models.map((x) => x.name).join(', ')} (wgtrain weights list)`);
  return e;
}

export interface PullOptions {
  name: string;
  /** Folder the file goes to, as `NAME.onnx` (default `weights`). */
  dir?: string;
  /** Download from here instead of the manifest's URL (a mirror); the manifest's checksum still applies. */
  url?: string;
  /** Manifest file (default: the package's weights/manifest.json). */
  manifest?: string;
  /** Expected SHA-256, overriding the manifest's (how a user pins a model whose checksum is null). */
  sha256?: string;
  allowUnverified?: boolean;
  io?: CliIo;
}

/** Downloads one manifest model to `dir/NAME.onnx`; see downloadFile for what is guaranteed. */
export async function pullWeights(o: PullOptions): Promise<DownloadResult & { entry: WeightsEntry }> {
  const io = o.io ?? processIo;
  const entry = findEntry(loadManifest(o.manifest ?? defaultManifestPath()), o.name);
  const dest = join(o.dir ?? 'weights', `${entry.name}.onnx`);
  if (o.sha256 !== undefined && !SHA256_RE.test(o.sha256.toLowerCase())) {
    throw new UserError(`--sha256 must be 64 hex digits, got '${o.sha256}'`);
  }
  const sha256 = o.sha256?.toLowerCase() ?? entry.sha256;
  const url = o.url ?? entry.url;
  if (url === null) {
    // Nothing to download: fine if the user already made the file with the recipe.
    if (existsSync(dest)) {
      return { entry, path: dest, sha256: await sha256File(dest), bytes: statSync(dest).size, verified: false, resumedFrom: 0, alreadyPresent: true };
    }
    const recipe = entry.recipe!.replaceAll(`weights/${entry.name}.onnx`, dest);
    throw new UserError(`'${entry.name}' has no download URL (no official ONNX file exists); make ${dest} with: ${recipe} ` +
      '(or pass --url URL of your own copy)');
  }
  const bar = progressReporter(io.err, io.tty, entry.name);
  try {
    const r = await downloadFile({
      url, dest, sha256, allowUnverified: o.allowUnverified,
      onProgress: (p) => bar.update(p),
      onNote: (s) => { bar.end(); io.err(`${entry.name}: ${s}\n`); },
    });
    return { ...r, entry };
  } finally {
    bar.end();
  }
}

// ── commands ──────────────────────────────────────────────────────────────────────────────────────

interface ListFlags { json?: boolean; manifest?: string; dir?: string }
interface PullFlags { dir?: string; url?: string; manifest?: string; sha256?: string; allowUnverified?: boolean; json?: boolean }

export function listCommand(flags: ListFlags, io: CliIo = processIo) {
  const path = flags.manifest ?? defaultManifestPath();
  const manifest = loadManifest(path);
  const dir = flags.dir ?? 'weights';
  const models = manifest.models.map((e) => ({ ...e, installed: existsSync(join(dir, `${e.name}.onnx`)) }));
  if (flags.json) { io.out(`${JSON.stringify({ manifest: path, dir, models })}\n`); return; }

  const rows = models.map((e) => [
    e.name,
    e.family,
    e.bytes === null ? '-' : formatBytes(e.bytes),
    e.url === null ? 'export yourself' : e.sha256 === null ? 'no checksum' : 'sha256 pinned',
    e.installed ? `installed (${join(dir, `${e.name}.onnx`)})` : '',
  ]);
  const head = ['NAME', 'FAMILY', 'SIZE', 'DOWNLOAD', ''];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  io.out(`${[head, ...rows].map(line).join('\n')}\n`);
  io.out('\nwgtrain weights pull NAME   downloads one to weights/NAME.onnx; --json shows URLs, preprocessing, class lists, licences\n');
}

export async function pullCommand(name: string, flags: PullFlags, io: CliIo = processIo) {
  const r = await pullWeights({ name, ...flags, io });
  if (flags.json) {
    const { entry, ...rest } = r;
    io.out(`${JSON.stringify({ name: entry.name, ...rest })}\n`);
    return;
  }
  const state = r.alreadyPresent
    ? (r.verified ? 'already present, SHA-256 verified' : 'already present')
    : r.verified ? 'SHA-256 verified' : 'UNVERIFIED (installed with --allow-unverified)';
  io.out(`${r.path}  ${formatBytes(r.bytes)}  sha256 ${r.sha256}  ${state}\n`);
  io.out(`fine-tune it: wgtrain finetune --model ${r.path} --data YOUR_IMAGE_FOLDER\n`);
}

/** Adds `weights list` and `weights pull` to the wgtrain program. */
export function registerWeights(program: Command, io: CliIo = processIo): Command {
  const weights = program.command('weights')
    .description('list and download public pretrained models (VGG16, ResNet34) from weights/manifest.json');

  weights.command('list')
    .description('the models in the manifest: family, size, whether a checksum is pinned, whether installed')
    .option('--json', 'print the manifest entries as one JSON object')
    .option('--dir <dir>', 'where pulled models are looked for (default weights)')
    .option('--manifest <file>', 'manifest to read (default: the package\'s weights/manifest.json)')
    .action((flags: ListFlags) => listCommand(flags, io));

  weights.command('pull')
    .description('download NAME to DIR/NAME.onnx: progress bar, resumable, SHA-256 checked')
    .argument('<name>', 'model name (wgtrain weights list)')
    .option('--dir <dir>', 'folder to put NAME.onnx in (default weights)')
    .option('--url <url>', 'download from this URL instead (a mirror); the manifest\'s checksum still applies')
    .option('--sha256 <hex>', 'expected SHA-256, for a model the manifest has no checksum for')
    .option('--allow-unverified', 'install a file that has no checksum to check it against')
    .option('--manifest <file>', 'manifest to read (default: the package\'s weights/manifest.json)')
    .option('--json', 'print one JSON object')
    .action((name: string, flags: PullFlags) => pullCommand(name, flags, io));

  return weights;
}
