import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { compareCodePoints, ImageFolder, isImageFile } from '../../src/data/folder.js';
import { DataError } from '../../src/data/errors.js';
import { MemorySource } from '../../src/data/image.js';
import { NodeFileSource, openImageFolder, SharpDecoder } from '../../src/data/node.js';
import { encode, put, putSolid, solid, tempDir } from './fixtures.js';

let tmp: { dir: string; cleanup: () => Promise<void> };
beforeAll(async () => { tmp = await tempDir(); });
afterAll(async () => { await tmp.cleanup(); });

/** Opens a folder, collecting warnings instead of printing them. */
async function open(root: string) {
  const warnings: string[] = [];
  const ds = await openImageFolder(root, { onWarning: (m) => warnings.push(m) });
  return { ds, warnings };
}

/** The DataError message of opening `root` (fails the test if it opens). */
async function openError(root: string): Promise<string> {
  try {
    await openImageFolder(root, { onWarning: () => {} });
  } catch (e) {
    expect(e).toBeInstanceOf(DataError);
    const msg = (e as Error).message;
    expect(msg).not.toContain('\n');
    return msg;
  }
  throw new Error(`opening ${root} should have failed`);
}

describe('ImageFolder: class discovery', () => {
  it('classes are sorted subfolders (code-point order); labels follow; images by extension, hidden ignored', async () => {
    const root = `${tmp.dir}/layout`;
    await putSolid(root, 'b/1.png', 3, 3, [0, 0, 255]);
    await putSolid(root, 'b/2.JPG', 3, 3, [0, 0, 255], 'jpeg');
    await putSolid(root, 'a/x.Jpeg', 3, 3, [255, 0, 0], 'jpeg');
    await putSolid(root, 'a/y.webp', 3, 3, [255, 0, 0], 'webp');
    await putSolid(root, 'a/deeper/z.png', 3, 3, [255, 0, 0]); //   subfolders are searched
    await putSolid(root, 'B/only.png', 3, 3, [0, 255, 0]); //        'B' (U+0042) < 'a' (U+0061)
    await putSolid(root, 'a/.hidden.png', 3, 3, [1, 1, 1]); //       hidden file
    await putSolid(root, '.git/c.png', 3, 3, [1, 1, 1]); //          hidden folder: not a class
    await putSolid(root, 'a/.thumbs/t.png', 3, 3, [1, 1, 1]); //     hidden subfolder
    await putSolid(root, 'loose.png', 3, 3, [1, 1, 1]); //           files in the root are ignored
    await put(root, 'a/notes.txt', 'not an image');
    await put(root, 'b/anim.gif', 'GIF89a');
    const { ds, warnings } = await open(root);
    expect(ds.classes).toEqual(['B', 'a', 'b']);
    expect(ds.items).toEqual([
      { path: 'B/only.png', label: 0 },
      { path: 'a/deeper/z.png', label: 1 },
      { path: 'a/x.Jpeg', label: 1 },
      { path: 'a/y.webp', label: 1 },
      { path: 'b/1.png', label: 2 },
      { path: 'b/2.JPG', label: 2 },
    ]);
    // Labels match the folder each image is in.
    for (const it of ds.items) expect(ds.classes[it.label]).toBe(it.path.split('/')[0]);
    expect(ds.classCounts()).toEqual([1, 3, 2]);
    expect(ds.skipped).toEqual([]);
    expect(warnings).toEqual([]);
  });

  it('code-point order is UTF-8 byte order, not UTF-16 order', () => {
    const names = ['😀', '\uff01', 'é', 'z', 'Z', 'a'];
    expect([...names].sort(compareCodePoints)).toEqual(['Z', 'a', 'z', 'é', '\uff01', '😀']);
    // The default sort compares UTF-16 code units and puts the emoji (a surrogate pair, 0xD83D…) first.
    expect([...names].sort()).toEqual(['Z', 'a', 'z', 'é', '😀', '\uff01']);
    const bytes = (s: string) => [...new TextEncoder().encode(s)];
    const byBytes = [...names].sort((a, b) => {
      const x = bytes(a), y = bytes(b);
      for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
      return x.length - y.length;
    });
    expect([...names].sort(compareCodePoints)).toEqual(byBytes);
  });

  it('isImageFile', () => {
    expect(['a.jpg', 'a.JPEG', 'a.Png', 'a.webp', 'x.y.jpg'].every(isImageFile)).toBe(true);
    expect(['a.gif', 'a.txt', '.a.jpg', 'jpg', 'a.jpg.txt', '.jpg'].some(isImageFile)).toBe(false);
  });

  it('works over any ImageSource (MemorySource, as a browser would use)', async () => {
    const png = await encode(solid(2, 2, [9, 9, 9]), 2, 2, 3);
    const src = new MemorySource([['dog/1.png', png], ['cat/2.png', new Blob([new Uint8Array(png)])], ['cat/1.png', png]]);
    const ds = await ImageFolder.open(src, { decoder: new SharpDecoder() });
    expect(ds.classes).toEqual(['cat', 'dog']);
    expect(ds.items.map((i) => i.path)).toEqual(['cat/1.png', 'cat/2.png', 'dog/1.png']);
    expect((await ds.decode('cat/2.png')).data).toEqual(new Uint8Array(12).fill(9));
  });
});

describe('ImageFolder: bad layouts are one-line DataErrors', () => {
  it('missing folder', async () => {
    expect(await openError(`${tmp.dir}/nope`)).toMatch(/data folder ".*nope" does not exist: pass a folder/);
  });

  it('not a folder', async () => {
    const file = await put(tmp.dir, 'file.png', 'x');
    expect(await openError(file)).toMatch(/is a file, not a folder/);
  });

  it('no class subfolders (and a hint when images lie in the root)', async () => {
    const root = `${tmp.dir}/flat`;
    await putSolid(root, '1.png', 2, 2, [1, 2, 3]);
    await putSolid(root, '2.png', 2, 2, [1, 2, 3]);
    const msg = await openError(root);
    expect(msg).toMatch(/has no class subfolders/);
    expect(msg).toMatch(/holds 2 images directly: move them into one subfolder per class/);
  });

  it('an empty class folder is named', async () => {
    const root = `${tmp.dir}/emptyclass`;
    await putSolid(root, 'cat/1.png', 2, 2, [1, 2, 3]);
    await put(root, 'dog/readme.txt', 'no images here');
    expect(await openError(root)).toMatch(/class folder ".*emptyclass\/dog" has no images \(\.jpg .*\): add images to it or remove the folder/);
  });

  it('a class whose files are all unreadable', async () => {
    const root = `${tmp.dir}/unreadableclass`;
    await putSolid(root, 'cat/1.png', 2, 2, [1, 2, 3]);
    await put(root, 'dog/1.jpg', 'garbage');
    expect(await openError(root)).toMatch(/class folder ".*\/dog" has no readable images/);
  });

  it('only one class', async () => {
    const root = `${tmp.dir}/oneclass`;
    await putSolid(root, 'cat/1.png', 2, 2, [1, 2, 3]);
    expect(await openError(root)).toMatch(/has only one class \("cat"\): a classifier needs at least two class subfolders/);
  });
});

describe('ImageFolder: unreadable images', () => {
  it('corrupt files are skipped with one warning naming them and the count', async () => {
    const root = `${tmp.dir}/corrupt`;
    await putSolid(root, 'cat/1.png', 2, 2, [1, 2, 3]);
    await putSolid(root, 'cat/2.png', 2, 2, [1, 2, 3]);
    await putSolid(root, 'dog/1.png', 2, 2, [1, 2, 3]);
    await put(root, 'dog/broken.jpg', 'this is not a JPEG');
    await put(root, 'cat/empty.png', new Uint8Array(0));
    const { ds, warnings } = await open(root);
    expect(ds.items.map((i) => i.path)).toEqual(['cat/1.png', 'cat/2.png', 'dog/1.png']);
    expect(ds.skipped.map((s) => s.path)).toEqual(['cat/empty.png', 'dog/broken.jpg']);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/skipped 2 unreadable images in ".*corrupt": "cat\/empty.png" \(.+\), "dog\/broken.jpg" \(.+\)/);
  });

  it('a failure found later (markSkipped) warns once with the running count', async () => {
    const root = `${tmp.dir}/later`;
    await putSolid(root, 'a/1.png', 2, 2, [1, 2, 3]);
    await putSolid(root, 'b/1.png', 2, 2, [1, 2, 3]);
    const { ds, warnings } = await open(root);
    ds.markSkipped('a/1.png', 'boom');
    ds.markSkipped('a/1.png', 'boom');
    expect(warnings).toEqual(['skipped unreadable image "a/1.png" (boom); 1 skipped in total']);
    expect(ds.isSkipped('a/1.png')).toBe(true);
    expect(ds.classCounts()).toEqual([0, 1]);
  });
});

describe('SharpDecoder: any input → 8-bit RGB', () => {
  const dec = new SharpDecoder();
  const decode = async (bytes: Uint8Array) => { const r = await dec.decode(bytes); return { w: r.width, h: r.height, px: [...r.data] }; };

  it('grayscale PNG → R = G = B', async () => {
    const png = await encode([0, 100, 200, 255], 2, 2, 1);
    expect((await sharp(png).metadata()).channels).toBe(1); // the fixture really is 1-channel
    expect(await decode(png)).toEqual({ w: 2, h: 2, px: [0, 0, 0, 100, 100, 100, 200, 200, 200, 255, 255, 255] });
  });

  it('gray + alpha PNG → gray, alpha dropped', async () => {
    const png = await encode([7, 0, 100, 255, 200, 9, 255, 255], 2, 2, 2);
    expect((await sharp(png).metadata()).channels).toBe(2);
    expect((await decode(png)).px).toEqual([7, 7, 7, 100, 100, 100, 200, 200, 200, 255, 255, 255]);
  });

  it('RGBA PNG → alpha dropped, the stored colour kept (PIL convert("RGB"))', async () => {
    const png = await encode([10, 20, 30, 0, 200, 100, 50, 128, 1, 2, 3, 255, 0, 0, 0, 0], 2, 2, 4);
    expect((await sharp(png).metadata()).channels).toBe(4);
    expect((await decode(png)).px).toEqual([10, 20, 30, 200, 100, 50, 1, 2, 3, 0, 0, 0]);
  });

  it('lossless WebP with alpha, and JPEG', async () => {
    const webp = await encode([1, 2, 3, 50, 4, 5, 6, 255], 2, 1, 4, 'webp');
    expect((await decode(webp)).px).toEqual([1, 2, 3, 4, 5, 6]);
    const jpeg = await encode(solid(8, 8, [200, 60, 30]), 8, 8, 3, 'jpeg');
    const px = (await decode(jpeg)).px;
    expect(px.length).toBe(8 * 8 * 3);
    px.forEach((v, i) => expect(Math.abs(v - [200, 60, 30][i % 3]!)).toBeLessThanOrEqual(3));
  });

  it('CMYK JPEG → RGB', async () => {
    const jpeg = await encode(solid(4, 4, [200, 50, 20]), 4, 4, 3, 'jpeg', { cmyk: true });
    expect((await sharp(jpeg).metadata()).space).toBe('cmyk');
    const { px } = await decode(jpeg);
    expect(px.length).toBe(4 * 4 * 3);
    // Colour management moves it a little; it must still be the same orange-red.
    const [r, g, b] = px;
    expect(r!).toBeGreaterThan(180);
    expect(g!).toBeLessThan(80);
    expect(b!).toBeLessThan(50);
  });

  it('EXIF orientation is applied (6 = rotate 90° clockwise); probe reports the displayed size', async () => {
    // Stored 3×2:  R G B     displayed 2×3:  W R
    //              W K X                     K G
    //                                        X B
    const R = [255, 0, 0], G = [0, 255, 0], B = [0, 0, 255], W = [255, 255, 255], K = [0, 0, 0], X = [9, 9, 9];
    const png = await encode([R, G, B, W, K, X].flat(), 3, 2, 3, 'png', { orientation: 6 });
    expect((await sharp(png).metadata()).orientation).toBe(6);
    expect(await decode(png)).toEqual({ w: 2, h: 3, px: [W, R, K, G, X, B].flat() });
    expect(await dec.probe(png)).toEqual({ width: 2, height: 3 });
  });

  it('maxShorterSide shrinks big images (aspect kept), never enlarges', async () => {
    const png = await encode(solid(40, 20, [5, 6, 7]), 40, 20, 3);
    const a = await dec.decode(png, { maxShorterSide: 10 });
    expect([a.width, a.height]).toEqual([20, 10]);
    expect([...a.data.subarray(0, 3)]).toEqual([5, 6, 7]);
    const b = await dec.decode(png, { maxShorterSide: 50 });
    expect([b.width, b.height]).toEqual([40, 20]);
  });

  it('truncated data passes the header probe but fails the decode', async () => {
    const png = await encode(solid(16, 16, [1, 2, 3]), 16, 16, 3);
    const cut = png.subarray(0, png.length - 30);
    await expect(dec.probe(cut)).resolves.toEqual({ width: 16, height: 16 });
    await expect(dec.decode(cut)).rejects.toThrow();
  });

  it('NodeFileSource reports missing paths', async () => {
    const src = new NodeFileSource(tmp.dir);
    expect(await src.stat('nope/x.png')).toBe('missing');
    expect(await src.stat('')).toBe('dir');
  });
});
