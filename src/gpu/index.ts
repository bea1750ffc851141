export { Gpu, GpuError, createGpu, getGpu, type Binding, type GpuOptions, type KernelTime } from './device.js';
export { Tensor, numel, expectShape, type Shape } from './tensor.js';
export { kernelSource, memo, grid1d, LINEAR_INDEX, MAX_GROUPS, type KernelSpec, type BindingSpec } from './kernel.js';
export { uniformStruct, packUniforms, type UniformSpec, type UniformValues } from './uniforms.js';
export { bucketSize, type PoolStats } from './pool.js';
export { Tuner, TUNE_MODES, isSoftwareAdapter, type TuneMode, type TuneSpec, type TuneTrial, type TuneEntry, type TuneTable, type TuneStore, type TuneResult } from './tune.js';
export { timeLaunch, timingMethod, median, type TimeOptions, type Timed, type TimingMethod } from './timing.js';
