import { afterEach, describe, expect, it, vi } from "vitest";
import { CONFIRM_RETRY, decide, fetchHistory, isUnconfirmed, saveSettings, sendCommand } from "./api.ts";
import { bearerCredentials, headerCredentials, setCredentials } from "./credentials.ts";

const TENANT = { org_id: "acme", project_id: "nexus" };
const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
const apiError =
  (status: number, code: string, recoverable = true) =>
  () =>
    json(status, { error: { code, message: code, recoverable } });
const commandAccepted = () =>
  json(202, { accepted: true, status: "accepted", command_id: "c1", correlation_id: "corr-1" });
const command = { command_id: "c1", type: "doc.summary.create", params: { text: "One. Two." } };

afterEach(() => {
  vi.unstubAllGlobals();
  vi.useRealTimers();
  setCredentials(headerCredentials);
});

interface Seen {
  url: string;
  headers: Headers;
  body: unknown;
}

/** Records every request and answers from `answers` (then 500). */
function stubFetch(answers: (() => Response)[]): Seen[] {
  const seen: Seen[] = [];
  vi.stubGlobal("fetch", async (url: string, init: RequestInit) => {
    seen.push({ url: String(url), headers: new Headers(init.headers), body: init.body });
    return (answers.shift() ?? (() => json(500, {})))();
  });
  return seen;
}

describe("requests with a bearer credential (through the SDK)", () => {
  it("401 CREDENTIAL_EXPIRED: renews once and sends the same request again with the new token", async () => {
    let token = "old";
    let renewals = 0;
    setCredentials(
      bearerCredentials({
        token: () => token,
        renew: async () => {
          renewals++;
          token = "new";
          return true;
        },
        rejected: () => {},
      }),
    );
    const seen = stubFetch([apiError(401, "CREDENTIAL_EXPIRED"), commandAccepted]);
    const r = await sendCommand(TENANT, command);
    expect(r).toMatchObject({ ok: true, body: { command_id: "c1" } });
    expect(seen.map((s) => s.headers.get("authorization"))).toEqual(["Bearer old", "Bearer new"]);
    expect(seen[1]?.body).toBe(seen[0]?.body);
    expect(seen[0]?.headers.get("x-org-id")).toBeNull();
    expect(renewals).toBe(1);
  });

  it("401 UNAUTHENTICATED: the credential is told it was refused; no renewal, no retry", async () => {
    let rejected = 0;
    const renew = vi.fn(async () => true);
    setCredentials(bearerCredentials({ token: () => "t", renew, rejected: () => rejected++ }));
    const seen = stubFetch([apiError(401, "UNAUTHENTICATED", false)]);
    const r = await sendCommand(TENANT, command);
    expect(r).toMatchObject({ ok: false, status: 401, error: { code: "UNAUTHENTICATED" } });
    expect(seen).toHaveLength(1);
    expect(renew).not.toHaveBeenCalled();
    expect(rejected).toBe(1);
  });

  it("header mode sends the tenant headers and no Authorization; settings carry x-correlation-id and go once", async () => {
    const seen = stubFetch([apiError(503, "DEPENDENCY_UNAVAILABLE")]);
    const r = await saveSettings(TENANT, { section: "profile", patch: { display_name: "Kim" } }, "cid-1");
    expect(r).toMatchObject({ ok: false, status: 503, error: { code: "DEPENDENCY_UNAVAILABLE" } });
    expect(seen).toHaveLength(1);
    expect(seen[0]?.url).toMatch(/\/profile$/);
    expect(seen[0]?.headers.get("x-org-id")).toBe("acme");
    expect(seen[0]?.headers.get("x-correlation-id")).toBe("cid-1");
    expect(seen[0]?.headers.get("authorization")).toBeNull();
  });
});

describe("commands and decisions: retried only while unconfirmed", () => {
  it("504, no answer, then 202: the same body again after 0.5 s and 1 s, 'confirming' told before each retry", async () => {
    vi.useFakeTimers();
    const seen = stubFetch([
      apiError(504, "ACCEPT_UNCONFIRMED"),
      () => {
        throw new TypeError("Failed to fetch");
      },
      () => json(202, { accepted: true, correlation_id: "d1" }),
    ]);
    let confirming = 0;
    const p = decide(TENANT, "ask-1", { decision: "approve", correlation_id: "d1" }, () => confirming++);
    await vi.advanceTimersByTimeAsync(499);
    expect(seen).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(seen).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1000);
    expect(await p).toMatchObject({ ok: true });
    expect(seen).toHaveLength(3);
    expect(new Set(seen.map((s) => s.body)).size).toBe(1);
    expect(seen[0]?.url).toMatch(/\/approvals\/ask-1\/decide$/);
    expect(confirming).toBe(2);
  });

  it("a 503 (nothing stored) comes back at once, not retried; six unconfirmed attempts end unconfirmed", async () => {
    const seen = stubFetch([apiError(503, "DEPENDENCY_UNAVAILABLE")]);
    const r = await sendCommand(TENANT, command);
    expect(r).toMatchObject({ ok: false, status: 503, error: { code: "DEPENDENCY_UNAVAILABLE", recoverable: true } });
    expect(isUnconfirmed(r)).toBe(false);
    expect(seen).toHaveLength(1);

    vi.useFakeTimers();
    const always = stubFetch(Array.from({ length: 10 }, () => apiError(504, "ACCEPT_UNCONFIRMED")));
    const p = sendCommand(TENANT, command);
    await vi.advanceTimersByTimeAsync(500 + 1000 + 2000 + 4000 + 8000);
    const last = await p;
    expect(always).toHaveLength(CONFIRM_RETRY.maxAttempts as number);
    expect(last).toMatchObject({ ok: false, error: { code: "ACCEPT_UNCONFIRMED" } });
    expect(isUnconfirmed(last)).toBe(true);
  });
});

describe("history", () => {
  it("a page keeps each report as received; a 404 hides the control", async () => {
    const report = {
      report: { type: "command.accepted", status: "accepted", title: "t", command: { command_id: "x", type: "echo" } },
      report_id: "5",
      causality: { correlation_id: "c" },
      tenant: TENANT,
      ts: "2026-02-03T09:00:00.000Z",
      extra: 1,
    };
    const seen = stubFetch([() => json(200, { reports: [report], next_before: null }), apiError(404, "NOT_FOUND")]);
    const page = await fetchHistory(TENANT, 9, 100);
    expect(page).toMatchObject({ kind: "page", next_before: null });
    expect(page.kind === "page" && (page.reports[0] as unknown as { extra?: number }).extra).toBe(1);
    expect(seen[0]?.url).toMatch(/\/agent\/reports\?before=9&limit=100$/);
    expect(await fetchHistory(TENANT, 9)).toEqual({ kind: "unsupported" });
  });
});
