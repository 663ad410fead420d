import { pino } from "pino";
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { createHttpApp } from "./app.ts";
import { addHealthRoutes } from "./health.ts";

describe("health routes", () => {
  it("/ready stays 200 (degraded) while a check has failed for less than graceMs, then 503; /health never depends on checks", async () => {
    let now = 0;
    let nats = true;
    const app = createHttpApp({ logger: pino({ level: "silent" }), metrics: new Registry() });
    addHealthRoutes(app, { checks: { nats: () => nats, postgres: () => true }, graceMs: 10_000, now: () => now });
    const ready = async () => {
      const r = await app.inject({ url: "/ready" });
      return { status: r.statusCode, body: r.json() };
    };
    expect(await ready()).toMatchObject({ status: 200, body: { status: "ready", checks: { nats: true } } });

    nats = false; // a NATS blip
    expect(await ready()).toMatchObject({ status: 200, body: { checks: { nats: false }, degraded: ["nats"] } });
    now = 9_999;
    expect((await ready()).status).toBe(200);
    nats = true; // back within the grace: the clock starts again at the next failure
    expect((await ready()).body.degraded).toBeUndefined();
    nats = false;
    now = 15_000;
    expect((await ready()).status).toBe(200);
    now = 25_000; // failing for 10 s
    expect(await ready()).toMatchObject({
      status: 503,
      body: { error: { code: "DEPENDENCY_UNAVAILABLE" }, checks: { nats: false, postgres: true } },
    });
    expect((await app.inject({ url: "/health" })).statusCode).toBe(200);
    await app.close();
  });

  it("without a grace a failing check fails readiness at once; a hanging check fails after its time limit", async () => {
    const app = createHttpApp({ logger: pino({ level: "silent" }), metrics: new Registry() });
    addHealthRoutes(app, { checks: { slow: () => new Promise<boolean>(() => {}) }, timeoutMs: 100 });
    const started = Date.now();
    expect((await app.inject({ url: "/ready" })).statusCode).toBe(503);
    expect(Date.now() - started).toBeLessThan(2000);
    expect((await app.inject({ url: "/health" })).statusCode).toBe(200);
    await app.close();
  });
});
