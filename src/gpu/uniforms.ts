// Uniform layouts, defined once. A kernel declares its uniforms as an ordered record of scalar types;
// from that one definition we derive both the WGSL struct and the byte packing, so the two can never
// disagree (the classic bug of a uniform struct written twice by hand).
//
// NOTE: every field is a 4-byte scalar, so WGSL's layout rules reduce to "fields in order, 4 bytes
// each, struct size rounded up to 16". Vectors are deliberately not supported here.

export type ScalarType = 'u32' | 'i32' | 'f32';
export type UniformSpec = Readonly<Record<string, ScalarType>>;
export type UniformValues<U extends UniformSpec> = { readonly [K in keyof U]: number };

/** WGSL text of the uniform struct `U` for a spec. */
export function uniformStruct(spec: UniformSpec): string {
  const fields = Object.entries(spec).map(([name, t]) => `  ${name}: ${t},`);
  if (fields.length === 0) fields.push('  _unused: u32,');
  return `struct U {\n${fields.join('\n')}\n};`;
}

/** Byte size of the uniform buffer for a spec (at least 16, a multiple of 16). */
export function uniformByteSize(spec: UniformSpec): number {
  const n = Math.max(1, Object.keys(spec).length);
  return Math.ceil((n * 4) / 16) * 16;
}

/** Packs values into the little-endian layout that `uniformStruct` declares. */
export function packUniforms<U extends UniformSpec>(spec: U, values: UniformValues<U>): ArrayBuffer {
  const buf = new ArrayBuffer(uniformByteSize(spec));
  const view = new DataView(buf);
  let off = 0;
  for (const [name, t] of Object.entries(spec)) {
    const v = (values as Record<string, number>)[name];
    if (v === undefined || Number.isNaN(v) && t !== 'f32') throw new Error(`uniform '${name}' is missing`);
    if (t === 'f32') view.setFloat32(off, v, true);
    else if (t === 'u32') {
      if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new Error(`uniform '${name}'=${v} is not a u32`);
      view.setUint32(off, v, true);
    } else {
      if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) throw new Error(`uniform '${name}'=${v} is not an i32`);
      view.setInt32(off, v, true);
    }
    off += 4;
  }
  return buf;
}
