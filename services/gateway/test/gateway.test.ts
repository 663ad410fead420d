import {
  createTestDatabase,
  natsForTest,
  type TestDatabase,
  type TestNats,
  tenantHeaders,
  uniqueTenant,
} from "@nexus/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GatewayHarness, startGateway } from "./harness.ts";

let nats: TestNats;
let database: TestDatabase;
let gw: GatewayHarness;

beforeAll(async () => {
  nats = await natsForTest();
  database = await createTestDatabase();
  gw = await startGateway({ nats, db: database, env: { RATE_LIMIT_PER_MINUTE: "5" } });
});
afterAll(async () => {
  await gw?.close();
  await database?.drop();
  await nats?.stop();
});

describe("gateway (in-process)", () => {
  it("rate-limits per tenant with 429 and the standard error body", async () => {
    const t = uniqueTenant();
    const statuses: number[] = [];
    let last: { error?: unknown } = {};
    for (let i = 0; i < 7; i++) {
      const r = await gw.app.inject({
        method: "PATCH",
        url: "/assistant/skin",
        headers: tenantHeaders(t),
        payload: { theme: "dark" },
      });
      statuses.push(r.statusCode);
      last = r.json();
    }
    expect(statuses.slice(0, 5)).toEqual([202, 202, 202, 202, 202]);
    expect(statuses.slice(5)).toEqual([429, 429]);
    expect(last.error).toMatchObject({ code: "RATE_LIMITED", recoverable: true });
    // another tenant is not affected
    const other = await gw.app.inject({
      method: "PATCH",
      url: "/assistant/skin",
      headers: tenantHeaders(uniqueTenant()),
      payload: { theme: "light" },
    });
    expect(other.statusCode).toBe(202);
  });

  it("serves generated OpenAPI with the LOCKED paths, and the console", async () => {
    const spec = (await gw.app.inject({ url: "/docs/json" })).json();
    expect(Object.keys(spec.paths)).toEqual(
      expect.arrayContaining([
        "/sidecar/command",
        "/approvals/{ask_id}/decide",
        "/agent/reports/stream",
        "/profile",
        "/compliance/settings",
      ]),
    );
    expect((await gw.app.inject({ url: "/ui" })).statusCode).toBe(302);
    const page = await gw.app.inject({ url: "/ui/" });
    expect(page.statusCode).toBe(200);
    expect(page.body).toMatch(/<html/i);
  });

  it("answers unknown routes and a non-multipart photo upload with the standard error body", async () => {
    const t = uniqueTenant();
    const nf = await gw.app.inject({ url: "/nope" });
    expect(nf.statusCode).toBe(404);
    expect(nf.json().error.code).toBe("NOT_FOUND");
    const photo = await gw.app.inject({
      method: "POST",
      url: "/profile/photo",
      headers: tenantHeaders(t),
      payload: { a: 1 },
    });
    expect(photo.statusCode).toBe(415);
    expect(photo.json().error.code).toBe("UNSUPPORTED_MEDIA_TYPE");
  });
});
