import { createSigner } from "fast-jwt";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { type App, createHttpApp, createMetrics } from "./app.ts";
import { type AuthConfig, authPlugin, parseApiKeys } from "./auth.ts";

const SECRET = "a-test-secret-that-is-long-enough-1234";
const sign = createSigner({ key: SECRET, algorithm: "HS256" });

let app: App | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

async function build(auth: Partial<AuthConfig>): Promise<App> {
  app = createHttpApp({ logger: pino({ level: "silent" }), metrics: createMetrics("test") });
  await app.register(authPlugin, { auth: { AUTH_MODE: "header", API_KEYS: [], ...auth } as AuthConfig });
  app.get("/who", { config: { tenant: true } }, async (req) => ({ tenant: req.tenant, principal: req.principal }));
  app.get("/stream", { config: { tenant: true, tenantFromQuery: true } }, async (req) => ({ tenant: req.tenant }));
  app.get("/open", async () => ({ ok: true }));
  await app.ready();
  return app;
}

const TENANT = { "x-org-id": "acme", "x-project-id": "nexus" };

describe("auth plugin: header mode", () => {
  it("takes the tenant from headers (principal anonymous) and refuses missing or crafted ids with 400 INVALID_TENANT", async () => {
    const a = await build({});
    const ok = await a.inject({ url: "/who", headers: TENANT });
    expect(ok.json()).toEqual({ tenant: { org_id: "acme", project_id: "nexus" }, principal: "anonymous" });
    for (const headers of [
      {},
      { "x-org-id": "acme" },
      { ...TENANT, "x-org-id": "a.b" },
      { ...TENANT, "x-project-id": ">" },
    ]) {
      const r = await a.inject({ url: "/who", headers });
      expect(r.statusCode).toBe(400);
      expect(r.json().error.code).toBe("INVALID_TENANT");
    }
    expect((await a.inject({ url: "/open" })).statusCode).toBe(200);
  });
  it("reads the tenant from the query string only where the route allows it", async () => {
    const a = await build({});
    expect((await a.inject({ url: "/stream?org_id=acme&project_id=nexus" })).json().tenant.org_id).toBe("acme");
    expect((await a.inject({ url: "/who?org_id=acme&project_id=nexus" })).statusCode).toBe(400);
  });
});

describe("auth plugin: JWT mode", () => {
  const token = (claims: Record<string, unknown>) => sign(claims);
  it("takes tenant and principal from a valid token", async () => {
    const a = await build({ AUTH_MODE: "jwt", JWT_SECRET: SECRET });
    const r = await a.inject({
      url: "/who",
      headers: { authorization: `Bearer ${token({ org_id: "acme", project_id: "nexus", sub: "user-123" })}` },
    });
    expect(r.json()).toEqual({ tenant: { org_id: "acme", project_id: "nexus" }, principal: "user-123" });
    const q = await a.inject({ url: `/stream?token=${token({ org_id: "acme", project_id: "nexus", sub: "u" })}` });
    expect(q.json().tenant.project_id).toBe("nexus");
  });
  it("401 without or with a bad token, 403 when headers disagree with the claims", async () => {
    const a = await build({ AUTH_MODE: "jwt", JWT_SECRET: SECRET });
    expect((await a.inject({ url: "/who", headers: TENANT })).json().error.code).toBe("UNAUTHENTICATED");
    const forged = createSigner({ key: "another-secret-that-is-long-enough-xx", algorithm: "HS256" })({
      org_id: "acme",
      project_id: "nexus",
      sub: "x",
    });
    const bad = await a.inject({ url: "/who", headers: { authorization: `Bearer ${forged}` } });
    expect(bad.statusCode).toBe(401);
    const noClaims = await a.inject({ url: "/who", headers: { authorization: `Bearer ${token({ sub: "x" })}` } });
    expect(noClaims.statusCode).toBe(401);
    const mismatch = await a.inject({
      url: "/who",
      headers: {
        ...TENANT,
        "x-org-id": "other",
        authorization: `Bearer ${token({ org_id: "acme", project_id: "nexus", sub: "x" })}`,
      },
    });
    expect(mismatch.statusCode).toBe(403);
    expect(mismatch.json().error.code).toBe("TENANT_MISMATCH");
  });
});

describe("auth plugin: API keys", () => {
  it("requires a valid key for the tenant it names", async () => {
    const a = await build({ API_KEYS: ["k-secret-1:acme:nexus:ci-bot"] });
    const ok = await a.inject({ url: "/who", headers: { ...TENANT, "x-api-key": "k-secret-1" } });
    expect(ok.json().principal).toBe("apikey:ci-bot");
    expect((await a.inject({ url: "/who", headers: TENANT })).statusCode).toBe(401);
    expect((await a.inject({ url: "/who", headers: { ...TENANT, "x-api-key": "wrong" } })).statusCode).toBe(401);
    const other = await a.inject({
      url: "/who",
      headers: { "x-org-id": "other", "x-project-id": "nexus", "x-api-key": "k-secret-1" },
    });
    expect(other.statusCode).toBe(403);
  });
  it("refuses malformed API_KEYS entries", () => {
    expect(() => parseApiKeys(["nokey"])).toThrow(/API_KEYS entry 1/);
    expect(() => parseApiKeys(["k:a.b:p"])).toThrow();
  });
});

describe("roles", () => {
  async function withRoles(): Promise<App> {
    app = createHttpApp({ logger: pino({ level: "silent" }), metrics: createMetrics("test") });
    await app.register(authPlugin, { auth: { AUTH_MODE: "header", API_KEYS: [] } as AuthConfig });
    app.get("/read", { config: { tenant: true, roles: ["viewer"] } }, async (req) => ({ roles: req.roles }));
    app.post("/send", { config: { tenant: true, roles: ["operator"] } }, async () => ({ ok: true }));
    app.post("/decide", { config: { tenant: true, roles: ["approver"] } }, async () => ({ ok: true }));
    app.patch("/settings", { config: { tenant: true, roles: ["admin"] } }, async () => ({ ok: true }));
    await app.ready();
    return app;
  }
  const call = (a: App, method: "GET" | "POST" | "PATCH", url: string, roles?: string) =>
    a.inject({ method, url, headers: { ...TENANT, ...(roles !== undefined ? { "x-roles": roles } : {}) } });

  it("the role matrix: viewer reads; operator sends; approver decides; admin does everything; else 403 FORBIDDEN", async () => {
    const a = await withRoles();
    const matrix: [string, Record<string, number>][] = [
      ["viewer", { read: 200, send: 403, decide: 403, settings: 403 }],
      ["operator", { read: 200, send: 200, decide: 403, settings: 403 }],
      ["approver", { read: 200, send: 403, decide: 200, settings: 403 }],
      ["admin", { read: 200, send: 200, decide: 200, settings: 200 }],
      ["operator,approver", { read: 200, send: 200, decide: 200, settings: 403 }],
    ];
    for (const [roles, want] of matrix) {
      const got = {
        read: (await call(a, "GET", "/read", roles)).statusCode,
        send: (await call(a, "POST", "/send", roles)).statusCode,
        decide: (await call(a, "POST", "/decide", roles)).statusCode,
        settings: (await call(a, "PATCH", "/settings", roles)).statusCode,
      };
      expect({ roles, ...got }).toEqual({ roles, ...want });
    }
    const denied = await call(a, "POST", "/send", "viewer");
    expect(denied.json().error).toMatchObject({ code: "FORBIDDEN", stage: "auth" });
    expect((await call(a, "GET", "/read")).json().roles).toEqual(["admin"]);
    expect((await call(a, "GET", "/read", "superuser")).statusCode).toBe(400);
  });
});
