import type { Tenant } from "@nexus/contracts";
import {
  createTestDatabase,
  natsForTest,
  openSse,
  type SseClient,
  type Stack,
  type StackOptions,
  startStack,
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
  /** JSON request to the gateway as `tenant`. */
  call(
    method: string,
    path: string,
    tenant: Tenant | null,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<{ status: number; body: any }>;
  /** Opens the report stream through the gateway (header mode by default). */
  stream(
    tenant: Tenant,
    opts?: { query?: Record<string, string>; headers?: Record<string, string>; viaQuery?: boolean },
  ): Promise<SseClient>;
  close(): Promise<void>;
}

/** Starts NATS (own server when possible), a fresh database and the five services. */
export async function startE2E(
  o: {
    topology?: Partial<TopologyOptions>;
    env?: Record<string, string>;
    serviceEnv?: StackOptions["serviceEnv"];
  } = {},
): Promise<E2E> {
  const nats = await natsForTest(o.topology);
  const database = await createTestDatabase();
  const stack = await startStack({
    natsUrl: nats.url,
    databaseUrl: database.url,
    env: { SSE_HEARTBEAT_MS: "500", STREAM_EVENT_KEEP: String(o.topology?.streamEventKeep ?? 2000), ...o.env },
    serviceEnv: o.serviceEnv,
  });
  const opened: SseClient[] = [];
  return {
    nats,
    database,
    stack,
    async call(method, path, tenant, body, headers = {}) {
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
      return { status: res.status, body: parsed };
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
    async close() {
      for (const c of opened) c.close();
      await stack.close();
      await database.drop().catch(() => {});
      await nats.stop();
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
