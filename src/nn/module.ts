// Module and Parameter: the PyTorch shape of things, small enough to read in one sitting.
//
// A Module owns named Parameters (trainable tensors), named buffers (non-trainable state such as
// BatchNorm's running statistics) and named child Modules. Names compose with dots exactly as in a
// PyTorch state_dict: `layer3.1.conv2.weight`.

import { Variable } from '../autograd/variable.js';
import type { Tensor } from '../gpu/tensor.js';

/**
 * A trainable tensor. `trainable` is the user-facing flag (freeze/unfreeze set it); it drives
 * requiresGrad, so a frozen parameter gets no gradient buffer and no backward work.
 */
export class Parameter extends Variable {
  constructor(data: Tensor, name = '') {
    super(data, true, name);
  }
  get trainable(): boolean { return this.requiresGrad; }
  set trainable(on: boolean) {
    this.requiresGrad = on;
    if (!on) this.zeroGrad(); // frozen: release any gradient buffer
  }
}

export abstract class Module {
  training = true;
  private readonly _params = new Map<string, Parameter>();
  private readonly _buffers = new Map<string, Tensor>();
  private readonly _children = new Map<string, Module>();

  abstract forward(x: Variable): Variable;

  /** Calls forward (so modules read like PyTorch: `model.call(x)`). */
  call(x: Variable): Variable { return this.forward(x); }

  protected param(name: string, t: Tensor): Parameter {
    const p = new Parameter(t, name);
    this._params.set(name, p);
    return p;
  }

  protected buffer(name: string, t: Tensor): Tensor {
    this._buffers.set(name, t);
    return t;
  }

  /** Replaces a registered buffer's tensor (e.g. when loading weights). */
  setBuffer(name: string, t: Tensor) {
    if (!this._buffers.has(name)) throw new Error(`no buffer '${name}'`);
    this._buffers.set(name, t);
  }

  getBuffer(name: string): Tensor | undefined { return this._buffers.get(name); }

  protected child<M extends Module>(name: string, m: M): M {
    this._children.set(name, m);
    return m;
  }

  /** Replaces (or adds) a child module, e.g. a new classifier head. */
  setChild(name: string, m: Module) { this._children.set(name, m); }

  getChild(name: string): Module | undefined { return this._children.get(name); }

  /** Removes a child module (its tensors are not released: dispose it yourself). */
  removeChild(name: string) { this._children.delete(name); }

  children(): [string, Module][] { return [...this._children]; }

  *namedModules(prefix = ''): Generator<[string, Module]> {
    yield [prefix, this];
    for (const [n, c] of this._children) yield* c.namedModules(prefix ? `${prefix}.${n}` : n);
  }

  /** Parameters in registration order, with dotted names (torchvision's state_dict order). */
  namedParameters(prefix = ''): [string, Parameter][] {
    const out: [string, Parameter][] = [];
    for (const [p, m] of this.namedModules(prefix)) {
      for (const [n, t] of m._params) out.push([p ? `${p}.${n}` : n, t]);
    }
    return out;
  }

  parameters(): Parameter[] { return this.namedParameters().map(([, p]) => p); }

  namedBuffers(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [p, m] of this.namedModules(prefix)) {
      for (const [n, t] of m._buffers) out.push([p ? `${p}.${n}` : n, t]);
    }
    return out;
  }

  /** Parameters and buffers, as a state_dict would list them. */
  stateDict(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [p, m] of this.namedModules()) {
      for (const [n, t] of m._params) out.push([p ? `${p}.${n}` : n, t.data]);
      for (const [n, t] of m._buffers) out.push([p ? `${p}.${n}` : n, t]);
    }
    return out;
  }

  train(on = true): this {
    for (const [, m] of this.namedModules()) m.training = on;
    return this;
  }

  eval(): this { return this.train(false); }

  /** Sets `trainable` on every parameter of this module and its children. */
  setTrainable(on: boolean): this {
    for (const p of this.parameters()) p.trainable = on;
    return this;
  }

  numParameters(): number { return this.parameters().reduce((s, p) => s + p.size, 0); }

  /** Releases every parameter and buffer. */
  dispose() {
    for (const p of this.parameters()) p.dispose();
    for (const [, t] of this.namedBuffers()) t.dispose();
  }
}
