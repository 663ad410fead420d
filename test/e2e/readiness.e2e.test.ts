/**
 * Readiness that tells the truth without flapping, on the four-process stack: a NATS outage
 * shorter than `READY_GRACE_MS` leaves every service ready (a blip must not take every pod out
 * of its Service at once); a longer one makes them not ready; liveness never depends on NATS;
 * after NATS is back they are ready again and work.
 */
import { uniqueTenant, waitFor } from "@nexus/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { command, type E2E, startE2E } from "./fixture.ts";

let e2e: E2E;
const GRACE_MS = 4000;

beforeAll(async () => {
  e2e = await startE2E({ env: { READY_GRACE_MS: String(GRACE_MS) } });
});
afterAll(async () => {
  await e2e?.close();
});

const SERVICES = ["gateway", "stream", "command-worker", "approval-worker"] as const;
const status = async (s: (typeof SERVICES)[number], p: "/ready" | "/health") =>
  (await fetch(`http://127.0.0.1:${e2e.stack.ports[s]}${p}`, { signal: AbortSignal.timeout(5000) })).status;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("readiness", () => {
  it("a NATS blip shorter than READY_GRACE_MS keeps every service ready; a longer outage does not; liveness never depends on it", async () => {
    expect(e2e.nats.own).toBe(true);
    // A blip: the server down for ~1.5 s (restart on the same port and store).
    const blipSeen: number[] = [];
    const stopAt = Date.now();
    const restarting = e2e.nats.restart();
    while (Date.now() - stopAt < 2500) {
      for (const s of SERVICES) blipSeen.push(await status(s, "/ready"));
      await sleep(200);
    }
    await restarting;
    expect(blipSeen.every((x) => x === 200)).toBe(true);

    // An outage longer than the grace: not ready; alive all along.
    await e2e.nats.stop();
    await waitFor(async () => (await status("gateway", "/ready")) === 503, GRACE_MS + 10_000, "gateway not ready");
    for (const s of SERVICES) expect(await status(s, "/health")).toBe(200);
    await waitFor(
      async () => (await Promise.all(SERVICES.map((s) => status(s, "/ready")))).every((x) => x === 503),
      GRACE_MS + 10_000,
      "every service not ready",
    );
    // Back: ready again, and a command goes through.
    await e2e.nats.restart();
    await waitFor(
      async () => (await Promise.all(SERVICES.map((s) => status(s, "/ready")))).every((x) => x === 200),
      30_000,
      "every service ready again",
    );
    const t = uniqueTenant("rd");
    const sse = await e2e.stream(t);
    const cmd = command("echo.test", { after: "outage" });
    expect((await e2e.call("POST", "/sidecar/command", t, cmd)).status).toBe(202);
    await sse.waitForReport("command.completed", { command_id: cmd.command_id });
  });
});
