import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { connectNats, createLogger, createMetrics, jetStreamReportPublisher, parseConfig } from "@nexus/platform";
import {
  createTestDatabase,
  natsForTest,
  type TestDatabase,
  type TestNats,
  tenantHeaders,
  uniqueTenant,
} from "@nexus/testkit";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildGateway } from "../src/app.ts";
import { GatewayConfig } from "../src/config.ts";

let nats: TestNats;
let database: TestDatabase;
let nc: NatsConnection;
let app: FastifyInstance;

beforeAll(async () => {
  nats = await natsForTest();
  database = await createTestDatabase();
  const logger = createLogger({ service: "gateway-test", level: "silent" });
  nc = await connectNats({ url: nats.url, name: "gateway-test", logger });
  const js = jetstream(nc);
  const config = parseConfig(GatewayConfig, {
    RATE_LIMIT_PER_MINUTE: "5",
    NATS_URL: nats.url,
    DATABASE_URL: database.url,
  });
  app = await buildGateway({
    config,
    db: database.db,
    nc,
    js,
    reports: jetStreamReportPublisher(js),
    logger,
    metrics: createMetrics("gateway-test"),
    now: () => new Date(),
  });
  await app.ready();
});
afterAll(async () => {
  await app?.close();
  await nc?.close();
  await database?.drop();
  await nats?.stop();
});

describe("gateway (in-process)", () => {
  it("rate-limits per tenant with 429 and the standard error body", async () => {
    const t = uniqueTenant();
    const statuses: number[] = [];
    let last: any;
    for (let i = 0; i < 7; i++) {
      const r = await app.inject({
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
    const other = await app.inject({
      method: "PATCH",
      url: "/assistant/skin",
      headers: tenantHeaders(uniqueTenant()),
      payload: { theme: "light" },
    });
    expect(other.statusCode).toBe(202);
  });

  it("serves generated OpenAPI with the LOCKED paths, and the console", async () => {
    const spec = (await app.inject({ url: "/docs/json" })).json();
    expect(Object.keys(spec.paths)).toEqual(
      expect.arrayContaining([
        "/sidecar/command",
        "/approvals/{ask_id}/decide",
        "/agent/reports/stream",
        "/profile",
        "/compliance/settings",
      ]),
    );
    expect((await app.inject({ url: "/ui" })).statusCode).toBe(302);
    const page = await app.inject({ url: "/ui/" });
    expect(page.statusCode).toBe(200);
    expect(page.body).toMatch(/<html/i);
  });

  it("answers unknown routes and a non-multipart photo upload with the standard error body", async () => {
    const t = uniqueTenant();
    const nf = await app.inject({ url: "/nope" });
    expect(nf.statusCode).toBe(404);
    expect(nf.json().error.code).toBe("NOT_FOUND");
    const photo = await app.inject({
      method: "POST",
      url: "/profile/photo",
      headers: tenantHeaders(t),
      payload: { a: 1 },
    });
    expect(photo.statusCode).toBe(415);
    expect(photo.json().error.code).toBe("UNSUPPORTED_MEDIA_TYPE");
  });
});
