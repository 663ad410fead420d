import fs from "node:fs";
import path from "node:path";
import fastifyStatic from "@fastify/static";
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";

/** Options of {@link consoleStatic}. */
export interface ConsoleStaticOptions {
  /** The console's build (`packages/console/dist`): `index.html`, `assets/*` with `.br` / `.gz` siblings. */
  root: string;
}

/** Hashed build files never change: a year, and browsers need not revalidate them. */
export const IMMUTABLE = "public, max-age=31536000, immutable";
/** `index.html` names the current hashed files: always revalidated. */
export const REVALIDATE = "no-cache";

/** `/ui/` plus the request's query string, so `?org_id=&project_id=` deep links survive the redirect. */
function toConsole(req: FastifyRequest, reply: FastifyReply) {
  const q = req.url.indexOf("?");
  return reply.redirect(`/ui/${q >= 0 ? req.url.slice(q) : ""}`);
}

function setHeader(res: unknown, name: string, value: string): void {
  const r = res as { header?: (n: string, v: string) => void; setHeader?: (n: string, v: string) => void };
  if (typeof r.header === "function") r.header(name, value);
  else r.setHeader?.(name, value);
}

/**
 * Serves the console at `/ui/`: the build's pre-compressed files (brotli or gzip, by the
 * request's `Accept-Encoding`, with `Vary: accept-encoding`), `Cache-Control` immutable for the
 * hashed `assets/*` and `no-cache` for `index.html`, and never a source map. `GET /ui` and
 * `GET /` redirect to `/ui/` keeping the query string. Without a build, `/ui` answers 503 with
 * how to build it.
 */
export const consoleStatic: FastifyPluginAsync<ConsoleStaticOptions> = async (app, { root }) => {
  app.get("/", { schema: { hide: true } }, toConsole);
  if (!fs.existsSync(path.join(root, "index.html"))) {
    app.get("/ui", { schema: { hide: true } }, (_req, reply) =>
      reply.code(503).type("text/plain").send("The console is not built: run `pnpm build` (pnpm start does it)."),
    );
    return;
  }
  await app.register(fastifyStatic, {
    root,
    prefix: "/ui/",
    decorateReply: false,
    preCompressed: true,
    cacheControl: false,
    etag: true,
    lastModified: true,
    // Source maps stay private even if a build leaves one behind.
    allowedPath: (pathname) => !pathname.endsWith(".map"),
    setHeaders(res, filePath) {
      const rel = path.relative(root, filePath).split(path.sep);
      setHeader(res, "cache-control", rel[0] === "assets" ? IMMUTABLE : REVALIDATE);
    },
  });
  app.get("/ui", { schema: { hide: true } }, toConsole);
};
