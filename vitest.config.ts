import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    globalSetup: ["./packages/testkit/src/global-setup.ts"],
    include: [
      "packages/*/src/**/*.test.ts",
      "services/*/src/**/*.test.ts",
      "services/*/test/**/*.test.ts",
      "test/**/*.test.ts",
    ],
    exclude: ["**/node_modules/**", "**/dist/**"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Files run in parallel (2 cores); each uses its own tenants, database and NATS server.
    fileParallelism: true,
    maxWorkers: 3,
    reporters: ["default"],
  },
});
