import fs from "node:fs";
import path from "node:path";
import fastifyStatic from "@fastify/static";
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";

/**
 * What the console needs to know at run time, served as `GET /ui/config.json` (the console reads
 * it before anything else). Never a secret: the OAuth client is a public client (PKCE).
 */
export interface ConsoleRuntimeConfig {
  /** The gateway's `AUTH_MODE`: `header` (tenant and principal from headers) or `jwt` (sign-in). */
  auth: "header" | "jwt";
  /** The gateway's `JWT_ROLES_CLAIM` (a dotted path): where the console reads the signed-in principal's roles. */
  roles_claim: string;
  /** OpenID Connect sign-in (JWT mode with `CONSOLE_OIDC_ISSUER` and `CONSOLE_OIDC_CLIENT_ID` set). */
  oidc?: {
    issuer: string;
    client_id: string;
    /** Space-separated. */
    scopes: string;
    audience?: string;
  };
}

/** Options of {@link consoleStatic}. */
export interface ConsoleStaticOptions {
  /** The console's build (`packages/console/dist`): `index.html`, `assets/*` with `.br` / `.gz` siblings. */
  root: string;
  /** Served as `/ui/config.json`; its OIDC issuer's origin (and `connectOrigins`) join `connect-src` on `/ui`. */
  runtime?: ConsoleRuntimeConfig;
  /** More origins for `connect-src` on `/ui` (a token endpoint on another origin than the issuer). */
  connectOrigins?: string[];
}

/** The parts of the gateway's configuration {@link consoleRuntimeConfig} reads. */
export interface ConsoleConfigSource {
  AUTH_MODE: "header" | "jwt";
  JWT_ROLES_CLAIM: string;
  CONSOLE_OIDC_ISSUER?: string | undefined;
  CONSOLE_OIDC_CLIENT_ID?: string | undefined;
  CONSOLE_OIDC_SCOPES: string;
  CONSOLE_OIDC_AUDIENCE?: string | undefined;
}

/** The console's runtime configuration from the gateway's (see README "Console sign-in"). */
export function consoleRuntimeConfig(c: ConsoleConfigSource): ConsoleRuntimeConfig {
  const oidc =
    c.AUTH_MODE === "jwt" && c.CONSOLE_OIDC_ISSUER && c.CONSOLE_OIDC_CLIENT_ID
      ? {
          issuer: c.CONSOLE_OIDC_ISSUER,
          client_id: c.CONSOLE_OIDC_CLIENT_ID,
          scopes: c.CONSOLE_OIDC_SCOPES.split(/\s+/).filter(Boolean).join(" "),
          ...(c.CONSOLE_OIDC_AUDIENCE ? { audience: c.CONSOLE_OIDC_AUDIENCE } : {}),
        }
      : undefined;
  return { auth: c.AUTH_MODE, roles_claim: c.JWT_ROLES_CLAIM, ...(oidc ? { oidc } : {}) };
}

/**
 * `policy` (a Content-Security-Policy) with `origins` added to its `connect-src` directive (one
 * is added when it has none). Origins are normalised by `URL` (scheme, host, port; no path).
 */
export function withConnectOrigins(policy: string, origins: readonly string[]): string {
  const extra = [...new Set(origins.map((o) => new URL(o).origin))];
  if (extra.length === 0) return policy;
  const parts = policy
    .split(";")
    .map((d) => d.trim())
    .filter(Boolean);
  const i = parts.findIndex((d) => d.split(/\s+/)[0]?.toLowerCase() === "connect-src");
  if (i >= 0) parts[i] = `${parts[i]} ${extra.join(" ")}`;
  else parts.push(`connect-src 'self' ${extra.join(" ")}`);
  return parts.join(";");
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
 *
 * `GET /ui/config.json` is the console's {@link ConsoleRuntimeConfig} (`no-cache`). When sign-in
 * is configured, the responses of this plugin (and only these: the API keeps `connect-src 'self'`)
 * allow the browser to reach the OIDC issuer's origin (discovery, token endpoint): the console
 * exchanges the authorization code and refreshes tokens with `fetch`. The sign-in itself is a
 * top-level redirect, which CSP does not restrict and `frame-ancestors 'none'` does not need.
 */
export const consoleStatic: FastifyPluginAsync<ConsoleStaticOptions> = async (app, o) => {
  const { root } = o;
  const runtime: ConsoleRuntimeConfig = o.runtime ?? { auth: "header", roles_claim: "roles" };
  const origins = [...(runtime.oidc ? [runtime.oidc.issuer] : []), ...(o.connectOrigins ?? [])];
  if (origins.length > 0) {
    // The global security headers were set on the reply by an earlier onRequest hook.
    app.addHook("onRequest", async (_req, reply) => {
      const csp = reply.getHeader("content-security-policy");
      if (typeof csp === "string") reply.header("content-security-policy", withConnectOrigins(csp, origins));
    });
  }
  const configBody = JSON.stringify(runtime);
  app.get("/ui/config.json", { schema: { hide: true } }, (_req, reply) =>
    reply.header("cache-control", REVALIDATE).type("application/json; charset=utf-8").send(configBody),
  );
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
