// What the browser tests need around a page: the built site served on localhost (the real
// `scripts/serve-web.mjs`), and Debian's Chromium driven by playwright-core, with WebGPU on its
// software adapter (SwiftShader). Never a downloaded browser: the network here is closed.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = process.env.WGTRAIN_CHROMIUM ?? '/usr/bin/chromium';

/** Whether the browser tests can run here; in CI (CI=true) a missing Chromium is an error, not a skip. */
export function haveChromium(): boolean {
  if (existsSync(CHROMIUM)) return true;
  if (process.env.CI === 'true') throw new Error(`${CHROMIUM} is missing: .ci/run installs Debian's chromium package for the browser tests`);
  console.warn(`browser tests skipped: ${CHROMIUM} is missing (apt-get install chromium)`);
  return false;
}

/**
 * Flags: root needs --no-sandbox; the rest keep a headless Chromium off the (closed) network and
 * quiet. WebGPU is behind --enable-unsafe-webgpu on Linux; without it the app must say so.
 */
export function chromiumArgs(webgpu: boolean): string[] {
  return [
    '--no-sandbox', '--no-first-run', '--no-default-browser-check',
    '--disable-background-networking', '--disable-component-update', '--disable-default-apps', '--disable-sync',
    '--disable-domain-reliability', '--disable-client-side-phishing-detection', '--disable-breakpad',
    '--metrics-recording-only', '--disable-features=Translate,MediaRouter,OptimizationHints',
    ...(webgpu ? ['--enable-unsafe-webgpu'] : []),
  ];
}

export function launch(webgpu = true): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: chromiumArgs(webgpu) });
}

/** Starts `node scripts/serve-web.mjs --port 0` and resolves with the URL it prints. */
export function serve(): Promise<{ url: string; proc: ChildProcess }> {
  const proc = spawn('node', ['scripts/serve-web.mjs', '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '', err = '';
    const timer = setTimeout(() => reject(new Error(`serve-web printed no URL in 10 s: ${err}`)), 10_000);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^(http:\/\/127\.0\.0\.1:\d+\/)$/m.exec(out);
      if (m) { clearTimeout(timer); resolve({ url: m[1]!, proc }); }
    });
    proc.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`serve-web exited with ${code}: ${err}`)); });
  });
}
