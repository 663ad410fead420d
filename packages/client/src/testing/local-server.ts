/**
 * Test-only helpers (never exported by the package): a small `node:http` server on 127.0.0.1
 * that speaks the real wire format, for answers the real stack cannot produce on demand
 * (504 ACCEPT_UNCONFIRMED, duplicates, frames cut mid-way, silence, tickets, dead letters).
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { ReportEvent, Snapshot, SnapshotEvent, Tenant } from "@nexus/contracts";

/** One request as the server saw it. */
export interface SeenRequest {
  method: string;
  /** Path and query, e.g. `/agent/reports?limit=2`. */
  url: string;
  path: string;
  query: URLSearchParams;
  headers: http.IncomingHttpHeaders;
  /** The raw body (UTF-8). */
  body: string;
  /** The raw body bytes. */
  bytes: Buffer;
}

/** Answers one request; `n` counts requests from 1. */
export type Handler = (req: SeenRequest, res: http.ServerResponse, n: number) => unknown;

/** A running local server. */
export interface LocalServer {
  url: string;
  requests: SeenRequest[];
  close(): Promise<void>;
}

/** Starts a server on a free port of 127.0.0.1. */
export async function localServer(handler: Handler): Promise<LocalServer> {
  const requests: SeenRequest[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const bytes = Buffer.concat(chunks);
      const u = new URL(req.url ?? "/", "http://127.0.0.1");
      const seen: SeenRequest = {
        method: req.method ?? "GET",
        url: req.url ?? "/",
        path: u.pathname,
        query: u.searchParams,
        headers: req.headers,
        body: bytes.toString("utf8"),
        bytes,
      };
      requests.push(seen);
      Promise.resolve(handler(seen, res, requests.length)).catch((err) => {
        if (!res.headersSent) res.writeHead(500).end(String(err));
        else res.destroy();
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Sends a JSON answer. */
export function json(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", ...headers });
  res.end(body === undefined ? "" : JSON.stringify(body));
}

/** Sends the standard error body. */
export function apiError(
  res: http.ServerResponse,
  status: number,
  code: string,
  recoverable: boolean,
  headers: Record<string, string> = {},
) {
  json(res, status, { error: { code, message: `${code} (test)`, recoverable }, correlation_id: "c-test" }, headers);
}

/** Starts an SSE response and writes `retry: <ms>`. */
export function sseStart(res: http.ServerResponse, retryMs = 20): void {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  res.flushHeaders();
  res.write(`retry: ${retryMs}\n\n`);
}

/** One SSE frame exactly as the stream service writes it. */
export function frame(event: string, data: unknown, id?: string): string {
  return `event: ${event}\n${id !== undefined ? `id: ${id}\n` : ""}data: ${JSON.stringify(data)}\n\n`;
}

export const TENANT: Tenant = { org_id: "acme", project_id: "nexus" };

/** An empty but valid snapshot. */
export function emptySnapshot(): Snapshot {
  return {
    autopilot: { status: "idle", in_flight: 0 },
    worklog: [],
    asks: [],
    profile: {},
    assistant: { persona: {}, skin: {} },
    compliance: { risk_overrides: {}, policy_version: 0 },
  };
}

/** A `snapshot` event's data at `id`. */
export function snapshotData(id: string, snapshot: Snapshot = emptySnapshot()): SnapshotEvent {
  return { snapshot, report_id: id, tenant: TENANT, ts: new Date().toISOString() };
}

/** A `report` event's data at `id`: by default `command.completed` of command `cmd-<id>`. */
export function reportData(id: string, over: Partial<ReportEvent["report"]> & { command_id?: string } = {}) {
  const commandId = over.command_id ?? `cmd-${id}`;
  const { command_id: _, ...report } = over;
  return {
    report: {
      type: "command.completed",
      status: "done",
      title: `report ${id}`,
      command: { command_id: commandId, type: "doc.summary.create" },
      result: { n: Number(id) },
      ...report,
    },
    report_id: id,
    causality: { correlation_id: `c-${id}`, command_id: commandId },
    tenant: TENANT,
    ts: new Date().toISOString(),
  };
}

/** A `report` frame at `id` (see {@link reportData}). */
export function reportFrame(id: string, over: Parameters<typeof reportData>[1] = {}): string {
  return frame("report", reportData(id, over), id);
}

/** A `snapshot` frame at `id`. */
export function snapshotFrame(id: string, snapshot?: Snapshot): string {
  return frame("snapshot", snapshotData(id, snapshot), id);
}

/** Resolves after `ms`. */
export const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));
