import { createClient } from "@nexus/client";
import { afterEach, describe, expect, it, vi } from "vitest";
import { clientAuth } from "./api.ts";
import { bearerCredentials, headerCredentials, setCredentials } from "./credentials.ts";
import type { StoreAction } from "./store.ts";
import { backoffDelay, StreamClient } from "./stream.ts";

const TENANT = { org_id: "acme", project_id: "nexus" };
const ts = "2026-02-03T09:00:00.000Z";

afterEach(() => setCredentials(headerCredentials));

/** One SSE frame. */
function frame(event: string, data: unknown, id?: string): string {
  return `event: ${event}\n${id ? `id: ${id}\n` : ""}data: ${JSON.stringify(data)}\n\n`;
}

const emptySnapshot = () => ({
  autopilot: { status: "idle", in_flight: 0 },
  worklog: [],
  asks: [],
  profile: {},
  assistant: { persona: {}, skin: {} },
  compliance: { risk_overrides: {}, policy_version: 0 },
});
const snapshotFrame = (id: string, extra: Record<string, unknown> = {}) =>
  frame("snapshot", { snapshot: { ...emptySnapshot(), ...extra }, report_id: id, tenant: TENANT, ts }, id);
const reportFrame = (id: string, report: Record<string, unknown> = {}) =>
  frame(
    "report",
    {
      report: {
        type: "command.completed",
        status: "done",
        title: `report ${id}`,
        command: { command_id: `cmd-${id}`, type: "doc.summary.create" },
        result: {},
        ...report,
      },
      report_id: id,
      causality: { correlation_id: `c-${id}`, command_id: `cmd-${id}` },
      tenant: TENANT,
      ts,
    },
    id,
  );
const errorFrame = (code: string) => frame("error", { error: { code, message: "m", recoverable: true }, ts });

/** A stream connection the test writes to. */
interface Conn {
  url: URL;
  headers: Headers;
  push(text: string): void;
  end(): void;
}

/** A `fetch` that answers tickets itself and hands every stream connection to the test. */
function fakeServer(refuseTickets = 0) {
  const conns: Conn[] = [];
  const tickets: Headers[] = [];
  const enc = new TextEncoder();
  const fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const url = new URL(String(input));
    const headers = new Headers(init?.headers);
    if (url.pathname === "/agent/reports/ticket") {
      tickets.push(headers);
      if (tickets.length <= refuseTickets)
        return Response.json(
          { error: { code: "UNAUTHENTICATED", message: "no", recoverable: false } },
          { status: 401 },
        );
      return Response.json({ ticket: `t${tickets.length}`, expires_at: ts });
    }
    let ctl!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        ctl = c;
      },
    });
    conns.push({
      url,
      headers,
      push: (text) => ctl.enqueue(enc.encode(text)),
      end: () => ctl.close(),
    });
    return new Response(body, { status: 200, headers: { "content-type": "text/event-stream" } });
  };
  return { conns, tickets, fetch };
}

function harness(o: { ticket?: boolean; backoffInitialMs?: number; refuseTickets?: number } = {}) {
  const server = fakeServer(o.refuseTickets);
  const actions: StoreAction[] = [];
  const problems: string[] = [];
  let cursor: number | null = null;
  const client = new StreamClient({
    tenant: TENANT,
    getCursor: () => cursor,
    dispatch: (a) => {
      actions.push(a);
      if (a.kind === "snapshot" || a.kind === "report") cursor = Number(a.event.report_id);
    },
    client: createClient({ baseUrl: "http://console.test", auth: clientAuth(TENANT), fetch: server.fetch }),
    ticket: o.ticket ?? false,
    backoffInitialMs: o.backoffInitialMs ?? 5,
    onProblem: (p) => problems.push(`${p.event}: ${p.reason}`),
  });
  return { client, server, actions, problems, kinds: () => actions.map((a) => a.kind) };
}

describe("StreamClient (the SDK's report stream)", () => {
  it("backoff doubles from 1 s up to 10 s", () => {
    expect([0, 1, 2, 3, 4, 5].map((a) => backoffDelay(a))).toEqual([1000, 2000, 4000, 8000, 10000, 10000]);
  });

  it("header mode: the tenant as headers; events as received (fields the contracts do not name kept), progress read leniently", async () => {
    const h = harness();
    h.client.start();
    await vi.waitFor(() => expect(h.server.conns).toHaveLength(1));
    const c = h.server.conns[0]!;
    expect(c.url.pathname + c.url.search).toBe("/agent/reports/stream");
    expect(c.headers.get("x-org-id")).toBe("acme");
    expect(c.headers.get("x-project-id")).toBe("nexus");
    expect(c.headers.get("authorization")).toBeNull();
    expect(c.headers.get("last-event-id")).toBeNull();
    c.push(snapshotFrame("7", { principal: { id: "u", roles: ["admin"] } }));
    c.push(frame("progress", { progress: { command_id: "x", stage: "s", percent: 140 } }));
    c.push(
      reportFrame("8", {
        type: "ask.decided",
        status: "accepted",
        command: undefined,
        result: undefined,
        ask: { ask_id: "a", decision: "approve", decided_by: "k", note: "n", approvals: { have: 1, need: 2 } },
      }),
    );
    c.push(errorFrame("ACCEPT_UNCONFIRMED"));
    c.push(frame("report", { report: { type: "nope" } }, "9"));
    await vi.waitFor(() => expect(h.kinds()).toEqual(["open", "snapshot", "progress", "report", "error"]));
    expect(h.actions[1]).toMatchObject({ event: { report_id: "7", snapshot: { principal: { id: "u" } } } });
    expect(h.actions[2]).toMatchObject({ event: { progress: { command_id: "x", stage: "s", percent: 100 } } });
    expect(h.actions[3]).toMatchObject({ event: { report: { ask: { note: "n", approvals: { have: 1, need: 2 } } } } });
    expect(h.actions[4]).toMatchObject({ event: { error: { code: "ACCEPT_UNCONFIRMED" }, ts } });
    await vi.waitFor(() => expect(h.problems).toHaveLength(1));
    h.client.stop();
  });

  it("a lost connection: disconnected, then after the backoff the next one resumes by Last-Event-ID; re-sent reports are not applied twice", async () => {
    const h = harness();
    h.client.start();
    await vi.waitFor(() => expect(h.server.conns).toHaveLength(1));
    h.server.conns[0]!.push(snapshotFrame("7") + reportFrame("8"));
    await vi.waitFor(() => expect(h.kinds()).toEqual(["open", "snapshot", "report"]));
    h.server.conns[0]!.end();
    await vi.waitFor(() => expect(h.server.conns).toHaveLength(2));
    expect(h.kinds().at(-1)).toBe("open");
    expect(h.kinds()).toContain("disconnected");
    expect(h.server.conns[1]!.headers.get("last-event-id")).toBe("8");
    h.server.conns[1]!.push(reportFrame("8") + reportFrame("9"));
    await vi.waitFor(() => expect(h.kinds().at(-1)).toBe("report"));
    const reports = h.actions.flatMap((a) => (a.kind === "report" ? [a.event.report_id] : []));
    expect(reports).toEqual(["8", "9"]);
    h.client.stop();
  });

  it("dispatches nothing after stop, and does not reconnect", async () => {
    const h = harness();
    h.client.start();
    await vi.waitFor(() => expect(h.server.conns).toHaveLength(1));
    h.server.conns[0]!.push(snapshotFrame("1"));
    await vi.waitFor(() => expect(h.kinds()).toEqual(["open", "snapshot"]));
    h.client.stop();
    h.server.conns[0]!.push(reportFrame("2"));
    await new Promise((r) => setTimeout(r, 50));
    expect(h.kinds()).toEqual(["open", "snapshot"]);
    expect(h.server.conns).toHaveLength(1);
  });

  describe("ticket mode (signed in)", () => {
    it("every connection gets a fresh one-use ticket; no token, tenant or cursor in the URL but ?ticket=", async () => {
      setCredentials(bearerCredentials({ token: () => "tok", renew: async () => true, rejected: () => {} }));
      const h = harness({ ticket: true });
      h.client.start();
      await vi.waitFor(() => expect(h.server.conns).toHaveLength(1));
      h.server.conns[0]!.push(snapshotFrame("41") + reportFrame("42"));
      await vi.waitFor(() => expect(h.kinds().at(-1)).toBe("report"));
      h.server.conns[0]!.end();
      await vi.waitFor(() => expect(h.server.conns).toHaveLength(2));
      expect(h.server.conns.map((c) => c.url.search)).toEqual(["?ticket=t1", "?ticket=t2"]);
      for (const c of h.server.conns) {
        expect(c.headers.get("authorization")).toBeNull();
        expect(c.headers.get("x-org-id")).toBeNull();
      }
      expect(h.server.conns[1]!.headers.get("last-event-id")).toBe("42");
      expect(h.server.tickets.map((t) => t.get("authorization"))).toEqual(["Bearer tok", "Bearer tok"]);
      h.client.stop();
    });

    it("a ticket request refused with 401 UNAUTHENTICATED tells the credential it was refused", async () => {
      let rejected = 0;
      setCredentials(bearerCredentials({ token: () => "bad", renew: async () => false, rejected: () => rejected++ }));
      const h = harness({ ticket: true, refuseTickets: 1 });
      h.client.start();
      await vi.waitFor(() => expect(h.server.conns).toHaveLength(1));
      expect(rejected).toBe(1);
      expect(h.kinds()).toEqual(["disconnected", "open"]);
      h.client.stop();
    });

    it("after CREDENTIAL_EXPIRED: renews first, then at once (no backoff) a new ticket and the cursor", async () => {
      let token = "old";
      const order: string[] = [];
      setCredentials(
        bearerCredentials({
          token: () => token,
          renew: async () => {
            order.push("renew");
            token = "new";
            return true;
          },
          rejected: () => {},
        }),
      );
      const h = harness({ ticket: true, backoffInitialMs: 60_000 }); // a backoff would time the test out
      h.client.start();
      await vi.waitFor(() => expect(h.server.conns).toHaveLength(1));
      h.server.conns[0]!.push(snapshotFrame("6") + reportFrame("7") + errorFrame("CREDENTIAL_EXPIRED"));
      await vi.waitFor(() => expect(h.kinds().at(-1)).toBe("error"));
      expect(h.actions.at(-1)).toMatchObject({ kind: "error", event: { error: { code: "CREDENTIAL_EXPIRED" } } });
      h.server.conns[0]!.end(); // the server ends the stream
      await vi.waitFor(() => expect(h.server.conns).toHaveLength(2));
      expect(order).toEqual(["renew"]);
      expect(h.server.tickets.map((t) => t.get("authorization"))).toEqual(["Bearer old", "Bearer new"]);
      expect(h.server.conns[1]!.url.search).toBe("?ticket=t2");
      expect(h.server.conns[1]!.headers.get("last-event-id")).toBe("7");
      h.client.stop();
    });
  });
});
