import { defineConfig } from "vite";

/**
 * The console is served by the gateway at `/ui/` (index at `/ui`), so every asset URL starts
 * with `/ui/`. In `vite dev` the API paths are proxied to the gateway (NEXUS_API_URL, default
 * http://127.0.0.1:8080) so the page keeps talking to its own origin.
 */
const api = process.env.NEXUS_API_URL ?? "http://127.0.0.1:8080";
const proxied = ["/sidecar", "/approvals", "/agent", "/profile", "/assistant", "/compliance"];

export default defineConfig({
  base: "/ui/",
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    sourcemap: true,
    rollupOptions: {
      // zod's sources carry `@__PURE__` comments in places Rollup cannot use; harmless noise.
      onwarn(warning, warn) {
        if (warning.code === "INVALID_ANNOTATION") return;
        warn(warning);
      },
    },
  },
  server: { proxy: Object.fromEntries(proxied.map((p) => [p, { target: api, changeOrigin: false }])) },
});
