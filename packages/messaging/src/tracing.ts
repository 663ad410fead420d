/**
 * W3C trace context across NATS (nats.js has no OpenTelemetry instrumentation, so this is it):
 * every JetStream publish is a PRODUCER span whose context is injected into the message's
 * `traceparent` header, and every consumed message is handled inside a CONSUMER span that is a
 * child of the context extracted from that header. With the OpenTelemetry SDK off (the
 * default, see `startTracing` in @nexus/runtime) the API is a no-op: spans do not record, but
 * the `traceparent` a message was published with is still carried from message to message, so
 * one command keeps one trace id in every message, report and log line either way.
 *
 * Sources: W3C Trace Context (the `traceparent` header), OpenTelemetry semantic conventions
 * for messaging spans (`messaging.system`, `messaging.destination.name`, `messaging.operation.type`).
 */

import type { MsgHdrs } from "@nats-io/nats-core";
import { HEADERS } from "@nexus/contracts";
import {
  type Context,
  context,
  isSpanContextValid,
  ProxyTracerProvider,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type TextMapSetter,
  trace,
} from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";

/** The tracer of this package (resolved through the global provider on each use, so a late SDK start counts). */
const tracer = () => trace.getTracer("@nexus/messaging");
const w3c = new W3CTraceContextPropagator();

/** The API's no-op provider: what the global proxy delegates to while no SDK is registered. */
const NOOP_PROVIDER = new ProxyTracerProvider().getDelegate();

/**
 * Whether an OpenTelemetry SDK is registered now (checked on every use, so a late start counts).
 * Without one the wrappers below skip building spans and contexts that would not record: the
 * hot paths (every publish and every job) pay two property reads instead.
 */
export function tracingActive(): boolean {
  const p = trace.getTracerProvider();
  return (p instanceof ProxyTracerProvider ? p.getDelegate() : p) !== NOOP_PROVIDER;
}

/** Reads trace headers from nats.js message headers. */
export const natsHeaderGetter: TextMapGetter<MsgHdrs | undefined> = {
  keys: (h) => (h ? h.keys() : []),
  get: (h, key) => (h?.has(key) ? h.get(key) : undefined),
};

/** Writes trace headers into nats.js message headers. */
export const natsHeaderSetter: TextMapSetter<MsgHdrs> = {
  set: (h, key, value) => h.set(key, value),
};

/** The `traceparent` of a span context (`00-<trace id>-<span id>-<flags>`). */
export function formatTraceparent(sc: SpanContext): string {
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, "0")}`;
}

/** The context a `traceparent` header names (the root context when it is absent or invalid). */
export function contextFromTraceparent(traceparent: string | undefined): Context {
  if (!traceparent) return ROOT_CONTEXT;
  return w3c.extract(ROOT_CONTEXT, { traceparent }, { keys: (c) => Object.keys(c), get: (c, k) => c[k] });
}

/** The context carried by a message's headers (`traceparent`, `tracestate`). */
export function contextFromHeaders(h: MsgHdrs | undefined): Context {
  return w3c.extract(ROOT_CONTEXT, h, natsHeaderGetter);
}

/** The active span's `traceparent`, when a span is active (the SDK is on and something is traced). */
export function activeTraceparent(): string | undefined {
  const sc = trace.getActiveSpan()?.spanContext();
  return sc && isSpanContextValid(sc) ? formatTraceparent(sc) : undefined;
}

/**
 * The parent of a new span: the active context when it holds a span (a traced request or job),
 * otherwise the context `traceparent` names.
 */
function parentOf(traceparent: string | undefined): Context {
  const active = context.active();
  const sc = trace.getSpanContext(active);
  if (sc && isSpanContextValid(sc)) return active;
  return contextFromTraceparent(traceparent);
}

/** The `traceparent` to carry on for `span`: its own when valid, else `fallback`. */
function carriedTraceparent(span: Span, fallback: string | undefined): string | undefined {
  const sc = span.spanContext();
  return isSpanContextValid(sc) ? formatTraceparent(sc) : fallback;
}

/** The options of a publish that tracing reads and writes. */
type PublishOpts = { headers?: MsgHdrs; msgID?: string };

/** The minimal publish signature {@link tracePublish} wraps (a nats.js `JetStreamClient.publish`). */
type PublishFn<O, R> = (subject: string, payload: string | Uint8Array, opts: O) => Promise<R>;

/**
 * Runs one JetStream publish inside a PRODUCER span (`send <stream kind>`, attributes per the
 * messaging conventions) and injects the span's context into `opts.headers` as `traceparent`.
 * The parent is the active span, or the `traceparent` the headers already carry. With the SDK
 * off the headers are left as built.
 */
export function tracePublish<O extends { headers?: MsgHdrs; msgID?: string }, R>(
  publish: PublishFn<O, R>,
): PublishFn<O, R> {
  return async (subject, payload, opts) => {
    if (!tracingActive()) return publish(subject, payload, opts);
    const parent = parentOf(opts?.headers?.get(HEADERS.traceparent) || undefined);
    const span = tracer().startSpan(
      `send ${subjectKind(subject)}`,
      {
        kind: SpanKind.PRODUCER,
        attributes: {
          "messaging.system": "nats",
          "messaging.operation.type": "send",
          "messaging.destination.name": subject,
          ...(opts?.msgID ? { "messaging.message.id": opts.msgID } : {}),
        },
      },
      parent,
    );
    if (span.isRecording() && opts?.headers) {
      const tp = carriedTraceparent(span, undefined);
      if (tp) opts.headers.set(HEADERS.traceparent, tp);
    }
    try {
      return await publish(subject, payload, opts);
    } catch (err) {
      span.recordException(err as Error);
      span.setStatus({ code: SpanStatusCode.ERROR });
      throw err;
    } finally {
      span.end();
    }
  };
}

/** What a consumed message's span gives its handler. */
export interface ConsumeTrace {
  /** The `traceparent` to put on whatever the handler publishes (the span's, or the message's own). */
  traceparent: string | undefined;
  /** The trace id (32 hex digits), for log lines. */
  traceId: string | undefined;
}

/**
 * Runs `fn` inside a CONSUMER span (`process <stream kind>`) whose parent is the context the
 * message's headers carry; everything `fn` does (Postgres queries, publishes) is its child.
 */
export async function traceConsume<T>(
  msg: { subject: string; headers?: MsgHdrs; seq: number },
  fn: (t: ConsumeTrace) => Promise<T>,
): Promise<T> {
  const header = msg.headers?.has(HEADERS.traceparent) ? msg.headers.get(HEADERS.traceparent) : undefined;
  if (!tracingActive()) return fn({ traceparent: header || undefined, traceId: traceIdOf(header || undefined) });
  const parent = contextFromHeaders(msg.headers);
  const span = tracer().startSpan(
    `process ${subjectKind(msg.subject)}`,
    {
      kind: SpanKind.CONSUMER,
      attributes: {
        "messaging.system": "nats",
        "messaging.operation.type": "process",
        "messaging.destination.name": msg.subject,
        "messaging.nats.stream_sequence": msg.seq,
      },
    },
    parent,
  );
  const traceparent = carriedTraceparent(span, header || undefined);
  try {
    return await context.with(trace.setSpan(parent, span), () => fn({ traceparent, traceId: traceIdOf(traceparent) }));
  } catch (err) {
    span.recordException(err as Error);
    span.setStatus({ code: SpanStatusCode.ERROR });
    throw err;
  } finally {
    span.end();
  }
}

/**
 * Runs `fn` inside an INTERNAL span that is a child of `traceparent` (or of the active span),
 * for work that continues a trace outside a request or job (the stream service writing a
 * report to its connections).
 */
export function traceStep<T>(
  name: string,
  traceparent: string | undefined,
  attributes: Record<string, string | number>,
  fn: () => T,
): T {
  if (!tracingActive()) return fn();
  const span = tracer().startSpan(name, { kind: SpanKind.INTERNAL, attributes }, parentOf(traceparent));
  try {
    return fn();
  } finally {
    span.end();
  }
}

/** The trace id of a `traceparent` (32 lowercase hex digits), or `undefined` when it is not valid. */
export function traceIdOf(traceparent: string | undefined): string | undefined {
  const m = traceparent ? /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(traceparent) : null;
  return m && m[1] !== "0".repeat(32) ? m[1] : undefined;
}

/** `nexus.cmd`, `nexus.report`, …: the low-cardinality part of a subject, for span names. */
function subjectKind(subject: string): string {
  const second = subject.indexOf(".", subject.indexOf(".") + 1);
  return second < 0 ? subject : subject.slice(0, second);
}

/** One finished publish, for metrics (see {@link instrumentJetStream}). */
export interface PublishObservation {
  /** `nexus.cmd`, `nexus.report`, …: the subject's first two tokens (no tenant ids). */
  kind: string;
  /** Time from sending to the PubAck (or the failure), seconds. */
  seconds: number;
  /** `ok` (PubAck), or `error` (refused, timed out, disconnected). */
  outcome: "ok" | "error";
}

/**
 * The same JetStream client with every `publish` traced ({@link tracePublish}) and, when
 * `observe` is given, timed: a drop-in for the client the services use (consumers, managers and
 * every other member are the original's).
 */
export function instrumentJetStream<
  C extends { publish(subject: string, payload: string | Uint8Array, opts: PublishOpts): Promise<unknown> },
>(js: C, observe?: (o: PublishObservation) => void): C {
  const traced = tracePublish<PublishOpts, unknown>(js.publish.bind(js));
  const publish: PublishFn<PublishOpts, unknown> = async (subject, payload, opts) => {
    const started = performance.now();
    let outcome: PublishObservation["outcome"] = "error";
    try {
      const ack = await traced(subject, payload, opts);
      outcome = "ok";
      return ack;
    } finally {
      observe?.({ kind: subjectKind(subject), seconds: (performance.now() - started) / 1000, outcome });
    }
  };
  return new Proxy(js, {
    get(target, prop) {
      if (prop === "publish") return publish;
      const v = Reflect.get(target, prop, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}
