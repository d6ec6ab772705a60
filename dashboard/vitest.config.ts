import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    // The browser test waits for real 2 s polls; unit tests finish far below this.
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
