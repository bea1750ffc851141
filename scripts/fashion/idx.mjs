// A reader for the IDX format, the container of MNIST and Fashion-MNIST
// (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS"):
//
//   bytes 0-1   0x00 0x00
//   byte  2     element type: 0x08 unsigned byte (the only one these datasets use)
//   byte  3     number of dimensions D
//   D × uint32  the dimensions, big-endian
//   then        the elements, row-major (last dimension fastest)
//
// So the first four bytes, read as a big-endian uint32, are 0x00000803 for a stack of images
// (N × H × W) and 0x00000801 for a vector of labels (N). Files may be gzipped (the .gz the dataset is
// distributed as); both are read.

import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';

const UBYTE = 0x08;
export const IMAGES_MAGIC = 0x00000803;
export const LABELS_MAGIC = 0x00000801;

/** True when the bytes start with the gzip signature 1f 8b. */
function isGzip(bytes) {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/**
 * Parses IDX bytes (already decompressed) of unsigned-byte elements.
 * Returns the dimensions and a view of the elements (no copy).
 * @param {Uint8Array} bytes
 * @param {string} [name] the file name, for error messages
 */
export function parseIdx(bytes, name = 'idx data') {
  if (bytes.length < 4 || bytes[0] !== 0 || bytes[1] !== 0) {
    throw new Error(`${name}: not an IDX file (it must start with two zero bytes; is it still gzipped, or another format?)`);
  }
  const type = bytes[2], rank = bytes[3];
  if (type !== UBYTE) throw new Error(`${name}: IDX element type 0x${type.toString(16)} is not supported (only 0x08, unsigned byte)`);
  if (rank === 0) throw new Error(`${name}: IDX file with 0 dimensions`);
  const header = 4 + 4 * rank;
  if (bytes.length < header) throw new Error(`${name}: truncated IDX header (${bytes.length} bytes, expected at least ${header})`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims = [];
  for (let d = 0; d < rank; d++) dims.push(view.getUint32(4 + 4 * d, false)); // false: big-endian
  const count = dims.reduce((a, b) => a * b, 1);
  // NOTE: exact length, not "at least": a short file is truncated and a long one is not what its header says.
  if (bytes.length - header !== count) {
    throw new Error(`${name}: IDX header says ${dims.join('×')} = ${count} bytes of data, the file holds ${bytes.length - header}`);
  }
  return { dims, data: bytes.subarray(header) };
}

/**
 * Reads an IDX file, gzipped or plain (told apart by content, not by name).
 * @param {string} file
 */
export function readIdx(file) {
  let bytes = new Uint8Array(readFileSync(file));
  if (isGzip(bytes)) bytes = new Uint8Array(gunzipSync(bytes));
  return parseIdx(bytes, file);
}

/**
 * Reads an N × H × W stack of 8-bit images (magic 0x00000803).
 * pixels: N·H·W bytes, image n's row y at offset (n·H + y)·W; 0 is the background (black).
 * @param {string} file
 */
export function readIdxImages(file) {
  const { dims, data } = readIdx(file);
  if (dims.length !== 3) throw new Error(`${file}: expected images (magic 0x00000803, 3 dimensions), found ${dims.length} dimension(s)`);
  const [count, height, width] = dims;
  return { count, height, width, pixels: data };
}

/**
 * Reads a vector of N 8-bit labels (magic 0x00000801).
 * @param {string} file
 */
export function readIdxLabels(file) {
  const { dims, data } = readIdx(file);
  if (dims.length !== 1) throw new Error(`${file}: expected labels (magic 0x00000801, 1 dimension), found ${dims.length} dimensions`);
  return data;
}
