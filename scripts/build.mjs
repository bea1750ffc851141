// Bundles the CLI and the library with esbuild. Runs on `npm ci` (the `prepare` script), so
// `npx wgtrain` works on a fresh clone with no extra step.
import { build } from 'esbuild';
import { chmodSync } from 'node:fs';

const common = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: true,
  // webgpu is a native addon; commander stays a normal dependency.
  packages: 'external',
  logLevel: 'warning',
};
await build({ ...common, entryPoints: ['bin/wgtrain.ts'], outfile: 'dist/wgtrain.js', banner: { js: '#!/usr/bin/env node' } });
await build({ ...common, entryPoints: ['src/index.ts'], outfile: 'dist/index.js' });
chmodSync('dist/wgtrain.js', 0o755);
