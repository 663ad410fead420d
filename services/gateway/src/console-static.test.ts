import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { type App, createHttpApp, createMetrics } from "@nexus/http";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GatewayConfig } from "./config.ts";
import { consoleRuntimeConfig, consoleStatic, withConnectOrigins } from "./console-static.ts";

let root = "";
const apps: App[] = [];
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "console-static-"));
  fs.writeFileSync(path.join(root, "index.html"), "<!doctype html><html><body>console</body></html>");
});
afterAll(async () => {
  for (const a of apps) await a.close();
  fs.rmSync(root, { recursive: true, force: true });
});

/** The gateway's HTTP app (with its security headers) serving the console for `env`. */
async function gateway(env: Record<string, string>): Promise<App> {
  const config = GatewayConfig.parse({ DATABASE_URL: "postgres://x/y", ...env });
  const app = createHttpApp({ logger: pino({ level: "silent" }), metrics: createMetrics("test") });
  await app.register(consoleStatic, {
    root,
    runtime: consoleRuntimeConfig(config),
    connectOrigins: config.CONSOLE_OIDC_CONNECT_ORIGINS,
  });
  app.get("/api", async () => ({ ok: true }));
  await app.ready();
  apps.push(app);
  return app;
}

const connectSrc = (csp: unknown) =>
  String(csp)
    .split(";")
    .find((d) => d.startsWith("connect-src"));

describe("console runtime configuration and CSP", () => {
  it("header mode: /ui/config.json says so, and every CSP keeps connect-src 'self'", async () => {
    const app = await gateway({});
    const r = await app.inject({ url: "/ui/config.json" });
    expect(r.statusCode).toBe(200);
    expect(r.headers["cache-control"]).toBe("no-cache");
    expect(r.json()).toEqual({ auth: "header", roles_claim: "roles" });
    for (const url of ["/ui/", "/ui/config.json", "/api"])
      expect(connectSrc((await app.inject({ url })).headers["content-security-policy"])).toBe("connect-src 'self'");
  });

  it("JWT mode with OIDC: the issuer, client, scopes and audience; the issuer's origin in connect-src on /ui only", async () => {
    const app = await gateway({
      AUTH_MODE: "jwt",
      JWT_SECRET: "x".repeat(40),
      JWT_ROLES_CLAIM: "realm_access.roles",
      CONSOLE_OIDC_ISSUER: "https://login.example.test:8443/realms/nexus",
      CONSOLE_OIDC_CLIENT_ID: "nexus-console",
      CONSOLE_OIDC_SCOPES: " openid  profile ",
      CONSOLE_OIDC_AUDIENCE: "nexus-api",
      CONSOLE_OIDC_CONNECT_ORIGINS: "https://tokens.example.test/path",
    });
    expect((await app.inject({ url: "/ui/config.json" })).json()).toEqual({
      auth: "jwt",
      roles_claim: "realm_access.roles",
      oidc: {
        issuer: "https://login.example.test:8443/realms/nexus",
        client_id: "nexus-console",
        scopes: "openid profile",
        audience: "nexus-api",
      },
    });
    const page = await app.inject({ url: "/ui/" });
    expect(page.statusCode).toBe(200);
    const csp = String(page.headers["content-security-policy"]);
    expect(connectSrc(csp)).toBe("connect-src 'self' https://login.example.test:8443 https://tokens.example.test");
    // Everything else of the policy is untouched.
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp.replace(connectSrc(csp) as string, "")).not.toContain("example.test");
    // The API keeps the strict policy.
    expect(connectSrc((await app.inject({ url: "/api" })).headers["content-security-policy"])).toBe(
      "connect-src 'self'",
    );
  });

  it("JWT mode without an issuer: no sign-in configured, nothing added", async () => {
    const app = await gateway({ AUTH_MODE: "jwt", JWT_SECRET: "x".repeat(40), CONSOLE_OIDC_CLIENT_ID: "c" });
    expect((await app.inject({ url: "/ui/config.json" })).json()).toEqual({ auth: "jwt", roles_claim: "roles" });
    expect(connectSrc((await app.inject({ url: "/ui/" })).headers["content-security-policy"])).toBe(
      "connect-src 'self'",
    );
  });

  it("withConnectOrigins adds a directive when the policy has none, and de-duplicates origins", () => {
    expect(withConnectOrigins("default-src 'self'", ["https://a.test/x", "https://a.test/y"])).toBe(
      "default-src 'self';connect-src 'self' https://a.test",
    );
    expect(withConnectOrigins("connect-src 'self'", [])).toBe("connect-src 'self'");
  });
});
