import { defineConfig } from 'vitest/config';

// Each test file starts its own engine workers (Python, on the CPU) once; files run in separate processes
// so a worker killed in one file cannot touch another file's.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 180_000,
    teardownTimeout: 30_000,
  },
});
