import { defineConfig } from 'vitest/config';

// One GPU device per test file; lavapipe is single-queue and CPU-bound, so files run one at a time
// (two workers would just fight for the 2 cores that the software adapter already uses).
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    reporters: ['default'],
    // Kernel autotuning off: every test runs the heuristic defaults (deterministic, no measuring);
    // test/gpu/tune.test.ts and the tuning tests turn it on for themselves.
    env: { WGTRAIN_AUTOTUNE: 'off' },
  },
});
