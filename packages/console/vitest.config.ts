import { defineConfig } from "vitest/config";

/** Unit tests of the console's pure modules (no DOM): `npx vitest run --root packages/console`. */
export default defineConfig({
  test: { environment: "node", include: ["src/**/*.test.ts"] },
});
