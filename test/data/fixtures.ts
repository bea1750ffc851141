// Tiny images written with sharp into a temporary folder, so no binary fixtures live in the repo.

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import sharp from 'sharp';

export type Format = 'png' | 'jpeg' | 'webp';

/** A fresh temporary folder; `cleanup` removes it. */
export async function tempDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'wgtrain-data-'));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * Encodes raw pixels (HWC, `channels` per pixel: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA). PNG and
 * lossless WebP keep the values exactly.
 * NOTE: sharp writes sRGB unless told otherwise, so 1- and 2-channel input is kept gray with 'b-w'.
 */
export async function encode(
  pixels: ArrayLike<number>, width: number, height: number, channels: 1 | 2 | 3 | 4, format: Format = 'png',
  opts: { orientation?: number; cmyk?: boolean } = {},
): Promise<Buffer> {
  let s = sharp(Buffer.from(Uint8Array.from(pixels)), { raw: { width, height, channels } });
  if (channels <= 2) s = s.toColourspace('b-w');
  if (opts.cmyk) s = s.toColourspace('cmyk');
  if (opts.orientation) s = s.withMetadata({ orientation: opts.orientation });
  switch (format) {
    case 'png': return s.png().toBuffer();
    case 'jpeg': return s.jpeg({ quality: 100, chromaSubsampling: '4:4:4' }).toBuffer();
    case 'webp': return s.webp({ lossless: true }).toBuffer();
  }
}

/** A width×height image of one RGB colour. */
export function solid(width: number, height: number, rgb: readonly [number, number, number]): number[] {
  return Array.from({ length: width * height }, () => [...rgb]).flat();
}

/** Writes bytes to dir/rel, creating folders. */
export async function put(dir: string, rel: string, bytes: Uint8Array | string): Promise<string> {
  const file = join(dir, ...rel.split('/'));
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, bytes);
  return file;
}

/** Writes a solid-colour PNG (or other format) at dir/rel. */
export async function putSolid(
  dir: string, rel: string, width: number, height: number, rgb: readonly [number, number, number], format: Format = 'png',
): Promise<string> {
  return put(dir, rel, await encode(solid(width, height, rgb), width, height, 3, format));
}
