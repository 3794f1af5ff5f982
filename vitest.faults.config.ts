import { defineConfig } from "vitest/config";

/**
 * `npm run test:faults`: the fault suite (tests/faults). Each file runs a two-country network of
 * real gateway processes, injects one fault under load and checks that every message arrived
 * exactly once. The files load the machine, so they run one at a time.
 */
export default defineConfig({
  test: {
    name: "faults",
    include: ["tests/faults/**/*.test.ts"],
    globalSetup: ["tests/faults/global-setup.ts"],
    fileParallelism: false,
    testTimeout: 300_000,
    hookTimeout: 120_000,
  },
});
