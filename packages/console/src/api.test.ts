import { afterEach, describe, expect, it, vi } from "vitest";
import { fetchTicket, sendJson } from "./api.ts";
import { bearerCredentials, headerCredentials, setCredentials } from "./credentials.ts";

const TENANT = { org_id: "acme", project_id: "nexus" };
const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
const expired = () => json(401, { error: { code: "CREDENTIAL_EXPIRED", message: "expired", recoverable: true } });

afterEach(() => {
  vi.unstubAllGlobals();
  setCredentials(headerCredentials);
});

/** Records the Authorization header of every request and answers from `answers`. */
function stubFetch(answers: (() => Response)[]) {
  const seen: (string | null)[] = [];
  vi.stubGlobal("fetch", async (_url: string, init: RequestInit) => {
    seen.push(new Headers(init.headers).get("authorization"));
    return (answers.shift() ?? (() => json(500, {})))();
  });
  return seen;
}

describe("requests with a bearer credential", () => {
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
    const seen = stubFetch([expired, () => json(202, { command_id: "c1" })]);
    const r = await sendJson(TENANT, "POST", "/sidecar/command", { x: 1 });
    expect(r).toMatchObject({ ok: true, status: 202 });
    expect(seen).toEqual(["Bearer old", "Bearer new"]);
    expect(renewals).toBe(1);
  });

  it("401 UNAUTHENTICATED: the credential is told it was refused; no renewal, no retry", async () => {
    let rejected = 0;
    const renew = vi.fn(async () => true);
    setCredentials(bearerCredentials({ token: () => "t", renew, rejected: () => rejected++ }));
    const seen = stubFetch([() => json(401, { error: { code: "UNAUTHENTICATED", message: "", recoverable: false } })]);
    const r = await sendJson(TENANT, "POST", "/sidecar/command", {});
    expect(r).toMatchObject({ ok: false, status: 401, error: { code: "UNAUTHENTICATED" } });
    expect(seen).toHaveLength(1);
    expect(renew).not.toHaveBeenCalled();
    expect(rejected).toBe(1);
  });

  it("header mode sends the tenant headers and no Authorization; a ticket comes from the 200 body", async () => {
    const headers: Headers[] = [];
    vi.stubGlobal("fetch", async (_url: string, init: RequestInit) => {
      headers.push(new Headers(init.headers));
      return json(200, { ticket: "tk-1", expires_at: "2030-01-01T00:00:00Z" });
    });
    expect(await fetchTicket(TENANT)).toBe("tk-1");
    expect(headers[0]?.get("x-org-id")).toBe("acme");
    expect(headers[0]?.get("authorization")).toBeNull();
  });
});
