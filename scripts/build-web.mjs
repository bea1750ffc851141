// Builds the browser app (web/) into a static site: dist/web/ (or the folder given with --out).
//
//   dist/web/index.html, bench.html, style.css     the pages (copied)
//   dist/web/app.js, worker.js, bench.js, bench-worker.js   esbuild bundles (ESM, source maps)
//   dist/web/demo/fashion5-source-cnn.onnx          the bundled demo model (weights/)
//   dist/web/demo/fashion5.json + fashion5.bin      the demo dataset (examples/fashion5) packed: one
//                                                   listing and one blob instead of 1,430 requests
//
// The engine (src/) is bundled as it is: nothing in it knows which host it runs in. The few Node
// modules reachable from shared code are dynamic imports behind `process.versions.node` checks
// (src/gpu/device.ts, src/onnx/reader.ts); they stay external and are never loaded in a browser.

import { build } from 'esbuild';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const argOut = process.argv.indexOf('--out');
const out = resolve(root, argOut > 0 ? process.argv[argOut + 1] : 'dist/web');

const DEMO_MODEL = 'weights/fashion5-source-cnn.onnx';
const DEMO_DATA = 'examples/fashion5';

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'demo'), { recursive: true });

await build({
  absWorkingDir: root,
  entryPoints: { app: 'web/app.ts', worker: 'web/worker.ts', bench: 'web/bench.ts', 'bench-worker': 'web/bench-worker.ts' },
  outdir: out,
  bundle: true,
  platform: 'browser',
  format: 'esm',
  target: 'chrome121',
  sourcemap: true,
  // NOTE: `node:*` is only reached through dynamic imports that a browser never executes.
  external: ['node:*'],
  logLevel: 'warning',
});

for (const f of ['index.html', 'bench.html', 'style.css']) copyFileSync(join(root, 'web', f), join(out, f));

// The demo model, and the demo dataset packed: [{ path, offset, length }] + the concatenated bytes.
if (existsSync(join(root, DEMO_MODEL))) copyFileSync(join(root, DEMO_MODEL), join(out, 'demo', 'fashion5-source-cnn.onnx'));
else console.warn(`build-web: ${DEMO_MODEL} is missing; the app's demo model button will not work`);
const dataDir = join(root, DEMO_DATA);
if (existsSync(dataDir)) {
  const files = [];
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(png|jpe?g|webp)$/i.test(e.name)) files.push(p);
    }
  };
  walk(dataDir);
  const chunks = [];
  const listing = [];
  let offset = 0;
  for (const f of files) {
    const b = readFileSync(f);
    listing.push({ path: relative(dataDir, f).split('\\').join('/'), offset, length: b.length });
    chunks.push(b);
    offset += b.length;
  }
  writeFileSync(join(out, 'demo', 'fashion5.bin'), Buffer.concat(chunks));
  writeFileSync(join(out, 'demo', 'fashion5.json'), JSON.stringify({ name: 'fashion5', source: DEMO_DATA, files: listing }));
} else console.warn(`build-web: ${DEMO_DATA} is missing; the app's demo dataset button will not work`);

const size = readdirSync(out).reduce((s, f) => s + (statSync(join(out, f)).isFile() ? statSync(join(out, f)).size : 0), 0);
console.log(`built ${relative(process.cwd(), out) || '.'} (${(size / 1024).toFixed(0)} KiB of pages and scripts)`);
