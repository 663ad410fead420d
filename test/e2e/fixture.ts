import { createClient, type Following, type NexusClient, type RetryOptions } from "@nexus/client";
import type { ReportEvent, SnapshotEvent, Tenant } from "@nexus/contracts";
import {
  openSse,
  type SseClient,
  type Stack,
  type StackOptions,
  stackForTest,
  type TestDatabase,
  type TestNats,
  type TopologyOptions,
  tenantHeaders,
} from "@nexus/testkit";

/** A stack of the five services on its own NATS server and database. */
export interface E2E {
  nats: TestNats;
  database: TestDatabase;
  stack: Stack;
  /**
   * JSON request to the gateway as `tenant`. `body` is the parsed response (its text when it is
   * not JSON), typed `B` on the caller's word: nothing checks it, the test's assertions do.
   */
  call<B = unknown>(
    method: string,
    path: string,
    tenant: Tenant | null,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<{ status: number; body: B }>;
  /** Opens the report stream through the gateway (header mode by default). */
  stream(
    tenant: Tenant,
    opts?: { query?: Record<string, string>; headers?: Record<string, string>; viaQuery?: boolean },
  ): Promise<SseClient>;
  /** The typed SDK (`@nexus/client`) as `tenant` in header mode: the way integrators call the API. */
  client(tenant: Tenant, o?: { userId?: string; roles?: string[]; retry?: RetryOptions }): NexusClient;
  /**
   * Follows the tenant's reports with the SDK (`client.follow()`: resume by Last-Event-ID,
   * dedupe by report_id); resolves once the snapshot arrived, so whatever the test does next is
   * reported after it.
   */
  watch(tenant: Tenant): Promise<ReportWatch>;
  close(): Promise<void>;
}

/**
 * A report as tests read it: the typed envelope, with the report's type-specific fields
 * (`result`, `ask`, `error`, …) open for assertions.
 */
// biome-ignore lint/suspicious/noExplicitAny: tests assert on type-specific report fields
export type LooseReport = Omit<ReportEvent, "report"> & { report: ReportEvent["report"] & Record<string, any> };

/** The SDK's state follower with the waits the tests use. */
export interface ReportWatch {
  following: Following;
  /** The first snapshot (the state the stream started from). */
  snapshot: SnapshotEvent;
  /** Every report received so far, in order (deduplicated by the SDK). */
  reports(): LooseReport[];
  /** The first report (already received or later) of `type` about the given command or ask. */
  waitForReport(type: string, ids: { command_id?: string; ask_id?: string }, timeoutMs?: number): Promise<LooseReport>;
  /** The report with this report_id. */
  waitForId(reportId: string, timeoutMs?: number): Promise<LooseReport>;
}

/** Starts NATS (own server when possible), a fresh database and the five services. */
export async function startE2E(
  o: {
    topology?: Partial<TopologyOptions>;
    env?: Record<string, string>;
    serviceEnv?: StackOptions["serviceEnv"];
  } = {},
): Promise<E2E> {
  // Every e2e stack runs on a NATS server with per-service users and the permission matrix:
  // the services must work with nothing more than their own grants.
  const rig = await stackForTest({
    ...(o.topology ? { topology: o.topology } : {}),
    natsAuth: true,
    env: { SSE_HEARTBEAT_MS: "500", STREAM_EVENT_KEEP: String(o.topology?.streamEventKeep ?? 2000), ...o.env },
    ...(o.serviceEnv ? { serviceEnv: o.serviceEnv } : {}),
  });
  const { nats, database, stack } = rig;
  const opened: SseClient[] = [];
  const followed: Following[] = [];
  const client: E2E["client"] = (tenant, o = {}) =>
    createClient({
      baseUrl: stack.gatewayUrl,
      auth: {
        mode: "headers",
        tenant,
        ...(o.userId ? { userId: o.userId } : {}),
        ...(o.roles ? { roles: o.roles } : {}),
      },
      ...(o.retry ? { retry: o.retry } : {}),
    });
  return {
    nats,
    database,
    stack,
    async call<B>(
      method: string,
      path: string,
      tenant: Tenant | null,
      body?: unknown,
      headers: Record<string, string> = {},
    ): Promise<{ status: number; body: B }> {
      const res = await fetch(`${stack.gatewayUrl}${path}`, {
        method,
        headers: {
          ...(body !== undefined ? { "content-type": "application/json" } : {}),
          ...(tenant ? tenantHeaders(tenant) : {}),
          ...headers,
        },
        body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
      });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {}
      return { status: res.status, body: parsed as B };
    },
    async stream(tenant, opts = {}) {
      const q = new URLSearchParams({
        ...(opts.viaQuery ? { org_id: tenant.org_id, project_id: tenant.project_id } : {}),
        ...opts.query,
      });
      const qs = q.toString();
      const c = await openSse(`${stack.gatewayUrl}/agent/reports/stream${qs ? `?${qs}` : ""}`, {
        headers: { ...(opts.viaQuery ? {} : tenantHeaders(tenant)), ...opts.headers },
      });
      opened.push(c);
      // Without a cursor the first event is the snapshot: wait for it, so that whatever the
      // test does next is reported after the snapshot rather than folded into it.
      const hasCursor = opts.query?.cursor !== undefined || opts.headers?.["last-event-id"] !== undefined;
      if (!hasCursor && c.status === 200) await c.waitFor((ev) => ev.length > 0, 10_000, "snapshot");
      return c;
    },
    client,
    async watch(tenant) {
      const following = client(tenant).follow();
      followed.push(following);
      const first = await following.waitFor((ev) => (ev.type === "snapshot" ? ev.data : undefined), {
        timeoutMs: 10_000,
      });
      const reports = () => following.events().flatMap((ev) => (ev.type === "report" ? [ev.data as LooseReport] : []));
      const matches = (r: ReportEvent, type: string, ids: { command_id?: string; ask_id?: string }) =>
        r.report.type === type &&
        (ids.command_id === undefined || r.causality.command_id === ids.command_id) &&
        (ids.ask_id === undefined || r.causality.ask_id === ids.ask_id);
      return {
        following,
        snapshot: first,
        reports,
        waitForReport: async (type, ids, timeoutMs = 10_000) =>
          (await following.waitForReport((r) => matches(r, type, ids), { timeoutMs })) as LooseReport,
        waitForId: async (reportId, timeoutMs = 10_000) =>
          (await following.waitForReport((r) => r.report_id === reportId, { timeoutMs })) as LooseReport,
      };
    },
    async close() {
      for (const f of followed) f.close();
      for (const c of opened) c.close();
      await rig.close();
    },
  };
}

/** A canonical command body. */
export function command(type: string, params: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return {
    command_id: crypto.randomUUID(),
    type,
    params,
    client_context: { surface: "test", correlation_id: `c-${crypto.randomUUID().slice(0, 8)}` },
    ...extra,
  };
}
