// Damaged and wrong inputs to the ONNX reader and importer: every case ends in an OnnxError with a
// one-line message (in-process), and through the CLI in exit code 1 with one line (no stack trace).

import { spawnSync, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeModel, OnnxError } from '../../src/onnx/reader.js';
import { importModel } from '../../src/onnx/import.js';
import { encodeTensorProto } from '../../src/onnx/schema.js';
import { getGpu, type Gpu } from '../../src/gpu/index.js';
import { Rng } from '../helpers.js';

const MODEL = 'weights/fashion5-source-cnn.onnx';
let gpu: Gpu;
let bytes: Uint8Array;
beforeAll(async () => { gpu = await getGpu(); bytes = new Uint8Array(readFileSync(MODEL)); });

/** Decode + import; returns 'ok' or the OnnxError's message. Anything else fails the test. */
function attempt(b: Uint8Array): string {
  try {
    const m = importModel(gpu, decodeModel(b));
    m.dispose();
    return 'ok';
  } catch (e) {
    if (!(e instanceof OnnxError)) throw new Error(`not an OnnxError: ${(e as Error).stack}`);
    expect(e.message.includes('\n')).toBe(false);
    return e.message;
  }
}

describe('ONNX fuzz (in-process)', () => {
  it('truncated at 60 offsets: an OnnxError, never a crash', () => {
    let errors = 0;
    for (let i = 0; i < 60; i++) {
      const cut = Math.floor((bytes.length * i) / 60);
      if (attempt(bytes.subarray(0, cut)) !== 'ok') errors++;
    }
    console.log(`truncations: ${errors}/60 refused`);
    expect(errors).toBeGreaterThanOrEqual(59);
  });

  it('200 random byte flips: each either imports or is an OnnxError', () => {
    const rng = new Rng(1);
    const outcomes = { ok: 0, refused: 0 };
    for (let i = 0; i < 200; i++) {
      const b = bytes.slice();
      for (let k = 0; k < 4; k++) b[rng.int(b.length)] ^= 1 << rng.int(8);
      if (attempt(b) === 'ok') outcomes.ok++; else outcomes.refused++;
    }
    console.log(`byte flips: ${outcomes.ok} still import (flips inside weight data), ${outcomes.refused} refused`);
    expect(outcomes.ok + outcomes.refused).toBe(200);
  }, 120_000);

  it('empty, garbage, wrong magic, and a TensorProto that is not a model', () => {
    expect(attempt(new Uint8Array(0))).toMatch(/not an ONNX model/);
    expect(attempt(new TextEncoder().encode('PK\x03\x04 this is a zip file'))).toMatch(/not an ONNX model/);
    expect(attempt(Uint8Array.from({ length: 1000 }, (_, i) => (i * 7919) & 255))).toMatch(/not an ONNX model|ONNX/);
    expect(attempt(encodeTensorProto({ name: 'x', dims: [2], data_type: 1, float_data: [1, 2] }))).toMatch(/ONNX/);
  });
});

describe('ONNX fuzz (CLI)', () => {
  let dir: string;
  beforeAll(() => { execFileSync('node', ['scripts/build.mjs']); dir = mkdtempSync(join(tmpdir(), 'wgtrain-fuzz-')); });
  const inspect = (path: string) => spawnSync('node', ['dist/wgtrain.js', 'inspect', path], { encoding: 'utf8', timeout: 60_000 });
  it.each([
    ['empty', new Uint8Array(0)],
    ['truncated at 1/3', null],
    ['wrong magic', new TextEncoder().encode('\x89PNG\r\n\x1a\n not a model')],
    ['a tensor proto', encodeTensorProto({ name: 'x', dims: [1], data_type: 1, float_data: [1] })],
  ])('%s → exit 1, one line', (name, content) => {
    const f = join(dir, `${name.replace(/\W+/g, '_')}.onnx`);
    writeFileSync(f, content ?? bytes.subarray(0, Math.floor(bytes.length / 3)));
    const r = inspect(f);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr.trim().split('\n').filter((l) => l.startsWith('wgtrain:'))).toHaveLength(1);
    expect(r.stderr).not.toMatch(/\n\s+at .*:\d+:\d+/);
  });
  it('a directory → exit 1, one line', () => {
    const r = inspect(dir);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/wgtrain: .*(folder|director)/i);
  });
});
