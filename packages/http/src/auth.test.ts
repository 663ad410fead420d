import { createHash } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { createApiKey, issueTicket, revokeApiKey } from "@nexus/core";
import { createTestDatabase, type TestDatabase } from "@nexus/testkit";
import { exportJWK, exportSPKI, generateKeyPair, type JWK, SignJWT } from "jose";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type App, createHttpApp, createMetrics } from "./app.ts";
import { AuthConfig, type AuthPluginOptions, authPlugin, parseApiKeys } from "./auth.ts";

const SECRET = "a-test-secret-that-is-long-enough-1234";
const TENANT = { "x-org-id": "acme", "x-project-id": "nexus" };
const CLAIMS = { org_id: "acme", project_id: "nexus", sub: "user-123" };

let app: App | undefined;
let tdb: TestDatabase;
beforeAll(async () => {
  tdb = await createTestDatabase();
});
afterAll(async () => {
  await tdb?.drop();
});
afterEach(async () => {
  await app?.close();
  app = undefined;
});

async function build(env: Record<string, string>, extra: Partial<AuthPluginOptions> = {}): Promise<App> {
  app = createHttpApp({ logger: pino({ level: "silent" }), metrics: createMetrics("test") });
  await app.register(authPlugin, { auth: AuthConfig.parse(env), ...extra });
  app.get("/who", { config: { tenant: true } }, async (req) => ({
    tenant: req.tenant,
    principal: req.principal,
    roles: req.roles,
    credential: req.credential,
    expires: req.credentialExpiresAt ?? null,
  }));
  app.get("/stream", { config: { tenant: true, tenantFromQuery: true } }, async (req) => ({
    tenant: req.tenant,
    principal: req.principal,
    credential: req.credential,
  }));
  app.get("/open", async () => ({ ok: true }));
  await app.ready();
  return app;
}

const now = () => Math.floor(Date.now() / 1000);
async function hs256(claims: Record<string, unknown>, o: { secret?: string; exp?: number | null } = {}) {
  let jwt = new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).setIssuedAt();
  if (o.exp !== null) jwt = jwt.setExpirationTime(o.exp ?? now() + 600);
  return jwt.sign(new TextEncoder().encode(o.secret ?? SECRET));
}
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

describe("header mode", () => {
  it("takes tenant, principal (x-user-id) and roles (x-roles) from headers; refuses missing or crafted ids", async () => {
    const a = await build({});
    expect((await a.inject({ url: "/who", headers: TENANT })).json()).toMatchObject({
      tenant: { org_id: "acme", project_id: "nexus" },
      principal: "anonymous",
      roles: ["admin"],
      credential: "header",
    });
    const named = await a.inject({ url: "/who", headers: { ...TENANT, "x-user-id": "alice", "x-roles": "viewer" } });
    expect(named.json()).toMatchObject({ principal: "alice", roles: ["viewer"] });
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
    expect((await a.inject({ url: "/who", headers: { ...TENANT, "x-user-id": "a b" } })).statusCode).toBe(400);
    expect((await a.inject({ url: "/open" })).statusCode).toBe(200);
  });

  it("reads the tenant from the query only where allowed, and never stitches one from two sources", async () => {
    const a = await build({});
    expect((await a.inject({ url: "/stream?org_id=acme&project_id=nexus" })).json().tenant.org_id).toBe("acme");
    expect((await a.inject({ url: "/who?org_id=acme&project_id=nexus" })).statusCode).toBe(400);
    const stitched = await a.inject({ url: "/stream?project_id=nexus", headers: { "x-org-id": "acme" } });
    expect(stitched.statusCode).toBe(400);
    const disagree = await a.inject({ url: "/stream?org_id=other&project_id=nexus", headers: TENANT });
    expect(disagree.json().error.code).toBe("TENANT_MISMATCH");
  });
});

describe("JWT mode, HS256", () => {
  const env = { AUTH_MODE: "jwt", JWT_SECRET: SECRET };

  it("takes tenant, principal, roles (a configurable, dotted claim) and expiry from a valid token", async () => {
    const a = await build({ ...env, JWT_ROLES_CLAIM: "realm_access.roles" });
    const exp = now() + 300;
    const t = await hs256({ ...CLAIMS, realm_access: { roles: ["approver", "unknown-role"] } }, { exp });
    expect((await a.inject({ url: "/who", headers: bearer(t) })).json()).toEqual({
      tenant: { org_id: "acme", project_id: "nexus" },
      principal: "user-123",
      roles: ["approver"],
      credential: "jwt",
      expires: exp * 1000,
    });
    expect((await a.inject({ url: `/stream?token=${t}` })).json().tenant.project_id).toBe("nexus");
  });

  it("refuses the attacks: none, another secret, no exp, expired, exp far ahead, nbf ahead, missing claims, crafted tenant, disagreeing headers", async () => {
    const a = await build(env);
    const code = async (headers: Record<string, string>) => {
      const r = await a.inject({ url: "/who", headers });
      return `${r.statusCode} ${r.json().error?.code ?? ""}`.trim();
    };
    const unsigned = `${Buffer.from(JSON.stringify({ alg: "none" })).toString("base64url")}.${Buffer.from(
      JSON.stringify({ ...CLAIMS, exp: now() + 60 }),
    ).toString("base64url")}.`;
    const nbf = await new SignJWT(CLAIMS)
      .setProtectedHeader({ alg: "HS256" })
      .setExpirationTime(now() + 600)
      .setNotBefore(now() + 300)
      .sign(new TextEncoder().encode(SECRET));
    const cases: [string, Record<string, string>, string][] = [
      ["no credential", TENANT, "401 UNAUTHENTICATED"],
      ['alg "none"', bearer(unsigned), "401 UNAUTHENTICATED"],
      [
        "another secret",
        bearer(await hs256(CLAIMS, { secret: "another-secret-that-is-long-enough-xx" })),
        "401 UNAUTHENTICATED",
      ],
      ["no exp", bearer(await hs256(CLAIMS, { exp: null })), "401 UNAUTHENTICATED"],
      [
        "expired (past the 30 s tolerance)",
        bearer(await hs256(CLAIMS, { exp: now() - 120 })),
        "401 CREDENTIAL_EXPIRED",
      ],
      ["exp 100 years ahead", bearer(await hs256(CLAIMS, { exp: now() + 100 * 365 * 86400 })), "401 UNAUTHENTICATED"],
      ["nbf ahead", bearer(nbf), "401 UNAUTHENTICATED"],
      ["no tenant claims", bearer(await hs256({ sub: "x" })), "401 UNAUTHENTICATED"],
      ["no sub", bearer(await hs256({ org_id: "acme", project_id: "nexus" })), "401 UNAUTHENTICATED"],
      ["crafted tenant claim", bearer(await hs256({ ...CLAIMS, org_id: "acme.>" })), "401 UNAUTHENTICATED"],
      [
        "headers naming another tenant",
        { ...TENANT, "x-org-id": "other", ...bearer(await hs256(CLAIMS)) },
        "403 TENANT_MISMATCH",
      ],
    ];
    for (const [what, headers, want] of cases) expect(`${what}: ${await code(headers)}`).toBe(`${what}: ${want}`);
    expect(await code(bearer(await hs256(CLAIMS, { exp: now() - 10 })))).toBe("200"); // inside the clock tolerance
  });

  it("enforces iss and aud when configured", async () => {
    const a = await build({ ...env, JWT_ISSUER: "https://idp.example", JWT_AUDIENCE: "nexus-api" });
    const mk = (c: Record<string, unknown>) => hs256({ ...CLAIMS, ...c });
    const status = async (t: string) => (await a.inject({ url: "/who", headers: bearer(t) })).statusCode;
    expect(await status(await mk({ iss: "https://idp.example", aud: "nexus-api" }))).toBe(200);
    expect(await status(await mk({ iss: "https://idp.example", aud: ["other", "nexus-api"] }))).toBe(200);
    expect(await status(await mk({ aud: "nexus-api" }))).toBe(401); // no iss while JWT_ISSUER is set
    expect(await status(await mk({ iss: "https://evil.example", aud: "nexus-api" }))).toBe(401);
    expect(await status(await mk({ iss: "https://idp.example" }))).toBe(401); // no aud
    expect(await status(await mk({ iss: "https://idp.example", aud: "other" }))).toBe(401);
  });
});

describe("JWT mode, JWKS (RS256, ES256, EdDSA)", () => {
  let jwks: http.Server;
  let url = "";
  const keys: Record<string, { privateKey: CryptoKey; publicKey: CryptoKey; jwk: JWK }> = {};
  beforeAll(async () => {
    for (const [kid, alg] of [
      ["rs", "RS256"],
      ["es", "ES256"],
      ["ed", "EdDSA"],
    ] as const) {
      const pair = await generateKeyPair(alg, { extractable: true });
      keys[kid] = { ...pair, jwk: { ...(await exportJWK(pair.publicKey)), kid, alg, use: "sig" } };
    }
    const body = JSON.stringify({ keys: Object.values(keys).map((k) => k.jwk) });
    jwks = http.createServer((_req, res) => res.writeHead(200, { "content-type": "application/json" }).end(body));
    await new Promise<void>((r) => jwks.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/.well-known/jwks.json`;
  });
  afterAll(() => new Promise<void>((r) => jwks.close(() => r())));

  const sign = (kid: string, alg: string, claims: Record<string, unknown> = CLAIMS, key?: CryptoKey) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg, kid })
      .setExpirationTime(now() + 600)
      .sign(key ?? (keys[kid]?.privateKey as CryptoKey));

  it("accepts each algorithm's token signed by the provider's key", async () => {
    const a = await build({ AUTH_MODE: "jwt", JWT_JWKS_URL: url });
    for (const [kid, alg] of [
      ["rs", "RS256"],
      ["es", "ES256"],
      ["ed", "EdDSA"],
    ] as const) {
      const r = await a.inject({ url: "/who", headers: bearer(await sign(kid, alg)) });
      expect(`${alg} ${r.statusCode}`).toBe(`${alg} 200`);
    }
  });

  it("refuses a key the provider does not publish, an unknown kid, and HS256 signed with the public key (algorithm confusion)", async () => {
    const a = await build({ AUTH_MODE: "jwt", JWT_JWKS_URL: url });
    const stranger = await generateKeyPair("RS256");
    const pem = await exportSPKI(keys.rs?.publicKey as CryptoKey);
    const confused = await new SignJWT(CLAIMS)
      .setProtectedHeader({ alg: "HS256", kid: "rs" })
      .setExpirationTime(now() + 600)
      .sign(new TextEncoder().encode(pem));
    for (const t of [
      await sign("rs", "RS256", CLAIMS, stranger.privateKey),
      await sign("nope", "RS256", CLAIMS, keys.rs?.privateKey),
      confused,
    ]) {
      const r = await a.inject({ url: "/who", headers: bearer(t) });
      expect(r.statusCode).toBe(401);
    }
  });
});

describe("API keys", () => {
  it("static keys: plaintext or sha256= in API_KEYS, NEXUS_API_KEY and ADMIN_API_KEY with their roles", async () => {
    const hashed = createHash("sha256").update("only-the-hash-is-configured").digest("hex");
    const a = await build({
      API_KEYS: `k-secret-1:acme:nexus:ci-bot:viewer+operator,sha256=${hashed}:acme:nexus:hashed`,
      NEXUS_API_KEY: "machine-key-0123456789",
      ADMIN_API_KEY: "admin-key-0123456789ab",
    });
    const who = async (key: string, headers: Record<string, string> = TENANT) =>
      (await a.inject({ url: "/who", headers: { ...headers, "x-api-key": key } })).json();
    expect(await who("k-secret-1")).toMatchObject({ principal: "apikey:ci-bot", roles: ["viewer", "operator"] });
    expect(await who("only-the-hash-is-configured")).toMatchObject({
      principal: "apikey:hashed",
      roles: ["operator", "approver"],
    });
    expect(await who("machine-key-0123456789", { "x-org-id": "any", "x-project-id": "tenant" })).toMatchObject({
      tenant: { org_id: "any", project_id: "tenant" },
      principal: "apikey:nexus",
      roles: ["operator", "approver"],
    });
    expect(await who("admin-key-0123456789ab")).toMatchObject({ principal: "apikey:admin", roles: ["admin"] });
    expect((await a.inject({ url: "/who", headers: TENANT })).statusCode).toBe(401); // keys configured: header mode needs one
    expect((await a.inject({ url: "/who", headers: { ...TENANT, "x-api-key": "wrong" } })).statusCode).toBe(401);
    const other = await a.inject({
      url: "/who",
      headers: { "x-org-id": "other", "x-project-id": "nexus", "x-api-key": "k-secret-1" },
    });
    expect(other.json().error.code).toBe("TENANT_MISMATCH");
  });

  it("sha256= entries match the key whose hash they hold, and malformed entries are refused", () => {
    const keys = parseApiKeys(["sha256=2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b:acme:nexus"]);
    expect(keys[0]?.digest.toString("hex")).toBe("2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b");
    expect(() => parseApiKeys(["nokey"])).toThrow(/API_KEYS entry 1/);
    expect(() => parseApiKeys(["k:a.b:p"])).toThrow();
  });

  it("admin-minted keys: hashed at rest, cover their tenants only, revoked within the cache time", async () => {
    const { key, record } = await createApiKey(tdb.db, {
      principal: "reporting",
      roles: ["viewer"],
      tenants: [{ org_id: "acme", project_id: "nexus" }],
      createdBy: "admin",
    });
    const stored = await tdb.db
      .selectFrom("api_keys")
      .selectAll()
      .where("id", "=", record.id)
      .executeTakeFirstOrThrow();
    const secret = key.slice("nxk_".length + 12 + 1);
    expect(secret).toHaveLength(43);
    expect(JSON.stringify(stored)).not.toContain(secret);
    const a = await build({}, { db: tdb.db });
    expect((await a.inject({ url: "/who", headers: { ...TENANT, "x-api-key": key } })).json()).toMatchObject({
      principal: "apikey:reporting",
      roles: ["viewer"],
    });
    const foreign = await a.inject({
      url: "/who",
      headers: { "x-org-id": "beta", "x-project-id": "x", "x-api-key": key },
    });
    expect(foreign.json().error.code).toBe("TENANT_MISMATCH");
    // One character of the secret changed (to another one: a key may already end in "A").
    const tampered = `${key.slice(0, -1)}${key.endsWith("A") ? "B" : "A"}`;
    expect((await a.inject({ url: "/who", headers: { ...TENANT, "x-api-key": tampered } })).statusCode).toBe(401);
    await revokeApiKey(tdb.db, record.id, new Date());
    const fresh = await build({}, { db: tdb.db }); // a new process: no cache
    expect((await fresh.inject({ url: "/who", headers: { ...TENANT, "x-api-key": key } })).statusCode).toBe(401);
  });
});

describe("stream tickets", () => {
  it("work once, only before they expire, only for their tenant, and carry the credential's expiry", async () => {
    const a = await build({}, { db: tdb.db, tickets: true });
    const grant = {
      tenant: { org_id: "acme", project_id: "nexus" },
      principal: "alice",
      roles: ["viewer"],
      credentialExpiresAt: Date.now() + 300_000,
    };
    const { ticket } = await issueTicket(tdb.db, grant, new Date());
    const first = await a.inject({ url: `/stream?ticket=${ticket}` });
    expect(first.json()).toMatchObject({ tenant: grant.tenant, principal: "alice", credential: "ticket" });
    expect((await a.inject({ url: `/stream?ticket=${ticket}` })).statusCode).toBe(401); // once
    const expired = await issueTicket(tdb.db, grant, new Date(Date.now() - 61_000));
    expect((await a.inject({ url: `/stream?ticket=${expired.ticket}` })).statusCode).toBe(401);
    const other = await issueTicket(tdb.db, grant, new Date());
    const mismatch = await a.inject({ url: `/stream?ticket=${other.ticket}&org_id=beta&project_id=x` });
    expect(mismatch.json().error.code).toBe("TENANT_MISMATCH");
    // Concurrent redemptions of one ticket: exactly one succeeds.
    const race = await issueTicket(tdb.db, grant, new Date());
    const codes = await Promise.all(
      Array.from({ length: 8 }, () => a.inject({ url: `/stream?ticket=${race.ticket}` })),
    );
    expect(codes.map((r) => r.statusCode).sort()).toEqual([200, 401, 401, 401, 401, 401, 401, 401]);
  });
});

describe("failed authentication", () => {
  it("is limited per client address: the limit answers 429 before verifying; other addresses are unaffected", async () => {
    const a = await build({ AUTH_MODE: "jwt", JWT_SECRET: SECRET, AUTH_FAILURES_PER_MINUTE: "5" });
    const good = await hs256(CLAIMS);
    const from = (ip: string, headers: Record<string, string>) => a.inject({ url: "/who", headers, remoteAddress: ip });
    const codes: number[] = [];
    for (let i = 0; i < 7; i++) codes.push((await from("10.0.0.1", bearer("garbage"))).statusCode);
    expect(codes).toEqual([401, 401, 401, 401, 401, 429, 429]);
    expect((await from("10.0.0.1", bearer(good))).statusCode).toBe(429);
    expect((await from("10.0.0.2", bearer(good))).statusCode).toBe(200);
  });
});

describe("roles", () => {
  async function withRoles(): Promise<App> {
    app = createHttpApp({ logger: pino({ level: "silent" }), metrics: createMetrics("test") });
    await app.register(authPlugin, { auth: AuthConfig.parse({}) });
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
    expect((await call(a, "GET", "/read", "superuser")).statusCode).toBe(400);
  });
});
