import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { VERSION } from '../../src/version.js';

const bin = 'dist/wgtrain.js';
beforeAll(() => { execFileSync('node', ['scripts/build.mjs']); });

function run(...args: string[]) {
  const r = spawnSync('node', [bin, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('wgtrain CLI', () => {
  it('--version prints the package version', () => {
    const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };
    expect(VERSION).toBe(pkg.version);
    const r = run('--version');
    expect(r.code).toBe(0);
    expect(r.out.trim()).toBe(pkg.version);
  });

  it('--help lists the commands', () => {
    const r = run('--help');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/Usage: wgtrain/);
    expect(r.out).toMatch(/info/);
  });

  it('an unknown command is a one-line error with exit code 1', () => {
    const r = run('frobnicate');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/unknown command 'frobnicate'/);
    expect(r.err).not.toMatch(/at .*\.js:\d+/); // no stack trace
  });

  it('info --json describes the adapter', () => {
    const r = run('info', '--json');
    expect(r.code).toBe(0);
    const info = JSON.parse(r.out) as { adapter: string; limits: { maxStorageBufferBindingSize: number } };
    expect(info.limits.maxStorageBufferBindingSize).toBeGreaterThan(0);
    expect(info.adapter.length).toBeGreaterThan(0);
  });
});
