/**
 * OpenTelemetry end to end: the four services export spans (OTLP over HTTP, JSON encoding) to a
 * local receiver, and one trace follows one command from `POST /sidecar/command` through the
 * command's publish, the command-worker's consume and its Postgres queries, the report publish,
 * to the stream service handing the `command.completed` frame to the connection — whose data
 * names the same `trace_id`. Log lines of the request carry it too.
 */
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { type SseEventNamed, uniqueTenant, waitFor } from "@nexus/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { command, type E2E, startE2E } from "./fixture.ts";

/** A span as the OTLP/JSON export encodes it (ids in hex), with the service that sent it. */
interface ExportedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: Record<string, unknown>;
}

/** A Postgres query span of the pg instrumentation (semantic conventions old or new). */
const isQuery = (s: ExportedSpan) =>
  s.name.startsWith("pg.query") ||
  s.attributes["db.system"] === "postgresql" ||
  s.attributes["db.system.name"] === "postgresql";

/** OTLP span kinds (opentelemetry-proto `Span.SpanKind`). */
const KIND = { INTERNAL: 1, SERVER: 2, CLIENT: 3, PRODUCER: 4, CONSUMER: 5 } as const;

type AnyValue = { stringValue?: string; intValue?: string | number; boolValue?: boolean; doubleValue?: number };
const anyValue = (v: AnyValue) => v.stringValue ?? v.intValue ?? v.boolValue ?? v.doubleValue;
const attrs = (list: { key: string; value: AnyValue }[] = []) =>
  Object.fromEntries(list.map((a) => [a.key, anyValue(a.value)]));

/** Decodes one OTLP/HTTP JSON `ExportTraceServiceRequest` (opentelemetry-proto, JSON mapping). */
function decode(body: {
  resourceSpans?: {
    resource?: { attributes?: { key: string; value: AnyValue }[] };
    scopeSpans?: { spans?: Omit<ExportedSpan, "service" | "attributes">[] & { attributes?: never }[] }[];
  }[];
}): ExportedSpan[] {
  const out: ExportedSpan[] = [];
  for (const rs of body.resourceSpans ?? []) {
    const service = String(attrs(rs.resource?.attributes)["service.name"]);
    for (const ss of rs.scopeSpans ?? [])
      for (const s of (ss.spans ?? []) as unknown as (ExportedSpan & {
        attributes?: { key: string; value: AnyValue }[];
      })[])
        out.push({
          service,
          traceId: s.traceId,
          spanId: s.spanId,
          ...(s.parentSpanId ? { parentSpanId: s.parentSpanId } : {}),
          name: s.name,
          kind: s.kind,
          attributes: attrs(s.attributes),
        });
  }
  return out;
}

let e2e: E2E;
let receiver: http.Server;
const spans: ExportedSpan[] = [];
const requests: string[] = [];

beforeAll(async () => {
  // The local OTLP/HTTP receiver: POST /v1/traces with JSON bodies.
  receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      requests.push(`${req.method} ${req.url} ${req.headers["content-type"]}`);
      if (req.url === "/v1/traces") spans.push(...decode(JSON.parse(Buffer.concat(chunks).toString("utf8"))));
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
  const port = (receiver.address() as AddressInfo).port;
  e2e = await startE2E({
    env: {
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
      OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "http/json",
      OTEL_BSP_SCHEDULE_DELAY: "100",
    },
    // Job lifecycle lines are debug: they show what a worker's lines carry.
    serviceEnv: { "command-worker": { LOG_LEVEL: "debug" } },
  });
});
afterAll(async () => {
  await e2e?.close();
  await new Promise((r) => receiver?.close(r));
});

describe("tracing", () => {
  it("one trace id follows one command from POST to its command.completed frame, through every service", async () => {
    const t = uniqueTenant("tr");
    const sse = await e2e.stream(t);
    const cmd = command("draft_email.create", { to: "kim@example.com", brief: "Thank Kim for the notes" });
    const accepted = await e2e.call("POST", "/sidecar/command", t, cmd);
    expect(accepted.status).toBe(202);
    const frame = await sse.waitFor(
      (evs) =>
        evs.some(
          (ev) =>
            ev.event === "report" &&
            ev.data.report?.type === "command.completed" &&
            ev.data.causality?.command_id === cmd.command_id,
        ),
      20_000,
      "command.completed",
    );
    void frame;
    const reports = sse.events.filter(
      (ev): ev is SseEventNamed<"report"> => ev.event === "report" && ev.data.causality?.command_id === cmd.command_id,
    );
    const traceId: string = reports.at(-1)!.data.trace_id!;
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);
    // Every report of the command names the same trace.
    expect(new Set(reports.map((r) => r.data.trace_id))).toEqual(new Set([traceId]));

    const has = (service: string, name: string, kind: number) =>
      spans.some((s) => s.traceId === traceId && s.service === service && s.name === name && s.kind === kind);
    await waitFor(
      () =>
        has("gateway", "request", KIND.SERVER) &&
        has("gateway", "send nexus.cmd", KIND.PRODUCER) &&
        has("command-worker", "process nexus.cmd", KIND.CONSUMER) &&
        has("command-worker", "send nexus.report", KIND.PRODUCER) &&
        has("stream", "deliver nexus.report", KIND.INTERNAL) &&
        spans.some((s) => s.traceId === traceId && s.service === "command-worker" && isQuery(s)),
      20_000,
      "the spans of every service",
    ).catch((err) => {
      const got = spans.filter((s) => s.traceId === traceId).map((s) => `${s.service}:${s.name}:${s.kind}`);
      throw new Error(`${err.message}; spans of the trace: ${got.join(", ")}`);
    });
    const trace = spans.filter((s) => s.traceId === traceId);
    const byId = new Map(trace.map((s) => [s.spanId, s]));
    const request = trace.find((s) => s.service === "gateway" && s.name === "request")!;
    expect(request.attributes["http.route"]).toBe("/sidecar/command");
    expect(request.parentSpanId).toBeUndefined(); // the root: the client sent no traceparent
    // The worker's consume is a child of the gateway's publish of the command (via the header).
    const consume = trace.find((s) => s.name === "process nexus.cmd")!;
    const parent = byId.get(consume.parentSpanId!);
    expect(parent).toMatchObject({ service: "gateway", name: "send nexus.cmd", kind: KIND.PRODUCER });
    expect(parent!.attributes["messaging.destination.name"]).toBe(
      `nexus.cmd.${t.org_id}.${t.project_id}.${cmd.command_id}`,
    );
    // Postgres queries of the job are its children (pg instrumentation).
    const queries = trace.filter((s) => s.service === "command-worker" && isQuery(s));
    expect(queries.map((q) => q.name)).toEqual(
      expect.arrayContaining([expect.stringMatching(/nexus_receive_command/)]),
    );
    for (const q of queries) expect(byId.has(q.parentSpanId!)).toBe(true);
    // The stream service's delivery of a report is a child of a report publish.
    const deliver = trace.find((s) => s.name === "deliver nexus.report")!;
    expect(byId.get(deliver.parentSpanId!)?.name).toBe("send nexus.report");
    // Probes are not traced.
    expect(spans.some((s) => s.attributes["http.route"] === "/ready")).toBe(false);
    expect(requests.every((r) => r.startsWith("POST /v1/traces application/json"))).toBe(true);

    // The request's log lines carry trace id, tenant, correlation id and command id.
    const lines = fs
      .readFileSync(path.join(e2e.stack.logDir, "gateway.log"), "utf8")
      .split("\n")
      .filter((l) => l.includes(cmd.command_id))
      .map((l) => JSON.parse(l));
    const access = lines.find((l) => l.msg === "http");
    expect(access).toMatchObject({
      trace_id: traceId,
      org_id: t.org_id,
      project_id: t.project_id,
      correlation_id: cmd.client_context.correlation_id,
      command_id: cmd.command_id,
      status: 202,
    });
    // …and so do the command-worker's lines about the job.
    const jobLines = fs
      .readFileSync(path.join(e2e.stack.logDir, "command-worker.log"), "utf8")
      .split("\n")
      .filter((l) => l.includes(cmd.command_id))
      .map((l) => JSON.parse(l));
    expect(jobLines.find((l) => l.msg === "job:success")).toMatchObject({
      trace_id: traceId,
      org_id: t.org_id,
      project_id: t.project_id,
      correlation_id: cmd.client_context.correlation_id,
      command_id: cmd.command_id,
    });
  });

  it("an incoming traceparent is continued: the command's reports name the caller's trace", async () => {
    const t = uniqueTenant("tr");
    const sse = await e2e.stream(t);
    const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
    const cmd = command("echo.test", { n: 1 });
    const r = await e2e.call("POST", "/sidecar/command", t, cmd, {
      traceparent: `00-${callerTrace}-00f067aa0ba902b7-01`,
    });
    expect(r.status).toBe(202);
    await sse.waitFor(
      (evs) => evs.some((ev) => ev.event === "report" && ev.data.report.type === "command.completed"),
      20_000,
      "command.completed",
    );
    const completed = sse.named("report").find((ev) => ev.data.report.type === "command.completed")!;
    expect(completed.data.trace_id).toBe(callerTrace);
    await waitFor(
      () => spans.some((s) => s.traceId === callerTrace && s.service === "command-worker"),
      20_000,
      "the worker's spans in the caller's trace",
    );
    // Each service exports its spans in its own batches: the gateway's may come after the worker's.
    await waitFor(
      () => spans.some((s) => s.traceId === callerTrace && s.name === "request"),
      20_000,
      "the gateway's request span in the caller's trace",
    );
    const request = spans.find((s) => s.traceId === callerTrace && s.name === "request")!;
    expect(request.parentSpanId).toBe("00f067aa0ba902b7");
  });
});
