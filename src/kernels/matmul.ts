// Dense / matmul family: the general matrix product and the fully-connected layer built on it.
//
//   matmul:         C[M,N] = op(A)·op(B) (+ bias[N] broadcast over rows) (+ β·C_old)
//                   op(X) = X or Xᵀ. Row-major storage: A is [M,K] (transA: [K,M]), B is [K,N]
//                   (transB: [N,K]). 3-D operands [Bt,·,·] run one product per batch item (a 2-D
//                   operand is shared by every item).
//   dense:          y[N,K] = x[N,C]·Wᵀ + b              PyTorch Linear: W is [K,C] (out × in), b [K]
//   denseBackward:  dX[N,C] = dY·W                     (needs W; matmul, no transposes)
//                   dW[K,C] = dYᵀ·x                    (needs x; matmul with transA)
//                   db[K]   = Σ_n dY[n,:]              (reduce.ts sumTo)
//                   Each gradient is computed only when asked for: a frozen layer does no dW work.
//
// Versions (GFLOP/s at M=N=K=1024 on lavapipe, 2 vCPUs shared with other jobs, so approximate;
// `bench/matmul-gflops.ts`):
//   v1  naive: one invocation per output element, a scalar dot product over K.          ~1.5–1.9
//   v2  register tiles: each invocation computes TM×TN = 16×4 outputs from vec4 loads. The 8 lanes
//       of a sharing group compute the same 16 rows and adjacent 4-column blocks (a 16×32 tile);
//       each lane loads 1/8 of the group's A tile and `subgroupBroadcast`s it to the other 7, and
//       loads its own B tile. On lavapipe every non-uniform load is a per-lane loop, so loads, not
//       FMAs, are the cost (measured: FMAs + broadcasts alone run at ~85 GFLOP/s). Full k-blocks
//       load from loop-invariant indices without bounds masks; the K % 4 tail runs one k at a time.
//       Few-row products (dense layers: M = batch) use 4- or 8-row tiles (`pickTile`).    ~25–30
//       (transposed operands: 19–30; 8×4 tiles: ~23; before the mask-free main loop: ~19)
//       Without the subgroups feature each lane loads the whole A tile itself: ~6.
//       Operands whose rows are not 16-byte aligned (e.g. K = 33 without transposes) are read
//       with scalar loads assembled into vec4s: same tiles, slower.
//
// Tensors above the binding limit (`gpu.maxBinding`, 128 MiB on lavapipe; VGG16's classifier.0.weight
// is 392 MiB) live in one GPUBuffer but are bound in windows (offset a multiple of 256 B, size ≤ the
// limit). The launcher splits the product into regions whose operands each fit in one window: an
// operand's outer (row) dimension is split — for y = x·Wᵀ that is N (rows of W, output columns);
// for dW = dYᵀ·x it is M (rows of dW); for dX = dY·W it is K (rows of W), and the K parts after the
// first accumulate into C (β = 1). A single row above the limit is split along the row.

import { memo, MAX_GROUPS, type KernelSpec } from '../gpu/kernel.js';
import { Tensor, numel } from '../gpu/tensor.js';
import type { Binding, Gpu } from '../gpu/device.js';
import { sumTo } from './reduce.js';

export type MatmulVersion = 'v1' | 'v2';

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
  version?: MatmulVersion;
  /** v2 tile shape (tuning and benchmarks); default pickTile(M). */
  tile?: Tile;
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
}

function bindingsOf(f: Flags, vecA: boolean, vecB: boolean) {
  return [
    { name: 'A', access: 'read' as const, type: vecA ? 'vec4f' : 'f32' },
    { name: 'B', access: 'read' as const, type: vecB ? 'vec4f' : 'f32' },
    ...(f.bias ? [{ name: 'bias', access: 'read' as const }] : []),
    { name: 'C', access: 'read_write' as const },
  ];
}

const flagKey = (f: Flags) => `${f.transA ? 't' : 'n'}${f.transB ? 't' : 'n'}${f.bias ? '.bias' : ''}${f.accumulate ? '.acc' : ''}`;

/** Epilogue for one output value `v` at (r, c) of the region: + bias[c] + β·C_old. */
function epilogue(f: Flags, v: string, r: string, c: string): string {
  const idx = `u.offC + ${r} * u.ldc + ${c}`;
  const terms = [v];
  if (f.bias) terms.push(`bias[u.offBias + ${c}]`);
  if (f.accumulate) terms.push(`u.beta * C[${idx}]`);
  return `C[${idx}] = ${terms.join(' + ')};`;
}

// v1: one invocation per C element. Kept as the readable definition and a cross-check.
const V1_WG = 8;
const v1Kernel = memo((f: Flags) => flagKey(f), (f: Flags): KernelSpec<MmU> => ({
  name: 'matmul.v1', key: `matmul.v1.${flagKey(f)}`,
  uniforms: MM_UNIFORMS,
  bindings: bindingsOf(f, false, false),
  workgroupSize: [V1_WG, V1_WG, 1],
  body: /* wgsl */ `
@compute @workgroup_size(${V1_WG}, ${V1_WG})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let n = gid.x;
  let m = gid.y;
  if (m >= u.M || n >= u.N) { return; }
  var acc = 0.0;
  for (var k = 0u; k < u.K; k++) {
    // A[m,k] (transA: stored at [k,m]) · B[k,n] (transB: stored at [n,k])
    acc += A[u.offA + ${f.transA ? 'k * u.lda + m' : 'm * u.lda + k'}] * B[u.offB + ${f.transB ? 'n * u.ldb + k' : 'k * u.ldb + n'}];
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

/**
 * Default tile for M rows. NOTE: rows past M are computed and dropped, so for the few-row products of
 * a dense layer (M = batch) a 16-row tile would do up to 8× useless work: shrink TM and keep one group
 * row per workgroup. Measured on lavapipe, [2, 4096]·[4096, 4096]ᵀ: 37 ms with V2_TILE, 11 ms with
 * TM = 4. Few distinct tiles, because every variant is a pipeline to compile (~0.6 s for TM = 4,
 * ~2.5 s for TM = 16 on lavapipe).
 */
export function pickTile(M: number): Tile {
  if (M <= 4) return { TM: 4, TN: 4, KB: 8, GM: 1, GN: 8 };
  if (M <= 8) return { TM: 8, TN: 4, KB: 4, GM: 1, GN: 8 };
  return V2_TILE;
}
const LANES = 8;
const COMP = ['x', 'y', 'z', 'w'] as const;

interface V2Variant extends Flags { vecA: boolean; vecB: boolean; subgroups: boolean }

/** One operand as the v2 generator sees it: pieces are 4 consecutive elements of a stored row. */
interface Side { buf: 'A' | 'B'; vec: boolean; rows: string; cols: string; kAxis: 'r' | 'c' }

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
  const get = s.vec ? `${s.buf}[i >> 2u][i & 3u]` : `${s.buf}[i]`;
  return `fn elem${s.buf}(r: u32, c: u32) -> f32 {\n  let i = ${off} + ${r} * ${ld} + ${c};\n  return ${get};\n}`;
}

/** The piece at k0 from its base `p` (full k-blocks only: no masks needed). */
function pieceAt(s: Side, p: string): string {
  const inc = s.kAxis === 'c' ? (s.vec ? '(k0 >> 2u)' : 'k0') : (s.vec ? `k0 * (u.ld${s.buf.toLowerCase()} >> 2u)` : `k0 * u.ld${s.buf.toLowerCase()}`);
  if (s.vec) return `${s.buf}[${p} + ${inc}]`;
  return `vec4f(${COMP.map((x) => `${s.buf}[${p}.${x} + ${inc}]`).join(', ')})`;
}

function v2Body(v: V2Variant, t: Tile): string {
  const { TM, TN, KB, GM, GN } = t;
  const P = (TM * KB) / 4; // A pieces per k-block per group
  const PL = P / LANES; // A pieces loaded per lane when shared
  const TN4 = TN / 4, KB4 = KB / 4, TM4 = TM / 4;
  // A: nt → pieces A[m, k..k+3] (K along the row); t → A[k, m..m+3]. B: nt → B[k, n..n+3]; t → B[n, k..k+3].
  const sA: Side = v.transA ? { buf: 'A', vec: v.vecA, rows: 'u.K', cols: 'u.M', kAxis: 'r' } : { buf: 'A', vec: v.vecA, rows: 'u.M', cols: 'u.K', kAxis: 'c' };
  const sB: Side = v.transB ? { buf: 'B', vec: v.vecB, rows: 'u.N', cols: 'u.K', kAxis: 'c' } : { buf: 'B', vec: v.vecB, rows: 'u.K', cols: 'u.N', kAxis: 'r' };
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
    enables: v.subgroups ? ['subgroups'] : [],
  };
});

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

const ALIGN = 64; // elements: 256-byte binding offsets

/** The window binding an element span, and the span's offset inside it. */
function window(op: Operand, s: { start: number; end: number }): { binding: Binding; off: number; bytes: number } {
  const aligned = Math.floor(s.start / ALIGN) * ALIGN;
  // NOTE: rounded up to 16 bytes so a vec4 view covers the last partial vec4; capped at the buffer.
  const bytes = Math.min(Math.max(16, Math.ceil(((s.end - aligned) * 4) / 16) * 16), op.t.buffer.size - aligned * 4);
  return { binding: { buffer: op.t.buffer, offset: aligned * 4, size: bytes }, off: s.start - aligned, bytes };
}

interface Problem {
  gpu: Gpu; version: MatmulVersion;
  A: Operand; B: Operand; C: Operand; bias?: Tensor;
  transA: boolean; transB: boolean; beta: number; tile: Tile; subgroups: boolean;
}

/** Output tile of one workgroup (rows, columns) for a version. */
function groupTile(p: Problem): [number, number] {
  const t = p.tile;
  return p.version === 'v1' ? [V1_WG, V1_WG] : [t.GM * t.TM, t.GN * LANES * t.TN];
}

/**
 * Splits the region until every operand fits one binding window and the grid fits the dispatch
 * limits, then dispatches each part. `first`: the part that applies the bias and the caller's β; the
 * K parts after it accumulate (β = 1).
 */
function solve(p: Problem, r: Range, first: boolean) {
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
  if (!dim) { dispatch(p, r, first); return; }
  const d0 = lo(r, dim), d1 = hi(r, dim), len = d1 - d0;
  // NOTE: split points at multiples of 4 keep vec4 alignment of the parts' start offsets.
  let chunk = Math.ceil(Math.ceil(len / parts) / 4) * 4;
  if (chunk >= len) chunk = Math.ceil(len / 2);
  for (let s = d0; s < d1; s += chunk) {
    const sub = { ...r, [`${dim}0`]: s, [`${dim}1`]: Math.min(d1, s + chunk) } as Range;
    solve(p, sub, first && (dim !== 'k' || s === d0));
  }
}

function dispatch(p: Problem, r: Range, first: boolean) {
  const M = r.m1 - r.m0, N = r.n1 - r.n0, K = r.k1 - r.k0;
  if (M === 0 || N === 0) return;
  const beta = first ? p.beta : 1;
  const flags: Flags = { transA: p.transA, transB: p.transB, bias: first && !!p.bias, accumulate: beta !== 0 };
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
  const vec = (op: Operand, s: { start: number }) => op.ld % 4 === 0 && s.start % 4 === 0;
  const variant: V2Variant = { ...flags, vecA: vec(p.A, sA), vecB: vec(p.B, sB), subgroups: p.gpu.hasSubgroups && p.subgroups };
  p.gpu.run(v2Kernel(variant, p.tile), bindings, u, groups, 'matmul');
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
  const { transA = false, transB = false, bias, out, version = 'v2', subgroups = true } = opts;
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
  const C = out ?? Tensor.empty(gpu, shape);
  const tile = opts.tile ?? pickTile(M);
  for (let i = 0; i < Math.max(1, batch); i++) {
    const p: Problem = {
      gpu, version, bias, transA, transB, beta, tile, subgroups,
      A: { what: 'A', t: a, base: ba ? i * ra * ca : 0, ld: ca, outer: transA ? 'k' : 'm', inner: transA ? 'm' : 'k' },
      B: { what: 'B', t: b, base: bb ? i * rb * cb : 0, ld: cb, outer: transB ? 'n' : 'k', inner: transB ? 'k' : 'n' },
      C: { what: 'C', t: C, base: i * M * N, ld: N, outer: 'm', inner: 'n' },
    };
    solve(p, { m0: 0, m1: M, n0: 0, n1: N, k0: 0, k1: Ka }, true);
  }
  return C;
}

// ---- dense (fully connected) layer ------------------------------------------------------------

/** y[N,K] = x[N,C]·Wᵀ + b, W: [K,C] (PyTorch Linear layout), b: [K]. */
export function dense(x: Tensor, W: Tensor, b?: Tensor, opts: { version?: MatmulVersion } = {}): Tensor {
  if (x.shape.length !== 2 || W.shape.length !== 2 || x.shape[1] !== W.shape[1]) {
    throw new Error(`dense: expected x [N,C] and W [K,C], got [${x.shape.join(', ')}] and [${W.shape.join(', ')}]`);
  }
  return matmul(x, W, { transB: true, bias: b, version: opts.version });
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
  const g: DenseGrads = {};
  if (needDX) g.dX = matmul(dY, W, { version });
  if (needDW) g.dW = matmul(dY, x, { transA: true, version });
  if (needDB) g.db = sumTo(dY, [K]);
  return g;
}
