// A kernel is a spec (style.md #7): its name and version, its bindings, its uniforms, its workgroup
// size, and a WGSL body. The header (uniform struct + binding declarations) is generated from the spec,
// so bindings are declared once. The cache key is the name plus every compile-time constant.

import { uniformStruct, type UniformSpec } from './uniforms.js';

export type Access = 'read' | 'read_write';

export interface BindingSpec {
  readonly name: string;
  readonly access: Access;
  /** WGSL element type of the array; f32 unless said otherwise. */
  readonly type?: string;
}

export interface KernelSpec<U extends UniformSpec = UniformSpec> {
  /** e.g. 'conv2d.fwd.v2'. Appears in traces and benchmarks. */
  readonly name: string;
  /** Unique per distinct WGSL text: name + compile-time constants. */
  readonly key: string;
  readonly uniforms: U;
  readonly bindings: readonly BindingSpec[];
  readonly workgroupSize: readonly [number, number, number];
  /** WGSL after the generated header. Must define `@compute fn main`. */
  readonly body: string;
  /** WGSL `enable` directives the body needs (e.g. 'subgroups'). */
  readonly enables?: readonly string[];
}

/** Full WGSL source of a kernel: enables, uniform struct, bindings (uniform at binding 0), body. */
export function kernelSource(k: KernelSpec): string {
  const lines: string[] = [];
  for (const e of k.enables ?? []) lines.push(`enable ${e};`);
  lines.push(uniformStruct(k.uniforms));
  lines.push('@group(0) @binding(0) var<uniform> u: U;');
  k.bindings.forEach((b, i) => {
    lines.push(`@group(0) @binding(${i + 1}) var<storage, ${b.access}> ${b.name}: array<${b.type ?? 'f32'}>;`);
  });
  lines.push(`const WG_X: u32 = ${k.workgroupSize[0]}u;`);
  lines.push(k.body);
  return lines.join('\n');
}

/** Memoises kernel-spec builders by key, so a builder runs once per distinct set of constants. */
export function memo<A extends unknown[], R>(keyOf: (...a: A) => string, build: (...a: A) => R): (...a: A) => R {
  const cache = new Map<string, R>();
  return (...a: A) => {
    const k = keyOf(...a);
    let r = cache.get(k);
    if (r === undefined) { r = build(...a); cache.set(k, r); }
    return r;
  };
}

// ---- dispatch-size helpers -------------------------------------------------------------------

/** Max workgroups per dimension guaranteed by WebGPU. */
export const MAX_GROUPS = 65535;

/**
 * Grid for `n` independent items with `wg` invocations per workgroup. Spreads over y when x would
 * exceed 65535 groups; kernels recover the linear index with `linearIndex()` below.
 */
export function grid1d(n: number, wg: number): [number, number, number] {
  const groups = Math.max(1, Math.ceil(n / wg));
  if (groups <= MAX_GROUPS) return [groups, 1, 1];
  const y = Math.ceil(groups / MAX_GROUPS);
  return [Math.ceil(groups / y), y, 1];
}

/** WGSL snippet: linear invocation index for a grid made by `grid1d`. Needs gid and nwg builtins. */
export const LINEAR_INDEX = 'gid.x + gid.y * (nwg.x * WG_X)';
