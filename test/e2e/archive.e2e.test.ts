/**
 * The archive end to end, the five services as separate processes talking only over HTTP,
 * SSE and NATS: commands run, every report lands in the archive; a console resumes from a
 * cursor long out of JetStream's retention and gets the rest exactly once; history and the
 * audit export serve the same reports; a purge resets every screen with tenant.purged and the
 * old cursor is then expired.
 */
import fs from "node:fs";
import path from "node:path";
import { ErrorEvent, HistoryPage, type ReportEvent, type Tenant } from "@nexus/contracts";
import { ChainVerifier } from "@nexus/core";
import {
  type SseClient,
  type SseEvent,
  type SseEventNamed,
  type SseEventType,
  uniqueTenant,
  waitFor,
} from "@nexus/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { command, type E2E, startE2E } from "./fixture.ts";

const KEEP = 12;
let e2e: E2E;

beforeAll(async () => {
  e2e = await startE2E({ topology: { streamEventKeep: KEEP } });
});
afterAll(async () => e2e?.close());

/** What a timeout message shows of an event: a report's `type`, an error's `code`, else nothing. */
function eventLabel(e: SseEvent): string {
  // `data` of an `http-error` is whatever body came back, so read it field by field.
  const d = e.data as { report?: { type?: string }; error?: { code?: string } } | null | undefined;
  return d?.report?.type ?? d?.error?.code ?? "";
}

/**
 * The console's side of this test: a stream that resumes from its last id when the server ends
 * it. JetStream keeps only KEEP reports per tenant here, so a tenant hub that falls more than
 * KEEP behind (a loaded machine) ends its connections rather than skip reports (invariant 5);
 * a client resumes, and what left JetStream comes from the archive.
 */
class ResumingStream {
  private earlier: SseEvent[] = [];
  private readonly t: Tenant;
  private current: SseClient;
  resumes = 0;
  private constructor(t: Tenant, current: SseClient) {
    this.t = t;
    this.current = current;
  }

  static async open(t: Tenant): Promise<ResumingStream> {
    return new ResumingStream(t, await e2e.stream(t));
  }

  named<N extends SseEventType>(event: N): SseEventNamed<N>[] {
    return [...this.earlier, ...this.current.events].filter((e): e is SseEventNamed<N> => e.event === event);
  }

  reports(): ReportEvent[] {
    return this.named("report").map((e) => e.data);
  }

  async waitFor(done: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      if (Date.now() > deadline)
        throw new Error(
          `no ${what} within ${timeoutMs} ms (resumed ${this.resumes} times; events: ${[...this.earlier, ...this.current.events].map((e) => `${e.event}#${e.id ?? ""}:${eventLabel(e)}`).join(" ")}; archiver log: ${logLines("archiver", /coverage|error/i)}; stream log: ${logLines("stream", /warn|error|close/i)})`,
        );
      if (this.current.closed) await this.resume();
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  private async resume(): Promise<void> {
    this.earlier.push(...this.current.events);
    const last = [...this.earlier].reverse().find((e) => e.id !== undefined)?.id;
    this.current = await e2e.stream(this.t, last === undefined ? {} : { headers: { "last-event-id": last } });
    this.resumes++;
  }

  close(): void {
    this.current.close();
  }
}

/** The lines of a service's log that match, for a failure message (service logs stay on disk). */
function logLines(service: string, match: RegExp): string {
  try {
    const text = fs.readFileSync(path.join(e2e.stack.logDir, `${service}.log`), "utf8");
    return JSON.stringify(
      text
        .split("\n")
        .filter((l) => match.test(l))
        .slice(-20),
    );
  } catch (err) {
    return String(err);
  }
}

async function archivedThrough(t: Tenant, id: number) {
  await waitFor(
    async () => {
      const h = await e2e.database.db
        .selectFrom("agent_report_chains")
        .select("last_report_id")
        .where("org_id", "=", t.org_id)
        .where("project_id", "=", t.project_id)
        .executeTakeFirst();
      return Number(h?.last_report_id ?? 0) >= id;
    },
    20_000,
    `archived through ${id}`,
  );
}

describe("archive (e2e)", () => {
  it("archives every report; an old cursor replays from the archive; history and audit agree; a purge resets screens", async () => {
    const t = uniqueTenant("e2e-arch");
    const live = await ResumingStream.open(t);
    for (let i = 0; i < 8; i++) {
      const r = await e2e.call("POST", "/sidecar/command", t, command("echo.test", { i }));
      expect(r.status).toBe(202);
      // Each command makes at least three reports (accepted, started, completed). Keep the
      // archiver within KEEP of the newest: JetStream drops a tenant's oldest report past KEEP
      // whether or not the archiver has read it, and on a machine loaded enough to hold the
      // archiver back that long the archive would lose reports and restart its coverage
      // (docs/archive.md) — a real outcome, but not the one this test is about.
      await archivedThrough(t, 3 * (i + 1));
    }
    await live.waitFor(
      () => live.reports().filter((x) => x.report.type === "command.completed").length === 8,
      20_000,
      "8 completed",
    );
    const all = live.named("report").map((e) => Number(e.id));
    expect(all.length).toBeGreaterThanOrEqual(24); // accepted, started, completed each
    await archivedThrough(t, all.at(-1) as number);

    // A console that saw only the first report comes back: JetStream keeps the newest 12.
    const resumed = await e2e.stream(t, { headers: { "last-event-id": String(all[0]) } });
    await resumed.waitFor(() => resumed.named("report").length >= all.length - 1, 10_000, "replay");
    expect(resumed.named("report").map((e) => Number(e.id))).toEqual(all.slice(1));
    expect(resumed.named("report").map((e) => e.raw)).toEqual(
      live
        .named("report")
        .slice(1)
        .map((e) => e.raw),
    );
    expect(resumed.named("snapshot")).toHaveLength(0);

    // History: the same reports, newest first.
    const page = await e2e.call<{ reports: unknown[] }>("GET", `/agent/reports?limit=500`, t);
    expect(page.status).toBe(200);
    expect(HistoryPage.parse(page.body).reports.map((r) => Number(r.report_id))).toEqual([...all].reverse());
    expect(page.body.reports.at(-1)).toEqual(live.reports()[0]);
    // member for member, in the same order, as the stream's data line
    expect(JSON.stringify(page.body.reports.at(-1))).toBe(live.named("report")[0]?.raw);

    // Audit: the chain verifies from genesis.
    const from = "2000-01-01T00:00:00Z";
    const res = await fetch(`${e2e.stack.gatewayUrl}/agent/audit/export?from=${from}&to=2100-01-01T00:00:00Z`, {
      headers: { "x-org-id": t.org_id, "x-project-id": t.project_id },
    });
    const v = new ChainVerifier({ genesis: true });
    for (const line of (await res.text()).trim().split("\n")) v.push(line);
    expect(v.result()).toMatchObject({ ok: true, lines: all.length });

    // Purge: every screen gets tenant.purged; the old cursor is expired now.
    const purge = await e2e.call("DELETE", `/admin/tenants/${t.org_id}/${t.project_id}`, t, undefined, {
      "x-correlation-id": "c-erase",
    });
    expect(purge.status).toBe(200);
    await live.waitFor(() => live.reports().some((r) => r.report.type === "tenant.purged"), 10_000, "tenant.purged");
    const after = await e2e.stream(t, { headers: { "last-event-id": String(all[0]) } });
    await after.waitFor((es) => es.some((e) => e.event === "snapshot"), 10_000, "snapshot");
    expect(ErrorEvent.parse(after.named("error")[0]?.data).error.code).toBe("CURSOR_EXPIRED");
    expect(after.named("snapshot")[0]?.data.snapshot.worklog).toEqual([]);
  });

  it("the archiver's /ready reports its lag and /metrics the archive's figures", async () => {
    const base = `http://127.0.0.1:${e2e.stack.ports.archiver}`;
    const ready = await (await fetch(`${base}/ready`)).json();
    expect(ready).toMatchObject({ status: "ready", checks: { nats: true, postgres: true, consumer: true } });
    expect(typeof ready.details.archive.lag_reports).toBe("number");
    expect(await (await fetch(`${base}/metrics`)).text()).toContain("archiver_lag_reports");
  });
});
