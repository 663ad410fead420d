import { defineConfig } from "vitest/config";

/** The console's load test measures main-thread long tasks: it runs after everything else, alone. */
const PERF = "test/browser/console-perf.browser.test.ts";

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ["default"],
    projects: [
      {
        extends: true,
        test: {
          name: "nexus",
          globalSetup: ["./packages/testkit/src/global-setup.ts"],
          include: [
            "packages/*/src/**/*.test.ts",
            "services/*/src/**/*.test.ts",
            "services/*/test/**/*.test.ts",
            "test/**/*.test.ts",
          ],
          exclude: ["**/node_modules/**", "**/dist/**", PERF],
          // Files run in parallel (2 cores); each uses its own tenants, database and NATS server.
          fileParallelism: true,
          maxWorkers: 3,
        },
      },
      {
        extends: true,
        test: {
          name: "console-perf",
          include: [PERF],
          // After the group above has finished: nothing else competes for the CPU it measures.
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
