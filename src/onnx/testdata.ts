// Node-only helpers for ONNX test data in the layout of the ONNX backend test runner:
//
//   <suite>/<test>/model.onnx
//   <suite>/<test>/test_data_set_<N>/input_<K>.pb     serialized TensorProto, K in graph-input order
//   <suite>/<test>/test_data_set_<N>/output_<K>.pb    serialized TensorProto, K in graph-output order
//
// The data folder is $WGTRAIN_ONNX_DATA, else ../shared/onnx next to the repository root (see
// shared/onnx/README.md for what is there). Tests skip with a notice where it is absent.

import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readTensorProto, type OnnxTensor } from './reader.js';

/** The repository root: two levels above this file (src/onnx/). */
const REPO_ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..');

/** The ONNX test data folder ($WGTRAIN_ONNX_DATA or <repo>/../shared/onnx); it may not exist. */
export function onnxDataDir(): string {
  return resolve(REPO_ROOT, process.env.WGTRAIN_ONNX_DATA ?? join('..', 'shared', 'onnx'));
}

/** True when the data folder exists; `what` (a subfolder) must exist too when given. */
export function hasOnnxData(what = ''): boolean {
  return existsSync(join(onnxDataDir(), what));
}

export interface TestDataSet {
  /** Folder of the set (test_data_set_N). */
  dir: string;
  /** input_0.pb, input_1.pb, … decoded, in graph-input order. */
  inputs: OnnxTensor[];
  /** output_0.pb, … decoded, in graph-output order. */
  outputs: OnnxTensor[];
}

export interface BackendTest {
  /** Folder name, e.g. 'test_conv_with_strides_padding'. */
  name: string;
  dir: string;
  modelPath: string;
}

/** The tests of a suite folder (every subfolder holding model.onnx), sorted by name. */
export function listBackendTests(suiteDir: string): BackendTest[] {
  return readdirSync(suiteDir)
    .filter((name) => existsSync(join(suiteDir, name, 'model.onnx')))
    .sort()
    .map((name) => ({ name, dir: join(suiteDir, name), modelPath: join(suiteDir, name, 'model.onnx') }));
}

/** Decodes every test_data_set_N of a test folder, in N order. */
export function loadTestDataSets(testDir: string): TestDataSet[] {
  const sets = readdirSync(testDir)
    .filter((d) => /^test_data_set_\d+$/.test(d) && statSync(join(testDir, d)).isDirectory())
    .sort((a, b) => setIndex(a) - setIndex(b));
  return sets.map((d) => {
    const dir = join(testDir, d);
    return { dir, inputs: readIndexed(dir, 'input'), outputs: readIndexed(dir, 'output') };
  });
}

function setIndex(name: string): number {
  return Number(name.slice('test_data_set_'.length));
}

/** prefix_0.pb, prefix_1.pb, … until one is missing. */
function readIndexed(dir: string, prefix: 'input' | 'output'): OnnxTensor[] {
  const out: OnnxTensor[] = [];
  for (let k = 0; ; k++) {
    const file = join(dir, `${prefix}_${k}.pb`);
    if (!existsSync(file)) return out;
    out.push(readTensorProto(new Uint8Array(readFileSync(file))));
  }
}
