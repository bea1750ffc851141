// The kernel clocks live with the GPU runtime (the autotuner uses them too): src/gpu/timing.ts.
export { median, timeLaunch, timingMethod, type TimeOptions, type Timed, type TimingMethod } from '../gpu/timing.js';
