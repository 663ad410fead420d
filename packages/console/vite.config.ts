import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";
import { defineConfig, type Plugin } from "vite";

/**
 * The console is served by the gateway at `/ui/` (index at `/ui`), so every asset URL starts
 * with `/ui/`. In `vite dev` the API paths are proxied to the gateway (NEXUS_API_URL, default
 * http://127.0.0.1:8080) so the page keeps talking to its own origin.
 */
const api = process.env.NEXUS_API_URL ?? "http://127.0.0.1:8080";
const proxied = ["/sidecar", "/approvals", "/agent", "/profile", "/assistant", "/compliance"];

const dist = join(import.meta.dirname, "dist");
/** Source maps go here, next to dist/ and never served (error reports can still be symbolicated). */
const maps = join(import.meta.dirname, "sourcemaps");

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
}

/**
 * After the build: moves the (hidden) source maps out of `dist/`, and writes a brotli (`.br`,
 * quality 11) and a gzip (`.gz`, level 9) copy of every text file of 1 KiB or more, which the
 * gateway serves as they are (`@fastify/static` `preCompressed`).
 */
function compressAndHideMaps(): Plugin {
  return {
    name: "nexus-compress-and-hide-maps",
    apply: "build",
    closeBundle() {
      rmSync(maps, { recursive: true, force: true });
      for (const file of files(dist)) {
        if (file.endsWith(".map")) {
          const to = join(maps, relative(dist, file));
          mkdirSync(join(to, ".."), { recursive: true });
          renameSync(file, to);
          continue;
        }
        if (!/\.(js|css|html|svg|json|txt)$/.test(file)) continue;
        const body = readFileSync(file);
        if (body.length < 1024) continue;
        writeFileSync(
          `${file}.br`,
          brotliCompressSync(body, {
            params: {
              [constants.BROTLI_PARAM_QUALITY]: 11,
              [constants.BROTLI_PARAM_SIZE_HINT]: body.length,
            },
          }),
        );
        writeFileSync(`${file}.gz`, gzipSync(body, { level: 9 }));
      }
    },
  };
}

export default defineConfig({
  base: "/ui/",
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  plugins: [compressAndHideMaps()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    // Maps are written without a sourceMappingURL comment and moved out of dist/ (see above).
    sourcemap: "hidden",
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
