// Downloading a large file safely: resumable, verified, and never half-written under its final name.
//
//   dest.part  ←  bytes as they arrive (appended; always a correct prefix of the remote file)
//   SHA-256    ←  hashed while streaming (the resumed prefix is hashed from disk first)
//   dest       ←  rename(dest.part) only once the whole file is there and its hash is accepted
//
// Resuming: if dest.part exists with n bytes we ask for `Range: bytes=n-`. The server may answer
//   206 Partial Content (Content-Range: bytes n-…/total)  → append;
//   200 OK (it ignores Range)                             → truncate dest.part, take the whole body;
//   416 Range Not Satisfiable (Content-Range: bytes */t)  → if t == n the previous run had the whole file
//                                                           and stopped before the rename: just verify it.
// NOTE: no If-Range validator is sent, so a .part left by an older version of the remote file is
// resumed blindly; the SHA-256 check then fails and removes it. With no expected hash nothing catches
// that, which is one more reason pull refuses unverified files by default.

import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { UserError } from './errors.js';

export interface DownloadProgress {
  /** Bytes of the file on disk so far: the resumed prefix plus what this transfer received. */
  done: number;
  /** Size of the whole file if the server said (Content-Length / Content-Range), else null. */
  total: number | null;
  /** Bytes this transfer received and the seconds it has run: the rate, excluding the resumed prefix. */
  received: number;
  seconds: number;
}

export interface DownloadOptions {
  url: string;
  /** Final path; the data goes to `${dest}.part` first. */
  dest: string;
  /** Expected SHA-256 (hex). null: no checksum to check against (see allowUnverified). */
  sha256: string | null;
  /** With sha256 null: install the file anyway. Without it the complete download stays in .part. */
  allowUnverified?: boolean;
  onProgress?: (p: DownloadProgress) => void;
  /** One-line remarks worth telling the user ("resuming at …", "server ignores Range: …"). */
  onNote?: (s: string) => void;
}

export interface DownloadResult {
  path: string;
  sha256: string;
  bytes: number;
  /** The hash matched an expected one (false: installed with allowUnverified, or pre-existing unverified). */
  verified: boolean;
  /** Bytes that were already in dest.part and not downloaded again. */
  resumedFrom: number;
  /** dest existed before the call (nothing was downloaded). */
  alreadyPresent: boolean;
}

/**
 * Downloads `url` to `dest` (see the file header). Throws UserError, with one line saying what to do,
 * on HTTP errors, connection failures, a body that ends early (dest.part kept: run again to resume)
 * and a checksum mismatch (dest.part removed).
 */
export async function downloadFile(o: DownloadOptions): Promise<DownloadResult> {
  const note = o.onNote ?? (() => {});
  const expected = o.sha256?.toLowerCase() ?? null;
  checkUrl(o.url);
  if (await sizeOf(o.dest) !== null) return checkExisting(o.dest, expected);

  const part = `${o.dest}.part`;
  await mkdir(dirname(o.dest), { recursive: true });
  let offset = (await sizeOf(part)) ?? 0;
  let res = await get(o.url, offset);
  let complete = false; // dest.part already holds the whole file (416 case)

  if (offset > 0) {
    if (res.status === 206) {
      const range = parseContentRange(res.headers.get('content-range'));
      if (range?.start !== offset) {
        note(`the server answered a different range (${res.headers.get('content-range') ?? 'none'}): starting over`);
        await res.body?.cancel();
        offset = 0;
        res = await get(o.url, 0);
      } else {
        note(`resuming at ${formatBytes(offset)}`);
      }
    } else if (res.status === 416) {
      const total = parseContentRange(res.headers.get('content-range'))?.total ?? null;
      await res.body?.cancel();
      if (total === offset) {
        complete = true;
        note(`${part} is already complete (${formatBytes(offset)}): verifying it`);
      } else {
        note(`${part} does not match the file on the server: starting over`);
        offset = 0;
        res = await get(o.url, 0);
      }
    } else if (res.status === 200) {
      // NOTE: a 200 to a Range request is the whole file: the server does not do ranges.
      note('the server ignores Range requests (no resume): starting over');
      offset = 0;
    }
  }
  if (!complete && !(res.status === 200 || res.status === 206)) {
    await res.body?.cancel();
    throw new UserError(`download failed: HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''} from ${o.url}`);
  }

  // The hash covers the whole file, so a resumed prefix is hashed from disk before the new bytes.
  const hash = createHash('sha256');
  if (offset > 0) await hashFile(hash, part);
  const bytes = complete ? offset : await receive(res, part, offset, hash, o.onProgress);
  const hex = hash.digest('hex');

  if (expected !== null && hex !== expected) {
    await rm(part, { force: true });
    throw new UserError(
      `checksum mismatch: ${o.url} gave a file with SHA-256 ${hex}, expected ${expected}; the download was removed ` +
      '(an updated upstream file or a mirror with another file: check the URL and the checksum)');
  }
  if (expected === null && !o.allowUnverified) {
    throw new UserError(
      `no published checksum to verify the download against: its SHA-256 is ${hex} (${bytes} bytes), kept in ${part}; ` +
      `compare it with a source you trust, then run again with --allow-unverified, or with --sha256 ${hex}`);
  }
  await rename(part, o.dest);
  return { path: o.dest, sha256: hex, bytes, verified: expected !== null, resumedFrom: offset, alreadyPresent: false };
}

/** GET, with `Range: bytes=offset-` when offset > 0. Connection failures become one-line UserErrors. */
async function get(url: string, offset: number): Promise<Response> {
  const headers: Record<string, string> = { 'accept-encoding': 'identity' };
  // NOTE: identity encoding, because Range and Content-Length count the bytes of the file only when
  // the body is not compressed in transit.
  if (offset > 0) headers.range = `bytes=${offset}-`;
  try {
    return await fetch(url, { headers, redirect: 'follow' });
  } catch (e) {
    throw new UserError(`could not connect to ${new URL(url).host}: ${errorReason(e)} (check the URL and your network)`);
  }
}

/** Streams the body into `part` (appending after `offset`), updating the hash; returns the file's size. */
async function receive(res: Response, part: string, offset: number, hash: Hash,
  onProgress?: (p: DownloadProgress) => void): Promise<number> {
  const total = res.status === 206
    ? parseContentRange(res.headers.get('content-range'))?.total ?? null
    : contentLength(res);
  const t0 = performance.now();
  let done = offset;
  const file = await open(part, offset > 0 ? 'a' : 'w');
  try {
    const reader = res.body?.getReader();
    for (;;) {
      if (!reader) break;
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (e) {
        // NOTE: what is in `part` is still a correct prefix (chunks are written in order and awaited).
        throw new UserError(`download interrupted after ${formatBytes(done)}${total === null ? '' : ` of ${formatBytes(total)}`} ` +
          `(${errorReason(e)}); run the same command again to resume from ${part}`);
      }
      if (chunk.done) break;
      await file.write(chunk.value);
      hash.update(chunk.value);
      done += chunk.value.length;
      onProgress?.({ done, total, received: done - offset, seconds: (performance.now() - t0) / 1000 });
    }
    await file.sync();
  } finally {
    await file.close();
  }
  if (total !== null && done !== total) {
    throw new UserError(`download ended early: ${done} of ${total} bytes; run the same command again to resume from ${part}`);
  }
  return done;
}

/** dest already exists: fine if its hash matches (or there is none to check); never overwritten. */
async function checkExisting(dest: string, expected: string | null): Promise<DownloadResult> {
  const hash = createHash('sha256');
  const bytes = await hashFile(hash, dest);
  const hex = hash.digest('hex');
  if (expected !== null && hex !== expected) {
    throw new UserError(`${dest} already exists but its SHA-256 is ${hex}, expected ${expected}: remove it and pull again`);
  }
  return { path: dest, sha256: hex, bytes, verified: expected !== null, resumedFrom: 0, alreadyPresent: true };
}

function checkUrl(url: string) {
  let u: URL;
  try { u = new URL(url); } catch { throw new UserError(`'${url}' is not a URL`); }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UserError(`'${url}': only http and https URLs can be downloaded`);
}

/** Feeds a file into `hash`; returns its size. */
async function hashFile(hash: Hash, path: string): Promise<number> {
  let n = 0;
  for await (const chunk of createReadStream(path)) { hash.update(chunk as Buffer); n += (chunk as Buffer).length; }
  return n;
}

/** SHA-256 (hex) of a file, streaming. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  await hashFile(hash, path);
  return hash.digest('hex');
}

async function sizeOf(path: string): Promise<number | null> {
  try { return (await stat(path)).size; } catch { return null; }
}

function contentLength(res: Response): number | null {
  const v = res.headers.get('content-length');
  return v !== null && /^\d+$/.test(v) ? Number(v) : null;
}

/** Content-Range: `bytes START-END/TOTAL` (206) or `bytes *\/TOTAL` (416); TOTAL may be `*` (unknown). */
export function parseContentRange(v: string | null): { start: number | null; total: number | null } | null {
  const m = v === null ? null : /^bytes\s+(?:(\d+)-\d+|\*)\/(\d+|\*)$/i.exec(v.trim());
  if (!m) return null;
  return { start: m[1] === undefined ? null : Number(m[1]), total: m[2] === '*' ? null : Number(m[2]) };
}

/** undici wraps socket errors: `TypeError: fetch failed`, cause `ECONNREFUSED …`. Show the cause. */
function errorReason(e: unknown): string {
  const err = e as { message?: string; cause?: { code?: string; message?: string } };
  const c = err.cause;
  if (c?.code && c.message) return `${c.code}: ${c.message}`;
  return c?.message ?? c?.code ?? err.message ?? String(e);
}

// ── progress on stderr ────────────────────────────────────────────────────────────────────────────

/** 1536 → "1.5 KiB"; binary units, as `ls -h` and most download tools. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

/** Seconds → "m:ss" or "h:mm:ss". */
export function formatDuration(s: number): string {
  const t = Math.max(0, Math.round(s));
  const h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), sec = t % 60;
  const ss = String(sec).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/**
 * One progress line: `[=========>          ]  45.2%  37.6 MiB/83.3 MiB  4.1 MiB/s  ETA 0:11`.
 * Without a known total: bytes and rate only.
 */
export function progressLine(p: DownloadProgress, width = 24): string {
  const rate = p.seconds > 0 ? p.received / p.seconds : 0;
  const speed = `${formatBytes(Math.round(rate))}/s`;
  if (p.total === null || p.total === 0) return `${formatBytes(p.done)}  ${speed}`;
  const f = Math.min(1, p.done / p.total);
  const n = Math.round(f * width);
  const bar = `[${'='.repeat(Math.max(0, n - 1))}${n ? '>' : ''}${' '.repeat(width - n)}]`;
  const eta = rate > 0 ? formatDuration((p.total - p.done) / rate) : '?';
  return `${bar} ${(100 * f).toFixed(1).padStart(5)}%  ${formatBytes(p.done)}/${formatBytes(p.total)}  ${speed}  ETA ${eta}`;
}

/**
 * A progress reporter for `onProgress`. On a terminal: one line redrawn at most 10 times a second.
 * Otherwise (logs, CI): a line at every tenth of the file, so a long download is not silent.
 */
export function progressReporter(write: (s: string) => void, tty: boolean, label: string) {
  let last = 0, lastTenth = -1, drawn = false;
  return {
    update(p: DownloadProgress) {
      if (tty) {
        const now = performance.now();
        if (now - last < 100 && p.done !== p.total) return;
        last = now;
        write(`\r\x1b[K${label} ${progressLine(p)}`);
        drawn = true;
      } else if (p.total) {
        const tenth = Math.floor((10 * p.done) / p.total);
        if (tenth === lastTenth) return;
        lastTenth = tenth;
        write(`${label} ${progressLine(p)}\n`);
      }
    },
    /** Ends the redrawn line, so what follows starts on its own line. */
    end() { if (drawn) write('\n'); drawn = false; },
  };
}
