// Dense / matmul family: the general matrix product and the fully-connected layer built on it.
//
//   matmul:         C[M,N] = op(A)·op(B) (+ bias[N] broadcast over rows) (+ β·C_old), then
//                   optionally C = max(0, C) (`relu`: the fused epilogue of Linear + ReLU).
//                   op(X) = X or Xᵀ. Row-major storage: A is [M,K] (transA: [K,M]), B is [K,N]
//                   (transB: [N,K]). 3-D operands [Bt,·,·] run one product per batch item (a 2-D
//                   operand is shared by every item).
//   dense:          y[N,K] = x[N,C]·Wᵀ + b              PyTorch Linear: W is [K,C] (out × in), b [K]
//   denseBackward:  dX[N,C] = dY·W                     (needs W; matmul, no transposes)
//                   dW[K,C] = dYᵀ·x                    (needs x; matmul with transA)
//                   db[K]   = Σ_n dY[n,:]              (reduce.ts sumTo)
//                   Each gradient is computed only when asked for: a frozen layer does no dW work.
//
// Precision: f32 by default. With f16 tensors (A, B, bias and C all f16; Tensor dtype, kernels/cast.ts)
// every version reads f16 storage (`enable f16`, array<f16> / vec4<f16> loads), converts to f32,
// multiplies and sums in f32 and rounds only the stored C to f16: the storage error (2^−11 relative
// per input and per output) dominates, the sum adds none. Needs the adapter's `shader-f16` feature.
//
// Versions. Measured with `bench/matmul-gflops.ts` on lavapipe (2 vCPUs shared with 2–3 other jobs
// running tests: load average 3–4 during every run, so numbers vary ±30% between runs and the same
// variant measured twice can differ 2×; ranges are over 2–4 runs, medians of 5–9 launches each).
// GFLOP/s at M=N=K=1024 (nn) | dense forward [16, 4096]·[4096, 1000]ᵀ (nt, M = 16 = batch):
//   v1  naive: one invocation per output element, a scalar dot product over K.
//                                                               f32  1.5–1.9  | 0.5–1.3
//   v2  register tiles + subgroup sharing: each invocation computes TM×TN = 16×4 outputs from vec4
//       loads. The 8 lanes of a sharing group compute the same 16 rows and adjacent 4-column blocks (a
//       16×32 tile); each lane loads 1/8 of the group's A tile and `subgroupBroadcast`s it to the
//       other 7, and loads its own B tile. On lavapipe every non-uniform load is a per-lane loop, so
//       loads, not FMAs, are the cost (measured: FMAs + broadcasts alone run at ~85 GFLOP/s). Full
//       k-blocks load from loop-invariant indices without bounds masks; the K % 4 tail runs one k at
//       a time. Few-row products (dense layers: M = batch) use 4-, 8- or 16-row tiles with one group
//       row per workgroup (`pickTile`, which records the dense-layer measurements).
//                                                               f32 13–25     | 7–11 (16×4, 1 group row)
//                                                               f16 15–26     | 13
//       (f32 1024³ was 25–30 on a quieter machine before; transposed operands 19–30; 8×4 tiles
//       10–23; 4×4 tiles 3–13; before the mask-free main loop ~19.) Without the subgroups feature
//       each lane loads the whole A tile itself: 4.5–9.
//       Operands whose rows are not 16-byte aligned (e.g. K = 33 without transposes) are read
//       with scalar loads assembled into vec4s: same tiles, slower.
//   v3  workgroup-shared-memory tiles, the classic GPU GEMM (see the v3 section): a workgroup of
//       WM×WN invocations stages KB-deep slices of A and B in var<workgroup> tiles, barrier, each
//       invocation computes a TM×TN register block from vec4 reads of the tiles, barrier. This is the
//       variant real GPUs favour (on-chip shared memory, cheap barriers); on lavapipe a barrier
//       splits the shader into coroutine pieces and every tile copy is still a per-lane load loop,
//       so it loses to v2 there. `V3_TILES` lists the configurations to try:
//         128×128 block (8×8 per invocation, KB 8)              f32  7–8.4    | 0.8–1.0
//                                                               f16  3–7      | 0.8
//         64×64 block (4×4, KB 16; default for M > 16)          f32  2–3.8    | 0.9
//                                                               f16  2.5–3.5  | 0.7
//         16×128 block (4×4, KB 16; default for M ≤ 16)         f32  3.5      | 1.3–2.6
//                                                               f16  1.5      | 2.3–2.5
//       Not measured on a real GPU yet (none was available to this work): expect it to win there;
//       the autotuner decides per adapter and shape class. Compiling a v3 pipeline on lavapipe takes
//       ~2–7 s (v2: ~0.1–2.5 s), cached by Mesa's on-disk shader cache afterwards.
//   autotuned  the versions and tiles above are candidates per shape class (matmulCandidates, end of
//       file); the autotuner (gpu/tune.ts) measures them per adapter and the launcher runs the winner.
//       On lavapipe (`wgtrain bench --quick`) it switched 512³ to the 16×4 tile with one group row
//       (5.3 → 3.4 ms) and kept v2's defaults for the dense layers; v3 never won here.
//
// Tensors above the binding limit (`gpu.maxBinding`, 128 MiB on lavapipe; VGG16's classifier.0.weight
// is 392 MiB) live in one GPUBuffer but are bound in windows (offset a multiple of 256 B, size ≤ the
// limit). The launcher splits the product into regions whose operands each fit in one window: an
// operand's outer (row) dimension is split — for y = x·Wᵀ that is N (rows of W, output columns);
// for dW = dYᵀ·x it is M (rows of dW); for dX = dY·W it is K (rows of W), and the K parts after the
// first accumulate into C (β = 1). A single row above the limit is split along the row.

import { memo, MAX_GROUPS, type KernelSpec } from '../gpu/kernel.js';
import { Tensor, dtypeBytes, numel, type DType } from '../gpu/tensor.js';
import type { Binding, Gpu } from '../gpu/device.js';
import { sumTo } from './reduce.js';
import { isSoftwareAdapter, type TuneSpec } from '../gpu/tune.js';
import { Rng } from '../util/rng.js';

export type MatmulVersion = 'v1' | 'v2' | 'v3';

export interface MatmulOptions {
  /** Use Aᵀ: A is stored [K,M]. */
  transA?: boolean;
  /** Use Bᵀ: B is stored [N,K] (a PyTorch Linear weight). */
  transB?: boolean;
  /** [N], added to every row of C. */
  bias?: Tensor;
  /** Write into this [M,N] (or [Bt,M,N]) tensor instead of a new one. Required when β ≠ 0. */
  out?: Tensor;
  /** C = op(A)·op(B) + bias + β·out. Default 0 (out is overwritten, never read). */
  beta?: number;
  /** Shorthand for β = 1: add the product into `out` (gradient accumulation, split-K). */
  accumulate?: boolean;
  /** Fused ReLU epilogue: C = max(0, op(A)·op(B) + bias + β·C_old). */
  relu?: boolean;
  /** Kernel variant (see the header). Default 'v2'. */
  version?: MatmulVersion;
  /** Tile shape (tuning and benchmarks): a `Tile` for v2 (default pickTile(M)), a `V3Tile` for v3
   *  (default pickV3Tile(M)); v1 has none. */
  tile?: Tile | V3Tile;
  /** v2: false forces the no-subgroups fallback (tests, comparisons). Default: use them if the adapter has them. */
  subgroups?: boolean;
}

// ---- kernel specs ---------------------------------------------------------------------------

// One uniform layout for every version. Offsets are element offsets of the region's (0,0) inside the
// bound window; ld* are row strides in elements (the stored row length of the full tensor).
const MM_UNIFORMS = {
  M: 'u32', N: 'u32', K: 'u32', lda: 'u32', ldb: 'u32', ldc: 'u32',
  offA: 'u32', offB: 'u32', offC: 'u32', offBias: 'u32', beta: 'f32',
} as const;
type MmU = typeof MM_UNIFORMS;
type MmValues = { [K in keyof MmU]: number };

interface Flags {
  transA: boolean; transB: boolean;
  /** Bias binding present (first K part only). */
  bias: boolean;
  /** C is read and β·C added (β ≠ 0, or a K part after the first). */
  accumulate: boolean;
  /** max(0, ·) on the stored value (last K part only). */
  relu: boolean;
  /** Storage of A, B, bias and C is f16 (`enable f16`); arithmetic stays f32. */
  f16: boolean;
}

/** WGSL element type of a binding: scalar or vec4, f32 or f16 storage. */
const storage = (f: Flags, vec: boolean) => (vec ? (f.f16 ? 'vec4<f16>' : 'vec4f') : (f.f16 ? 'f16' : 'f32'));
/** A loaded scalar (or vec4) as an f32 value for arithmetic: a conversion only for f16 storage. */
const asF32 = (f16: boolean, e: string, vec = false) => (f16 ? `${vec ? 'vec4f' : 'f32'}(${e})` : e);

function bindingsOf(f: Flags, vecA: boolean, vecB: boolean) {
  return [
    { name: 'A', access: 'read' as const, type: storage(f, vecA) },
    { name: 'B', access: 'read' as const, type: storage(f, vecB) },
    ...(f.bias ? [{ name: 'bias', access: 'read' as const, type: storage(f, false) }] : []),
    { name: 'C', access: 'read_write' as const, type: storage(f, false) },
  ];
}

const flagKey = (f: Flags) =>
  `${f.transA ? 't' : 'n'}${f.transB ? 't' : 'n'}${f.bias ? '.bias' : ''}${f.accumulate ? '.acc' : ''}${f.relu ? '.relu' : ''}${f.f16 ? '.f16' : ''}`;

/**
 * Epilogue for one f32 output value `v` at (r, c) of the region: + bias[c] + β·C_old, then the
 * optional ReLU, stored (rounded to f16 for f16 storage).
 */
function epilogue(f: Flags, v: string, r: string, c: string): string {
  const idx = `u.offC + ${r} * u.ldc + ${c}`;
  const terms = [v];
  if (f.bias) terms.push(asF32(f.f16, `bias[u.offBias + ${c}]`));
  if (f.accumulate) terms.push(`u.beta * ${asF32(f.f16, `C[${idx}]`)}`);
  const sum = terms.join(' + ');
  const value = f.relu ? `max(0.0, ${sum})` : sum;
  return `C[${idx}] = ${f.f16 ? `f16(${value})` : value};`;
}

// v1: one invocation per C element. Kept as the readable definition and a cross-check.
const V1_WG = 8;
const v1Kernel = memo((f: Flags) => flagKey(f), (f: Flags): KernelSpec<MmU> => ({
  name: 'matmul.v1', key: `matmul.v1.${flagKey(f)}`,
  uniforms: MM_UNIFORMS,
  bindings: bindingsOf(f, false, false),
  workgroupSize: [V1_WG, V1_WG, 1],
  enables: f.f16 ? ['f16'] : [],
  body: /* wgsl */ `
@compute @workgroup_size(${V1_WG}, ${V1_WG})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let n = gid.x;
  let m = gid.y;
  if (m >= u.M || n >= u.N) { return; }
  var acc = 0.0;
  for (var k = 0u; k < u.K; k++) {
    // A[m,k] (transA: stored at [k,m]) · B[k,n] (transB: stored at [n,k])
    acc += ${asF32(f.f16, `A[u.offA + ${f.transA ? 'k * u.lda + m' : 'm * u.lda + k'}]`)} * ${asF32(f.f16, `B[u.offB + ${f.transB ? 'n * u.ldb + k' : 'k * u.ldb + n'}]`)};
  }
  ${epilogue(f, 'acc', 'm', 'n')}
}`,
}));

// v2: register tiles + subgroup sharing.
//
// Geometry. A lane computes TM rows × TN columns of C. A sharing group of 8 lanes computes the same TM
// rows and 8 adjacent TN-column blocks (TM × 8·TN). A workgroup holds GM × GN groups. Per k-block of
// KB: the group needs the TM×KB tile of A (P = TM·KB/4 vec4 "pieces"), each lane loads P/8 of them and
// the others get them by subgroupBroadcast; each lane loads its own KB×TN tile of B (TN·KB/4 vec4s).
//
// NOTE: subgroupBroadcast takes its source lane as a constant, so the code is unrolled by this
// generator (TS loops emit WGSL), which also keeps every accumulator in a named register.
// NOTE: subgroup ops need uniform control flow: no early return; out-of-range rows/columns are
// clamped on load (their results are computed and dropped at the store). k never goes out of range:
// the unrolled loop covers whole k-blocks and the K % KB tail runs one k at a time.
// NOTE: the sharing group is lanes [8j, 8j+8) of a subgroup, which assumes the subgroup size is a
// multiple of 8 and that subgroups are made of consecutive local_invocation_index values (true on the
// implementations we know; WebGPU does not promise it). On lavapipe the subgroup is exactly 8 lanes and
// subgroupBroadcast(v, j) is used; for larger sizes the kernel checks `subgroup_size` at run time and
// uses subgroupShuffle from lane (id & ~7) | j; for other sizes each lane loads the whole A tile.
export interface Tile { TM: number; TN: number; KB: number; GM: number; GN: number }
export const V2_TILE: Tile = { TM: 16, TN: 4, KB: 4, GM: 2, GN: 4 };

/** The v2 tiles worth trying (a tuner measures them): the 4-, 8- and 16-row few-row tiles, V2_TILE. */
export const V2_TILES: readonly Tile[] = [
  { TM: 4, TN: 4, KB: 8, GM: 1, GN: 8 },
  { TM: 8, TN: 4, KB: 4, GM: 1, GN: 8 },
  { TM: 16, TN: 4, KB: 4, GM: 1, GN: 8 },
  V2_TILE,
];

/**
 * Default tile for M rows. NOTE: rows past M are computed and dropped, so for the few-row products of
 * a dense layer (M = batch) a 32-row workgroup (V2_TILE: 2 groups of 16 rows) would do up to 8×
 * useless work: shrink TM and keep one group row per workgroup. Measured on lavapipe (2 shared vCPUs,
 * loaded; medians of 9, ±30% run to run):
 *   [2, 4096]·[4096, 4096]ᵀ: 37 ms with V2_TILE, 11 ms with TM = 4.
 *   batch 9..16 (was V2_TILE, now the 16-row tile with GM = 1):
 *     [16, 4096]·[4096, 1000]ᵀ (fwd):  V2_TILE 14–31 ms, 16×4 GM=1 8–12 ms, 8×4 13–24 ms
 *     [12, 4096]·[4096, 1000]ᵀ (fwd):  V2_TILE 14 ms,    16×4 GM=1 7 ms,    8×4 10 ms
 *     [16, 1000]·[1000, 4096]  (dX):   V2_TILE 12 ms,    16×4 GM=1 6.3 ms,  8×4 9.5 ms
 *     [16, 512]·[512, 10]ᵀ:            0.4–0.5 ms with every tile (launch overhead).
 *   dW = dYᵀ·x has M = out features (1000): V2_TILE stays (17.5 ms vs 24.6 ms with GM = 1).
 * Few distinct tiles, because every variant is a pipeline to compile (~0.6 s for TM = 4, ~2.5 s for
 * TM = 16 on lavapipe).
 */
export function pickTile(M: number): Tile {
  if (M <= 4) return V2_TILES[0]!;
  if (M <= 8) return V2_TILES[1]!;
  if (M <= 16) return V2_TILES[2]!;
  return V2_TILE;
}

const LANES = 8;
const COMP = ['x', 'y', 'z', 'w'] as const;

interface V2Variant extends Flags { vecA: boolean; vecB: boolean; subgroups: boolean }

/** One operand as the v2 generator sees it: pieces are 4 consecutive elements of a stored row. */
interface Side { buf: 'A' | 'B'; vec: boolean; f16: boolean; rows: string; cols: string; kAxis: 'r' | 'c' }

/**
 * Loop-invariant part of a piece's index (r, c relative to k0 = 0): a vec4 index in vec mode, four
 * element indices (vec4u) in scalar mode. Non-K coordinates are clamped here once.
 * NOTE: vec mode needs the window offset and row stride to be multiples of 4 (the launcher checks);
 * a vec4 along a non-K dimension then never crosses its row, and one that starts past the extent is
 * clamped to the last vec4 (all of its outputs are dropped).
 */
function pieceBase(s: Side, r: string, c: string): string {
  const off = `u.off${s.buf}`, ld = `u.ld${s.buf.toLowerCase()}`;
  const rr = s.kAxis === 'r' ? `(${r})` : `min(${r}, ${s.rows} - 1u)`;
  if (s.vec) return `(${off} + ${rr} * ${ld} + ${s.kAxis === 'c' ? `(${c})` : `min(${c}, (${s.cols} - 1u) & ~3u)`}) >> 2u`;
  const cs = [0, 1, 2, 3].map((i) => (s.kAxis === 'c' ? `${c} + ${i}u` : `min(${c} + ${i}u, ${s.cols} - 1u)`));
  return `vec4u(${off} + ${rr} * ${ld}) + vec4u(${cs.join(', ')})`;
}

/** WGSL `fn elemX(r, c) -> f32`: one element, the non-K coordinate clamped (K is in range where used). */
function elemLoader(s: Side): string {
  const off = `u.off${s.buf}`, ld = `u.ld${s.buf.toLowerCase()}`;
  const r = s.kAxis === 'r' ? 'r' : `min(r, ${s.rows} - 1u)`, c = s.kAxis === 'c' ? 'c' : `min(c, ${s.cols} - 1u)`;
  const get = asF32(s.f16, s.vec ? `${s.buf}[i >> 2u][i & 3u]` : `${s.buf}[i]`);
  return `fn elem${s.buf}(r: u32, c: u32) -> f32 {\n  let i = ${off} + ${r} * ${ld} + ${c};\n  return ${get};\n}`;
}

/** The piece at k0 from its base `p` (full k-blocks only: no masks needed). */
function pieceAt(s: Side, p: string): string {
  const inc = s.kAxis === 'c' ? (s.vec ? '(k0 >> 2u)' : 'k0') : (s.vec ? `k0 * (u.ld${s.buf.toLowerCase()} >> 2u)` : `k0 * u.ld${s.buf.toLowerCase()}`);
  if (s.vec) return asF32(s.f16, `${s.buf}[${p} + ${inc}]`, true);
  return `vec4f(${COMP.map((x) => asF32(s.f16, `${s.buf}[${p}.${x} + ${inc}]`)).join(', ')})`;
}

/** A and B as the generators see them. nt A: pieces A[m, k..k+3] (K along the row); t A: A[k, m..m+3].
 * nt B: B[k, n..n+3]; t B: B[n, k..k+3]. */
function sides(v: Flags & { vecA: boolean; vecB: boolean }): [Side, Side] {
  const f16 = v.f16;
  const sA: Side = v.transA ? { buf: 'A', vec: v.vecA, f16, rows: 'u.K', cols: 'u.M', kAxis: 'r' } : { buf: 'A', vec: v.vecA, f16, rows: 'u.M', cols: 'u.K', kAxis: 'c' };
  const sB: Side = v.transB ? { buf: 'B', vec: v.vecB, f16, rows: 'u.N', cols: 'u.K', kAxis: 'c' } : { buf: 'B', vec: v.vecB, f16, rows: 'u.K', cols: 'u.N', kAxis: 'r' };
  return [sA, sB];
}

function v2Body(v: V2Variant, t: Tile): string {
  const { TM, TN, KB, GM, GN } = t;
  const P = (TM * KB) / 4; // A pieces per k-block per group
  const PL = P / LANES; // A pieces loaded per lane when shared
  const TN4 = TN / 4, KB4 = KB / 4, TM4 = TM / 4;
  const [sA, sB] = sides(v);
  // Piece p of the group's A tile as (row, col) of stored A, k0 excluded.
  // nt: p = kq·TM + i → A[row0+i, 4kq..]; t: p = kk·TM/4 + mq → A[kk, row0+4mq..].
  const pieceA = (p: string): [string, string] => v.transA
    ? [`(${p}) / ${TM4}u`, `row0 + 4u * ((${p}) % ${TM4}u)`]
    : [`row0 + (${p}) % ${TM}u`, `4u * ((${p}) / ${TM}u)`];
  // This lane's B pieces: nt: B[kk, col0+4jq..]; t: B[col0+j, 4kq..].
  const piecesB: [string, string, string][] = []; // [name, row, col]
  if (v.transB) for (let j = 0; j < TN; j++) for (let kq = 0; kq < KB4; kq++) piecesB.push([`b${j}_${kq}`, `col0 + ${j}u`, `${4 * kq}u`]);
  else for (let kk = 0; kk < KB; kk++) for (let jq = 0; jq < TN4; jq++) piecesB.push([`b${kk}_${jq}`, `${kk}u`, `col0 + ${4 * jq}u`]);
  // Scalar A[row0+i, k0+kk] as an expression over the shared pieces s<p>.
  const a = (i: number, kk: number) => v.transA ? `s${kk * TM4 + (i >> 2)}.${COMP[i & 3]}` : `s${(kk >> 2) * TM + i}.${COMP[kk & 3]}`;
  // vec4 B[k0+kk, col0+4jq..+3] over this lane's pieces.
  const bvec = (kk: number, jq: number) => v.transB
    ? `vec4f(${[0, 1, 2, 3].map((c) => `b${4 * jq + c}_${kk >> 2}.${COMP[kk & 3]}`).join(', ')})`
    : `b${kk}_${jq}`;

  /** One full k-block (no masks needed): loads from the loop-invariant bases, then TM·TN·KB FMAs. */
  const block = (): string[] => {
    const L: string[] = [];
    if (v.subgroups) {
      for (let q = 0; q < PL; q++) L.push(`let mine${q} = ${pieceAt(sA, `pa${q}`)};`);
      for (let p = 0; p < P; p++) L.push(`var s${p}: vec4f;`);
      L.push('if (mode == 0u) {');
      for (let p = 0; p < P; p++) L.push(`  s${p} = subgroupBroadcast(mine${Math.floor(p / LANES)}, ${p % LANES}u);`);
      L.push('} else if (mode == 1u) {');
      for (let p = 0; p < P; p++) L.push(`  s${p} = subgroupShuffle(mine${Math.floor(p / LANES)}, src | ${p % LANES}u);`);
      L.push('} else {');
      for (let p = 0; p < P; p++) L.push(`  s${p} = ${pieceAt(sA, `(${pieceBase(sA, ...pieceA(`${p}u`))})`)};`);
      L.push('}');
    } else {
      for (let p = 0; p < P; p++) L.push(`let s${p} = ${pieceAt(sA, `(${pieceBase(sA, ...pieceA(`${p}u`))})`)};`);
    }
    for (const [name] of piecesB) L.push(`let ${name} = ${pieceAt(sB, `p${name}`)};`);
    // C[i, 4jq..] += A[i, kk] · B[kk, 4jq..]
    for (let kk = 0; kk < KB; kk++) for (let i = 0; i < TM; i++) for (let jq = 0; jq < TN4; jq++) L.push(`c${i}[${jq}] += ${a(i, kk)} * ${bvec(kk, jq)};`);
    return L.map((l) => `    ${l}`);
  };
  /** The K tail (< KB steps), one k at a time with element loads: small code, no subgroup ops. */
  const tail = (): string[] => {
    const L: string[] = [];
    for (let i = 0; i < TM; i++) L.push(`let t${i} = ${v.transA ? `elemA(k0, row0 + ${i}u)` : `elemA(row0 + ${i}u, k0)`};`);
    for (let jq = 0; jq < TN4; jq++) {
      const e = [0, 1, 2, 3].map((c) => (v.transB ? `elemB(col0 + ${4 * jq + c}u, k0)` : `elemB(k0, col0 + ${4 * jq + c}u)`));
      L.push(`let q${jq} = vec4f(${e.join(', ')});`);
    }
    for (let i = 0; i < TM; i++) for (let jq = 0; jq < TN4; jq++) L.push(`c${i}[${jq}] += t${i} * q${jq};`);
    return L.map((l) => `    ${l}`);
  };

  const L: string[] = [];
  L.push(elemLoader(sA), elemLoader(sB));
  L.push(`
@compute @workgroup_size(${GM * GN * LANES})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32${v.subgroups ? ',\n        @builtin(subgroup_invocation_id) sl: u32, @builtin(subgroup_size) ss: u32' : ''}) {
  let lane = li % ${LANES}u;
  let grp = li / ${LANES}u;
  let row0 = (wid.y * ${GM}u + grp / ${GN}u) * ${TM}u;                  // first C row of this lane
  let col0 = ((wid.x * ${GN}u + grp % ${GN}u) * ${LANES}u + lane) * ${TN}u; // first C column`);
  if (v.subgroups) {
    L.push(`  // Sharing mode, uniform per subgroup: 0 = broadcast (8 lanes), 1 = shuffle (8k lanes), 2 = none.
  let mode = select(select(2u, 1u, ss % ${LANES}u == 0u), 0u, ss == ${LANES}u);
  let src = sl & ~${LANES - 1}u;`);
    // This lane's own A pieces: role = its index in the sharing group, which is the lane that the
    // others name as the source of those pieces.
    L.push(`  let role = sl & ${LANES - 1}u;`);
    for (let q = 0; q < PL; q++) L.push(`  let pa${q} = ${pieceBase(sA, ...pieceA(`role + ${q * LANES}u`))};`);
  }
  for (const [name, r, c] of piecesB) L.push(`  let p${name} = ${pieceBase(sB, r, c)};`);
  for (let i = 0; i < TM; i++) L.push(`  var c${i}: array<vec4f, ${TN4}>;`);
  L.push('  // Full k-blocks (no masks needed), then the K % KB tail one k at a time.');
  L.push(`  let kFull = u.K - u.K % ${KB}u;`);
  L.push('  var k0 = 0u;');
  L.push(`  for (; k0 < kFull; k0 += ${KB}u) {`, ...block(), '  }');
  L.push('  for (; k0 < u.K; k0++) {', ...tail(), '  }');
  // Store (after all subgroup ops, so the branches are harmless).
  for (let i = 0; i < TM; i++) {
    L.push(`  if (row0 + ${i}u < u.M) {`);
    for (let j = 0; j < TN; j++) {
      L.push(`    if (col0 + ${j}u < u.N) { ${epilogue(v, `c${i}[${j >> 2}].${COMP[j & 3]}`, `(row0 + ${i}u)`, `(col0 + ${j}u)`)} }`);
    }
    L.push('  }');
  }
  L.push('}');
  return L.join('\n');
}

const v2Key = (v: V2Variant, t: Tile) =>
  `matmul.v2.${flagKey(v)}.${v.vecA ? 'va' : 'sa'}${v.vecB ? 'vb' : 'sb'}.${v.subgroups ? 'sg' : 'nosg'}.${t.TM}x${t.TN}x${t.KB}.${t.GM}x${t.GN}`;

const v2Kernel = memo(v2Key, (v: V2Variant, t: Tile): KernelSpec<MmU> => {
  if (t.TN % 4 || t.KB % 4 || (t.TM * t.KB / 4) % LANES || (v.transA && t.TM % 4)) throw new Error(`matmul.v2: bad tile ${JSON.stringify(t)}`);
  return {
    name: 'matmul.v2', key: v2Key(v, t),
    uniforms: MM_UNIFORMS,
    bindings: bindingsOf(v, v.vecA, v.vecB),
    workgroupSize: [t.GM * t.GN * LANES, 1, 1],
    body: v2Body(v, t),
    enables: [...(v.f16 ? ['f16'] : []), ...(v.subgroups ? ['subgroups'] : [])],
  };
});

// v3: workgroup-shared-memory tiles, the classic GPU GEMM.
//
// Geometry. A workgroup of WM×WN invocations computes a BM×BN block of C (BM = WM·TM, BN = WN·TN);
// each invocation computes TM×TN of it in registers. Per k-block of KB: the whole workgroup copies
// the BM×KB slice of op(A) and the KB×BN slice of op(B) from global memory into var<workgroup> tiles
// (each invocation copies a few vec4 "pieces"), `workgroupBarrier()`, then every invocation runs KB
// rank-1 updates of its TM×TN block from the tiles, `workgroupBarrier()` again before the next copy.
// Each global element is loaded once per workgroup instead of once per invocation that needs it: on
// a GPU with fast shared memory that trades the bandwidth-bound loads of v1 for on-chip ones.
//
// Tile layout: both tiles are k-major, As[k][m] and Bs[k][n], as vec4 arrays, so that for one k an
// invocation reads its rows of A and its columns of B as TM/4 + TN/4 vec4s and does TM·TN FMAs.
// NOTE: an invocation's rows are not contiguous: its vec4 row group q is (q·WM + ty), its column group
// (q·WN + tx). Neighbouring invocations (tx, tx+1) then read neighbouring vec4s of Bs (no bank
// conflicts on GPUs that have banks) and store neighbouring vec4s of C (coalesced).
// NOTE: the copy zero-fills outside [M, N, K]: a partial k-block adds zeros, so the compute loop needs
// no masks and every invocation reaches every barrier (barriers need uniform control flow: no early
// return; out-of-range outputs are dropped at the store).
// NOTE: a piece along K (nt A, t B: 4 consecutive k of one row/column) is scattered into 4 tile
// entries (a transpose on the way in); a piece along M or N is stored as one vec4.
// NOTE: the tiles hold f32 whatever the storage: f16 operands are widened as they are copied in
// (half the global traffic, the same shared-memory footprint and arithmetic).
export interface V3Tile {
  /** Rows × columns of C per invocation (multiples of 4). */
  TM: number; TN: number;
  /** Invocations per workgroup along rows and columns: the workgroup block is (WM·TM) × (WN·TN). */
  WM: number; WN: number;
  /** k-block depth staged per step (multiple of 4). Workgroup memory: 4·KB·(BM + BN) bytes. */
  KB: number;
}

/** Configurations worth trying (a tuner measures them; none is best everywhere). */
export const V3_TILES: readonly V3Tile[] = [
  { TM: 4, TN: 4, WM: 16, WN: 16, KB: 16 }, // 64×64 block, 256 invocations, 8 KiB
  { TM: 8, TN: 8, WM: 16, WN: 16, KB: 8 }, // 128×128 block, 256 invocations, 8 KiB: large products
  { TM: 4, TN: 4, WM: 4, WN: 32, KB: 16 }, // 16×128 block, 128 invocations, 9 KiB: few rows (dense layers)
];

/** Default v3 tile for M rows: the few-row tile when most of a 64-row block would be dropped. */
export function pickV3Tile(M: number): V3Tile {
  return M <= 16 ? V3_TILES[2]! : V3_TILES[0]!;
}

const isV3Tile = (t: Tile | V3Tile): t is V3Tile => 'WM' in t;

interface V3Variant extends Flags { vecA: boolean; vecB: boolean }

/**
 * WGSL `fn loadX(r, c) -> vec4f`: the 4 stored elements X[r, c..c+3] as f32, zero where r or c is
 * outside the stored extent. vec mode reads one vec4 when all 4 are inside (c is then a multiple of 4
 * and the launcher checked the window offset and row stride).
 */
function pieceLoader(s: Side): string {
  const off = `u.off${s.buf}`, ld = `u.ld${s.buf.toLowerCase()}`;
  const elem = (i: string) => asF32(s.f16, s.vec ? `${s.buf}[(${i}) >> 2u][(${i}) & 3u]` : `${s.buf}[${i}]`);
  const full = s.vec ? asF32(s.f16, `${s.buf}[i >> 2u]`, true) : `vec4f(${[0, 1, 2, 3].map((j) => elem(`i + ${j}u`)).join(', ')})`;
  return `fn load${s.buf}(r: u32, c: u32) -> vec4f {
  if (r >= ${s.rows} || c >= ${s.cols}) { return vec4f(0.0); }
  let i = ${off} + r * ${ld} + c;
  if (c + 3u < ${s.cols}) { return ${full}; }
  var v = vec4f(0.0);
  for (var j = 0u; j < 4u; j++) {
    if (c + j < ${s.cols}) { v[j] = ${elem('i + j')}; }
  }
  return v;
}`;
}

/**
 * WGSL that copies operand `s`'s KB-deep slice into its tile `Xs` (k-major, BO4 vec4s per k), the
 * block's first row/column of the non-K axis being `o0`. Pieces are spread over the T invocations.
 */
function tileCopy(s: Side, tile: string, BO: number, KB: number, T: number, o0: string): string {
  const BO4 = BO / 4;
  if (s.kAxis === 'r') {
    // Stored rows are k: piece p = (kk, oq) → X[k0 + kk, o0 + 4·oq..], one vec4 of the tile.
    return `  for (var p = li; p < ${KB * BO4}u; p += ${T}u) {
    let kk = p / ${BO4}u;
    let oq = p % ${BO4}u;
    ${tile}[kk * ${BO4}u + oq] = load${s.buf}(k0 + kk, ${o0} + 4u * oq);
  }`;
  }
  // Stored rows are the non-K axis: piece p = (o, kq) → X[o0 + o, k0 + 4·kq..], scattered over 4 k.
  const KB4 = KB / 4;
  return `  for (var p = li; p < ${BO * KB4}u; p += ${T}u) {
    let o = p / ${KB4}u;
    let kq = p % ${KB4}u;
    let v = load${s.buf}(${o0} + o, k0 + 4u * kq);
    for (var j = 0u; j < 4u; j++) { ${tile}[(4u * kq + j) * ${BO4}u + o / 4u][o % 4u] = v[j]; }
  }`;
}

function v3Body(v: V3Variant, t: V3Tile): string {
  const { TM, TN, WM, WN, KB } = t;
  const BM = WM * TM, BN = WN * TN, T = WM * WN;
  const TM4 = TM / 4, TN4 = TN / 4, BM4 = BM / 4, BN4 = BN / 4;
  const [sA, sB] = sides(v);
  const L: string[] = [];
  L.push(pieceLoader(sA), pieceLoader(sB));
  L.push(`
var<workgroup> As: array<vec4f, ${KB * BM4}>; // As[k][m]: op(A) slice, k-major
var<workgroup> Bs: array<vec4f, ${KB * BN4}>; // Bs[k][n]: op(B) slice, k-major

@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let tx = li % ${WN}u;
  let ty = li / ${WN}u;
  let m0 = wid.y * ${BM}u; // first row of this workgroup's block
  let n0 = wid.x * ${BN}u; // first column`);
  for (let i = 0; i < TM; i++) L.push(`  var c${i}: array<vec4f, ${TN4}>;`);
  L.push(`  for (var k0 = 0u; k0 < u.K; k0 += ${KB}u) {`);
  L.push(tileCopy(sA, 'As', BM, KB, T, 'm0'));
  L.push(tileCopy(sB, 'Bs', BN, KB, T, 'n0'));
  L.push('    workgroupBarrier();');
  L.push(`    for (var kk = 0u; kk < ${KB}u; kk++) {`);
  // a<q>: rows 4(q·WM + ty)..+3 of op(A) at k; b<q>: columns 4(q·WN + tx)..+3 of op(B) at k.
  for (let q = 0; q < TM4; q++) L.push(`      let a${q} = As[kk * ${BM4}u + ${q * WM}u + ty];`);
  for (let q = 0; q < TN4; q++) L.push(`      let b${q} = Bs[kk * ${BN4}u + ${q * WN}u + tx];`);
  // C[i, 4q..] += A[i, k] · B[k, 4q..]
  for (let i = 0; i < TM; i++) for (let q = 0; q < TN4; q++) L.push(`      c${i}[${q}] += a${i >> 2}.${COMP[i & 3]} * b${q};`);
  L.push('    }', '    workgroupBarrier();', '  }');
  for (let i = 0; i < TM; i++) {
    L.push(`  let r${i} = m0 + 4u * (${(i >> 2) * WM}u + ty) + ${i & 3}u;`);
    L.push(`  if (r${i} < u.M) {`);
    for (let q = 0; q < TN4; q++) for (let j = 0; j < 4; j++) {
      const col = `n0 + 4u * (${q * WN}u + tx) + ${j}u`;
      L.push(`    if (${col} < u.N) { ${epilogue(v, `c${i}[${q}].${COMP[j]}`, `r${i}`, `(${col})`)} }`);
    }
    L.push('  }');
  }
  L.push('}');
  return L.join('\n');
}

const v3Key = (v: V3Variant, t: V3Tile) =>
  `matmul.v3.${flagKey(v)}.${v.vecA ? 'va' : 'sa'}${v.vecB ? 'vb' : 'sb'}.${t.TM}x${t.TN}.${t.WM}x${t.WN}.k${t.KB}`;

const v3Kernel = memo(v3Key, (v: V3Variant, t: V3Tile): KernelSpec<MmU> => ({
  name: 'matmul.v3', key: v3Key(v, t),
  uniforms: MM_UNIFORMS,
  bindings: bindingsOf(v, v.vecA, v.vecB),
  workgroupSize: [t.WM * t.WN, 1, 1],
  body: v3Body(v, t),
  enables: v.f16 ? ['f16'] : [],
}));

/** Throws unless the v3 tile is well-formed and fits the adapter's workgroup limits. */
function checkV3Tile(gpu: Gpu, t: V3Tile) {
  const bad = (why: string) => new Error(`matmul.v3: bad tile ${JSON.stringify(t)}: ${why}`);
  if ([t.TM, t.TN, t.KB].some((x) => !Number.isInteger(x) || x <= 0 || x % 4)) throw bad('TM, TN and KB must be positive multiples of 4');
  if ([t.WM, t.WN].some((x) => !Number.isInteger(x) || x <= 0)) throw bad('WM and WN must be positive integers');
  const inv = t.WM * t.WN, shared = 4 * t.KB * (t.WM * t.TM + t.WN * t.TN);
  if (inv > Number(gpu.limits.maxComputeInvocationsPerWorkgroup)) throw bad(`${inv} invocations per workgroup exceed the adapter's ${gpu.limits.maxComputeInvocationsPerWorkgroup}`);
  if (shared > Number(gpu.limits.maxComputeWorkgroupStorageSize)) throw bad(`${shared} bytes of workgroup memory exceed the adapter's ${gpu.limits.maxComputeWorkgroupStorageSize}`);
}

// ---- launcher: regions, windows, dispatch ----------------------------------------------------

type Dim = 'm' | 'n' | 'k';
interface Range { m0: number; m1: number; n0: number; n1: number; k0: number; k1: number }
/** A row-major operand: element (outer, inner) of the product's index space is at base + outer·ld + inner. */
interface Operand { what: string; t: Tensor; base: number; ld: number; outer: Dim; inner: Dim }

const lo = (r: Range, d: Dim) => r[`${d}0`];
const hi = (r: Range, d: Dim) => r[`${d}1`];

/** Element span [start, end) that a region touches in an operand. */
function span(op: Operand, r: Range): { start: number; end: number } {
  const o0 = lo(r, op.outer), o1 = hi(r, op.outer), i0 = lo(r, op.inner), i1 = hi(r, op.inner);
  const start = op.base + o0 * op.ld + i0;
  if (o1 <= o0 || i1 <= i0) return { start, end: start };
  return { start, end: op.base + (o1 - 1) * op.ld + i1 };
}

const ALIGN_BYTES = 256; // binding offsets are multiples of 256 bytes

/** The window binding an element span, and the span's offset (in elements) inside it. */
function window(op: Operand, s: { start: number; end: number }): { binding: Binding; off: number; bytes: number } {
  const eb = dtypeBytes(op.t.dtype), align = ALIGN_BYTES / eb;
  const aligned = Math.floor(s.start / align) * align;
  // NOTE: rounded up to 16 bytes so a vec4 view covers the last partial vec4; capped at the buffer.
  const bytes = Math.min(Math.max(16, Math.ceil(((s.end - aligned) * eb) / 16) * 16), op.t.buffer.size - aligned * eb);
  return { binding: { buffer: op.t.buffer, offset: aligned * eb, size: bytes }, off: s.start - aligned, bytes };
}

interface Problem {
  gpu: Gpu; version: MatmulVersion;
  A: Operand; B: Operand; C: Operand; bias?: Tensor;
  transA: boolean; transB: boolean; beta: number; relu: boolean; tile: Tile | V3Tile; subgroups: boolean;
  dtype: DType;
}

/** Output tile of one workgroup (rows, columns) for a version. */
function groupTile(p: Problem): [number, number] {
  const t = p.tile;
  if (p.version === 'v1') return [V1_WG, V1_WG];
  return isV3Tile(t) ? [t.WM * t.TM, t.WN * t.TN] : [t.GM * t.TM, t.GN * LANES * t.TN];
}

/**
 * Splits the region until every operand fits one binding window and the grid fits the dispatch
 * limits, then dispatches each part. `first`: the part that applies the bias and the caller's β; the
 * K parts after it accumulate (β = 1). `last`: the K part that applies the ReLU.
 * NOTE: max(0, ·) does not distribute over a sum, so with split-K only the last part may apply it.
 */
function solve(p: Problem, r: Range, first: boolean, last: boolean) {
  const limit = p.gpu.maxBinding;
  let worst: { op: Operand; bytes: number } | null = null;
  for (const op of [p.A, p.B, p.C]) {
    const w = window(op, span(op, r));
    if (w.bytes > limit && (!worst || w.bytes > worst.bytes)) worst = { op, bytes: w.bytes };
  }
  const [tm, tn] = groupTile(p);
  let dim: Dim | null = null, parts = 2;
  if (worst) {
    // Splitting the outer (row) dimension shrinks the span in whole rows. A single row above the limit
    // is split along its inner dimension instead (a sub-range of one row is contiguous).
    dim = hi(r, worst.op.outer) - lo(r, worst.op.outer) >= 2 ? worst.op.outer : worst.op.inner;
    if (hi(r, dim) - lo(r, dim) < 2) throw new Error(`matmul: cannot split ${worst.op.what} to fit maxStorageBufferBindingSize (${limit} bytes)`);
    parts = Math.ceil(worst.bytes / (limit - 4096));
  } else if (Math.ceil((r.m1 - r.m0) / tm) > MAX_GROUPS) {
    dim = 'm'; parts = Math.ceil((r.m1 - r.m0) / tm / MAX_GROUPS);
  } else if (Math.ceil((r.n1 - r.n0) / tn) > MAX_GROUPS) {
    dim = 'n'; parts = Math.ceil((r.n1 - r.n0) / tn / MAX_GROUPS);
  }
  if (!dim) { dispatch(p, r, first, last); return; }
  const d0 = lo(r, dim), d1 = hi(r, dim), len = d1 - d0;
  // NOTE: split points at multiples of 4 keep vec4 alignment of the parts' start offsets.
  let chunk = Math.ceil(Math.ceil(len / parts) / 4) * 4;
  if (chunk >= len) chunk = Math.ceil(len / 2);
  for (let s = d0; s < d1; s += chunk) {
    const sub = { ...r, [`${dim}0`]: s, [`${dim}1`]: Math.min(d1, s + chunk) } as Range;
    solve(p, sub, first && (dim !== 'k' || s === d0), last && (dim !== 'k' || s + chunk >= d1));
  }
}

function dispatch(p: Problem, r: Range, first: boolean, last: boolean) {
  const M = r.m1 - r.m0, N = r.n1 - r.n0, K = r.k1 - r.k0;
  if (M === 0 || N === 0) return;
  const beta = first ? p.beta : 1;
  const flags: Flags = { transA: p.transA, transB: p.transB, bias: first && !!p.bias, accumulate: beta !== 0, relu: last && p.relu, f16: p.dtype === 'f16' };
  const sA = span(p.A, r), sB = span(p.B, r), sC = span(p.C, r);
  const wA = window(p.A, sA), wB = window(p.B, sB), wC = window(p.C, sC);
  const bindings: Binding[] = [wA.binding, wB.binding];
  let offBias = 0;
  if (flags.bias && p.bias) {
    const opBias: Operand = { what: 'bias', t: p.bias, base: 0, ld: 0, outer: 'm', inner: 'n' };
    const wb = window(opBias, { start: r.n0, end: r.n1 });
    bindings.push(wb.binding);
    offBias = wb.off;
  }
  bindings.push(wC.binding);
  const u: MmValues = { M, N, K, lda: p.A.ld, ldb: p.B.ld, ldc: p.C.ld, offA: wA.off, offB: wB.off, offC: wC.off, offBias, beta };
  const [tm, tn] = groupTile(p);
  const groups: [number, number, number] = [Math.ceil(N / tn), Math.ceil(M / tm), 1];
  if (p.version === 'v1') {
    p.gpu.run(v1Kernel(flags), bindings, u, groups, 'matmul');
    return;
  }
  // vec4 loads need 16-byte-aligned rows: a row stride and a start offset (in the window) that are
  // multiples of 4 elements.
  const vecA = p.A.ld % 4 === 0 && wA.off % 4 === 0, vecB = p.B.ld % 4 === 0 && wB.off % 4 === 0;
  if (isV3Tile(p.tile)) {
    p.gpu.run(v3Kernel({ ...flags, vecA, vecB }, p.tile), bindings, u, groups, 'matmul');
  } else {
    const variant: V2Variant = { ...flags, vecA, vecB, subgroups: p.gpu.hasSubgroups && p.subgroups };
    p.gpu.run(v2Kernel(variant, p.tile), bindings, u, groups, 'matmul');
  }
}

/** Matrix dims of a 2-D or 3-D operand: [batch or 0 (shared), rows, cols]. */
function dims(what: string, t: Tensor): [number, number, number] {
  if (t.shape.length === 2) return [0, t.shape[0]!, t.shape[1]!];
  if (t.shape.length === 3) return [t.shape[0]!, t.shape[1]!, t.shape[2]!];
  throw new Error(`matmul: ${what} must be 2-D or 3-D, got [${t.shape.join(', ')}]`);
}

/**
 * C = op(A)·op(B) (+ bias) (+ β·out). A: [M,K] or [K,M] (transA), B: [K,N] or [N,K] (transB); either may
 * carry a leading batch dimension. Returns C ([M,N] or [Bt,M,N]); `out` itself when given.
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const { transA = false, transB = false, bias, out, version: pinnedVersion = 'v2', subgroups: pinnedSubgroups = true, relu = false } = opts;
  const beta = opts.accumulate ? 1 : opts.beta ?? 0;
  const gpu = a.gpu;
  a.assertLive(); b.assertLive();
  const [ba, ra, ca] = dims('A', a), [bb, rb, cb] = dims('B', b);
  const [M, Ka] = transA ? [ca, ra] : [ra, ca];
  const [Kb, N] = transB ? [cb, rb] : [rb, cb];
  if (Ka !== Kb) throw new Error(`matmul: inner dimensions differ: op(A) is [${M}, ${Ka}], op(B) is [${Kb}, ${N}]`);
  if (ba && bb && ba !== bb) throw new Error(`matmul: batch sizes differ (${ba} vs ${bb})`);
  const batch = Math.max(ba, bb);
  const shape = batch ? [batch, M, N] : [M, N];
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== N)) throw new Error(`matmul: bias must be [${N}], got [${bias.shape.join(', ')}]`);
  if (beta !== 0 && !out) throw new Error('matmul: beta ≠ 0 (accumulate) needs `out`');
  if (out && numel(out.shape) !== numel(shape)) throw new Error(`matmul: out is [${out.shape.join(', ')}], expected [${shape.join(', ')}]`);
  // Storage precision: every operand the same (f16 storage, f32 arithmetic; or all f32).
  const dtype = a.dtype;
  const others: [string, Tensor | undefined][] = [['B', b], ['bias', bias], ['out', out]];
  const mixed = others.filter(([, t]) => t && t.dtype !== dtype).map(([what]) => what);
  if (mixed.length) throw new Error(`matmul: A is ${dtype} but ${mixed.join(', ')} ${mixed.length > 1 ? 'are' : 'is'} not (cast them first: kernels/cast.ts)`);
  if (dtype === 'f16' && !gpu.features.has('shader-f16')) throw new Error(`matmul: f16 tensors need the adapter's shader-f16 feature, which ${gpu.adapterName} lacks; use f32`);
  const C = out ?? Tensor.empty(gpu, shape, undefined, dtype);
  // The autotuner's winner for this shape class, unless the caller pinned the kernel.
  const tuned = opts.version || opts.tile || opts.subgroups !== undefined ? undefined
    : tunedMatmul(M, N, Ka, { transA, transB }, dtype, gpu);
  const version = tuned?.version ?? pinnedVersion;
  const subgroups = tuned?.subgroups ?? pinnedSubgroups;
  const tile = tuned?.tile ?? opts.tile ?? (version === 'v3' ? pickV3Tile(M) : pickTile(M));
  if (version === 'v3' && !isV3Tile(tile)) throw new Error(`matmul: version v3 needs a V3Tile ({ TM, TN, WM, WN, KB }), got ${JSON.stringify(tile)}`);
  if (version === 'v2' && isV3Tile(tile)) throw new Error(`matmul: version v2 needs a Tile ({ TM, TN, KB, GM, GN }), got ${JSON.stringify(tile)}`);
  if (isV3Tile(tile)) checkV3Tile(gpu, tile);
  for (let i = 0; i < Math.max(1, batch); i++) {
    const p: Problem = {
      gpu, version, bias, transA, transB, beta, relu, tile, subgroups, dtype,
      A: { what: 'A', t: a, base: ba ? i * ra * ca : 0, ld: ca, outer: transA ? 'k' : 'm', inner: transA ? 'm' : 'k' },
      B: { what: 'B', t: b, base: bb ? i * rb * cb : 0, ld: cb, outer: transB ? 'n' : 'k', inner: transB ? 'k' : 'n' },
      C: { what: 'C', t: C, base: i * M * N, ld: N, outer: 'm', inner: 'n' },
    };
    solve(p, { m0: 0, m1: M, n0: 0, n1: N, k0: 0, k1: Ka }, true, true);
  }
  return C;
}

// ---- dense (fully connected) layer ------------------------------------------------------------

/** Options of `dense`: the matmul options that make sense for y = x·Wᵀ + b (kernel choice, fused ReLU). */
export type DenseOptions = Pick<MatmulOptions, 'version' | 'tile' | 'subgroups' | 'relu'>;

/** y[N,K] = x[N,C]·Wᵀ + b (relu: max(0, ·)), W: [K,C] (PyTorch Linear layout), b: [K]. */
export function dense(x: Tensor, W: Tensor, b?: Tensor, opts: DenseOptions = {}): Tensor {
  if (x.shape.length !== 2 || W.shape.length !== 2 || x.shape[1] !== W.shape[1]) {
    throw new Error(`dense: expected x [N,C] and W [K,C], got [${x.shape.join(', ')}] and [${W.shape.join(', ')}]`);
  }
  return matmul(x, W, { ...opts, transB: true, bias: b });
}

export interface DenseBackwardOptions {
  needDX?: boolean;
  needDW?: boolean;
  needDB?: boolean;
  version?: MatmulVersion;
}

export interface DenseGrads { dX?: Tensor; dW?: Tensor; db?: Tensor }

/**
 * Gradients of y = x·Wᵀ + b given dY [N,K]. The forward saved x (for dW) and W (for dX).
 *   dX[N,C] = dY·W      dW[K,C] = dYᵀ·x      db[K] = Σ_n dY[n,:]
 * Only the flagged gradients are computed (all by default).
 */
export function denseBackward(x: Tensor, W: Tensor, dY: Tensor, opts: DenseBackwardOptions = {}): DenseGrads {
  const { needDX = true, needDW = true, needDB = true, version } = opts;
  const [N, C] = x.shape as [number, number], K = W.shape[0]!;
  if (x.shape.length !== 2 || W.shape.length !== 2 || W.shape[1] !== C || dY.shape.length !== 2 || dY.shape[0] !== N || dY.shape[1] !== K) {
    throw new Error(`denseBackward: expected x [N,C], W [K,C], dY [N,K], got [${x.shape.join(', ')}], [${W.shape.join(', ')}], [${dY.shape.join(', ')}]`);
  }
  if (needDB && dY.dtype !== 'f32') throw new Error('denseBackward: db (sumTo) needs f32 dY');
  const g: DenseGrads = {};
  if (needDX) g.dX = matmul(dY, W, { version });
  if (needDW) g.dW = matmul(dY, x, { transA: true, version });
  if (needDB) g.db = sumTo(dY, [K]);
  return g;
}

// ---- autotuning (gpu/tune.ts) ------------------------------------------------------------------
//
// Candidate ids: 'v1'; 'v2.<TM>x<TN>k<KB>g<GM>x<GN>' (+ '.nosg': without subgroup sharing);
// 'v3.<TM>x<TN>k<KB>w<WM>x<WN>'. [0] is the heuristic choice (v2, pickTile(M), subgroups when the
// adapter has them). The shape class: transposes, each of M, N, K as its power-of-two floor plus its
// residue mod 4 (the residue decides vec4 vs scalar loads), and the storage type. Epilogues (bias,
// β, ReLU) are not part of it: they cost the same in every variant.

interface MatmulVariant { version: MatmulVersion; tile?: Tile | V3Tile; subgroups?: boolean }

const v2Id = (t: Tile, sg: boolean) => `v2.${t.TM}x${t.TN}k${t.KB}g${t.GM}x${t.GN}${sg ? '' : '.nosg'}`;
const v3Id = (t: V3Tile) => `v3.${t.TM}x${t.TN}k${t.KB}w${t.WM}x${t.WN}`;

function parseMatmulVariant(id: string): MatmulVariant {
  if (id === 'v1') return { version: 'v1' };
  let m = /^v2\.(\d+)x(\d+)k(\d+)g(\d+)x(\d+)(\.nosg)?$/.exec(id);
  if (m) return { version: 'v2', tile: { TM: +m[1]!, TN: +m[2]!, KB: +m[3]!, GM: +m[4]!, GN: +m[5]! }, subgroups: !m[6] };
  m = /^v3\.(\d+)x(\d+)k(\d+)w(\d+)x(\d+)$/.exec(id);
  if (m) return { version: 'v3', tile: { TM: +m[1]!, TN: +m[2]!, KB: +m[3]!, WM: +m[4]!, WN: +m[5]! } };
  throw new Error(`matmul: unknown variant '${id}'`);
}

/** Products below this many FLOPs are launch-bound: every variant costs the same, nothing to tune. */
const TUNE_MIN_FLOPS = 2 ** 21;

/**
 * The candidates for an M×N×K product: the default first, then v1, the v2 tiles that don't waste most
 * of their rows (TM ≤ max(4, M)), v2 without subgroups, and the v3 tiles whose block fits the adapter.
 * NOTE: on a software adapter v3 (barriers) measured 2–10× slower than v2 everywhere and each v3
 * pipeline takes seconds to compile there, so only its few-row/default tile is tried.
 */
export function matmulCandidates(M: number, N: number, K: number, _f: { transA: boolean; transB: boolean }, gpu: Gpu): string[] {
  const sg = gpu.hasSubgroups;
  const dflt = v2Id(pickTile(M), sg);
  if (2 * M * N * K < TUNE_MIN_FLOPS) return [dflt];
  // v1 (one invocation per output) only for small outputs; elsewhere it is ~15× slower and measuring it is waste.
  const out = [dflt, ...(M * N <= 4096 ? ['v1'] : []), ...V2_TILES.filter((t) => t.TM <= Math.max(4, M)).map((t) => v2Id(t, sg))];
  if (sg && !isSoftwareAdapter(gpu.adapterName)) out.push(v2Id(pickTile(M), false)); // 2–3× slower on lavapipe: not worth measuring there
  // NOTE: SwiftShader takes minutes to compile some tiled shaders (conv2d.ts pickVersion): no v3 there.
  const v3 = /swiftshader/i.test(gpu.adapterName) ? [] : isSoftwareAdapter(gpu.adapterName) ? [pickV3Tile(M)] : V3_TILES;
  for (const t of v3) {
    try { checkV3Tile(gpu, t); out.push(v3Id(t)); } catch { /* beyond this adapter's limits */ }
  }
  return [...new Set(out)];
}

/** d as its power-of-two floor plus its residue mod 4 (below 8: d itself). */
const bucket = (d: number) => (d < 8 ? d : 2 ** Math.floor(Math.log2(d - (d % 4))) + (d % 4));

function tunedMatmul(M: number, N: number, K: number, f: { transA: boolean; transB: boolean }, dtype: DType, gpu: Gpu): MatmulVariant | undefined {
  const [bm, bn, bk] = [M, N, K].map(bucket) as [number, number, number];
  const cls = `${f.transA ? 't' : 'n'}${f.transB ? 't' : 'n'} ${bm}x${bn}x${bk}${dtype === 'f16' ? ' f16' : ''}`;
  const id = gpu.tuner.choose('matmul', cls, () => matmulTrial(bm, bn, bk, f, dtype, gpu));
  return id === undefined ? undefined : parseMatmulVariant(id);
}

/** Multiply-adds·2 of one trial launch: seconds per class on a software adapter, milliseconds on a GPU. */
const trialBudget = (gpu: Gpu) => (isSoftwareAdapter(gpu.adapterName) ? 2e8 : 2e10);

/** The class's representative product, its largest dimensions halved until it fits the budget. */
function matmulTrial(M: number, N: number, K: number, f: { transA: boolean; transB: boolean }, dtype: DType, gpu: Gpu): TuneSpec {
  const d = [M, N, K];
  const halve = (x: number) => Math.max(4, (x - (x % 4)) / 2) + (x % 4);
  while (2 * d[0]! * d[1]! * d[2]! > trialBudget(gpu)) {
    const i = d.indexOf(Math.max(...d));
    if (d[i]! <= 8) break;
    d[i] = halve(d[i]!);
  }
  const [m, n, k] = d as [number, number, number];
  return {
    candidates: matmulCandidates(M, N, K, f, gpu),
    tolerance: dtype === 'f16' ? 4e-3 : undefined,
    flops: 2 * m * n * k,
    trial(gpu) {
      const rng = new Rng(0x3a7);
      const rand = (shape: number[]) => Tensor.from(gpu, Float32Array.from({ length: shape[0]! * shape[1]! }, () => rng.normal()), shape, dtype);
      const A = rand(f.transA ? [k, m] : [m, k]), B = rand(f.transB ? [n, k] : [k, n]);
      return {
        run: (id) => matmul(A, B, { ...f, ...parseMatmulVariant(id) }),
        dispose() { A.dispose(); B.dispose(); },
      };
    },
  };
}
