import {
  type COMMAND_TYPES,
  CommandAccepted,
  type CommandType,
  DecisionAccepted,
  type PersonaPatch,
  type ProfilePatch,
  type ReportEvent,
  SettingsAccepted,
  type SkinPatch,
  type Snapshot,
  type SnapshotEvent,
} from "@nexus/contracts";
import type { z } from "zod";
import type { ClientAuth } from "./auth.ts";
import { NexusApiError } from "./errors.ts";
import { type CallSpec, DEFAULT_RETRY, type RetryInfo, type RetryOptions, Transport } from "./http.ts";
import { parseReportEvent } from "./reports.ts";
import { EventWaiter, type StateChangeListener, StateFollower } from "./state.ts";
import {
  type ConnectionStateEvent,
  type ErrorStreamEvent,
  type ProgressData,
  ReportStream,
  type StreamEvent,
  type StreamOptions,
  type StreamStats,
} from "./stream.ts";
import {
  type CompliancePatchInput,
  DeadLetterDetail,
  DeadLetterPage,
  DeadLetterRequeued,
  type HistoryPage,
  HistoryPageRaw,
  type LenientProgressEvent,
  type ProgressEvent,
  StreamTicket,
} from "./wire.ts";

/** Options of {@link createClient}. */
export interface ClientOptions {
  /** The gateway's origin, e.g. `http://localhost:8080` (a path prefix is kept). */
  baseUrl: string;
  auth: ClientAuth;
  /** A `fetch` implementation; the global one by default (browsers, Node 22+). */
  fetch?: typeof fetch;
  /** Retry policy of HTTP calls; see {@link RetryOptions} for the defaults. */
  retry?: RetryOptions;
  /** Called before every retry (log it, or show "confirming…" when `unconfirmed`). */
  onRetry?: (info: RetryInfo) => void;
}

/**
 * Per-call options.
 *
 * @example
 * // Retry only what may have taken effect (504, a lost answer), say "confirming…" meanwhile,
 * // and let the user decide after a 503 (nothing was stored):
 * await client.decide(askId, { decision: "approve" }, {
 *   retry: { retryOn: "unconfirmed", maxAttempts: 6, baseDelayMs: 500, maxDelayMs: 8000 },
 *   onRetry: () => showConfirming(),
 * });
 */
export interface CallOptions {
  /** Aborts the call, including its retry waits; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * This call's retry policy: the fields given override the client's {@link ClientOptions.retry}
   * (e.g. `{ retryOn: "unconfirmed" }`); `false` sends a single attempt.
   */
  retry?: RetryOptions | false;
  /**
   * Told before each retry of this call (after the client-wide {@link ClientOptions.onRetry}):
   * `info.unconfirmed` says the request may already have taken effect — show "confirming…".
   */
  onRetry?: (info: RetryInfo) => void;
}

/** The transport fields of a {@link CallOptions}. */
function per(o: CallOptions): Pick<CallSpec<unknown>, "signal" | "retry" | "onRetry"> {
  return { signal: o.signal, retry: o.retry, onRetry: o.onRetry };
}

/** Per-call options of the settings endpoints. */
export interface SettingsCallOptions extends CallOptions {
  /** Sent as `x-correlation-id`; generated when absent, and the same on every retry. */
  correlationId?: string;
}

/** `params` of a command: the registry's input type for a known type, any object otherwise. */
export type CommandParams<T extends string> = T extends CommandType
  ? z.input<(typeof COMMAND_TYPES)[T]["params"]>
  : Record<string, unknown>;

/**
 * The canonical `POST /sidecar/command` body (docs/contract.md, LOCKED). `command_id` (the
 * idempotency key) and `client_context.correlation_id` are generated when absent, once, so that
 * every retry sends the same body.
 */
export interface SendCommandRequest<T extends string = string> {
  /** A registered command type, e.g. `draft_email.create` (see the contracts' `COMMAND_TYPES`). */
  type: T;
  params?: CommandParams<T>;
  /** Where the command comes from, e.g. `{ ref: "mail:thread/123", title: "Reply to vendor" }`. */
  context?: Record<string, unknown>;
  /** 1–128 characters of `[A-Za-z0-9_:-]`; a UUID by default. */
  command_id?: string;
  client_context?: { surface?: string; correlation_id?: string; [key: string]: unknown };
}

/** The body of `POST /approvals/{ask_id}/decide` (docs/contract.md, LOCKED). */
export interface DecideRequest {
  decision: "approve" | "reject";
  note?: string;
  /** Carried by every follow-up report; generated when absent, the same on every retry. */
  correlation_id?: string;
  /** When sent, must equal the ask's `action_hash`: approve exactly the action that was shown. */
  action_hash?: string;
}

/** Typed callbacks of {@link NexusClient.stream}; `onEvent` sees everything. */
export interface StreamHandlers {
  onEvent?: (ev: StreamEvent) => void;
  onSnapshot?: (ev: SnapshotEvent) => void;
  onReport?: (ev: ReportEvent) => void;
  onProgress?: (ev: ProgressEvent) => void;
  /** SSE `error` events (the stream goes on). */
  onError?: (ev: ErrorStreamEvent["data"]) => void;
  /** `open`, `reconnecting`, `resynced`. */
  onConnection?: (ev: ConnectionStateEvent) => void;
  /** The stream ended: `error` is set when it failed (a fatal 4xx, `maxFailures`, a throwing handler). */
  onClose?: (error?: unknown) => void;
}

/** A running callback-style stream. */
export interface StreamSubscription {
  /** Ends the stream (idempotent). */
  close(): void;
  /** Settles when the stream ended: resolves after {@link close}, rejects when it failed. */
  readonly done: Promise<void>;
  /** The cursor: report_id of the last snapshot/report delivered. */
  readonly cursor: string | null;
  readonly stats: StreamStats;
}

/** Options of {@link NexusClient.follow} (strict parsing: no `keepReceived`). */
export interface FollowOptions extends Omit<StreamOptions, "keepReceived"> {
  /** Called with the new state after every snapshot and applied report. */
  onChange?: StateChangeListener;
  /** Sees every stream event, after the state was updated. */
  onEvent?: (ev: StreamEvent) => void;
  /** A known state to continue from (pass `cursor` = its report_id too). */
  initial?: { snapshot: Snapshot; report_id: string };
}

/** Options of a wait on a stream. */
export interface WaitOptions {
  /** Default 30 000 ms; then `NexusApiError` `STREAM_TIMEOUT`. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** A stream feeding a {@link StateFollower}; see {@link NexusClient.follow}. */
export interface Following extends StreamSubscription {
  readonly follower: StateFollower;
  /** The current state (`undefined` before the first snapshot). */
  getState(): Snapshot | undefined;
  /** See {@link StateFollower.onChange}. */
  onChange(fn: StateChangeListener): () => void;
  /** Resolves with the state once a snapshot arrived. */
  ready(o?: WaitOptions): Promise<Snapshot>;
  /** Resolves with the first non-`undefined` `pick(ev)` over events already seen and later ones. */
  waitFor<T>(pick: (ev: StreamEvent) => T | undefined, o?: WaitOptions): Promise<T>;
  /** Resolves with the first report (seen or later) for which `pred` holds. */
  waitForReport(pred: (r: ReportEvent) => boolean, o?: WaitOptions): Promise<ReportEvent>;
  /** Every event seen so far (pings excluded), oldest first. */
  events(): readonly StreamEvent[];
}

function newId(): string {
  return globalThis.crypto.randomUUID();
}

function dispatch(h: StreamHandlers, ev: StreamEvent): void {
  h.onEvent?.(ev);
  switch (ev.type) {
    case "snapshot":
      h.onSnapshot?.(ev.data);
      break;
    case "report":
      h.onReport?.(ev.data);
      break;
    case "progress":
      h.onProgress?.(ev.data);
      break;
    case "error":
      h.onError?.(ev.data);
      break;
    case "open":
    case "reconnecting":
    case "resynced":
      h.onConnection?.(ev);
      break;
  }
}

const closedError = () =>
  new NexusApiError({ code: "STREAM_CLOSED", message: "the stream was closed", recoverable: false, status: 0 });

/**
 * The typed client of NEXUS Console API. Create it with {@link createClient}.
 *
 * Every call returns the typed 2xx body, parsed with the contracts' zod schemas, or throws a
 * {@link NexusApiError}. A 202 means "durably accepted", never "done": the result arrives as
 * reports on the stream (docs/contract.md, LOCKED rules 2–4); use {@link follow} to see it.
 */
export class NexusClient {
  /** The HTTP layer (auth, retries); exposed for the CLI and for calls the SDK lacks. */
  readonly transport: Transport;

  constructor(options: ClientOptions) {
    const f = options.fetch ?? globalThis.fetch;
    this.transport = new Transport({
      baseUrl: options.baseUrl,
      auth: options.auth,
      // Called unbound: some fetch implementations refuse a `this` other than the global.
      fetch: (input, init) => f(input, init),
      retry: { ...DEFAULT_RETRY, random: Math.random, ...options.retry },
      onRetry: options.onRetry,
    });
  }

  /** The base URL calls go to. */
  get baseUrl(): string {
    return this.transport.options.baseUrl;
  }

  /**
   * `POST /sidecar/command`. Retried with the same body (same `command_id`) on 429, 503, 504
   * and network errors: the gateway runs a command once per `command_id`.
   * @returns the 202 body `{ accepted, command_id, correlation_id, first_followup_report_id? }`.
   * @throws {NexusApiError} e.g. 400 `UNKNOWN_COMMAND_TYPE` / `VALIDATION_FAILED` (with
   *   `details`), 409 `IDEMPOTENCY_CONFLICT` (same id, different body), 503
   *   `DEPENDENCY_UNAVAILABLE` (nothing stored), `ACCEPT_UNCONFIRMED` (may have been accepted:
   *   send the same request again, or watch the stream).
   */
  async sendCommand<T extends string>(cmd: SendCommandRequest<T>, o: CallOptions = {}): Promise<CommandAccepted> {
    const correlationId = cmd.client_context?.correlation_id ?? newId();
    const body = {
      ...cmd,
      command_id: cmd.command_id ?? newId(),
      params: cmd.params ?? {},
      client_context: { ...cmd.client_context, correlation_id: correlationId },
    };
    return this.transport.call({
      method: "POST",
      path: "/sidecar/command",
      json: body,
      kind: "write",
      correlationId,
      ...per(o),
      parse: (b) => CommandAccepted.parse(b),
    });
  }

  /**
   * `POST /approvals/{ask_id}/decide`. The same decision again is idempotent, so it is retried
   * like {@link sendCommand} (the console's "confirming…" on an unconfirmed decision).
   * @returns the 202 body `{ accepted, correlation_id, first_followup_report_id? }`.
   * @throws {NexusApiError} 404 `ASK_NOT_FOUND`, 409 `ASK_ALREADY_DECIDED` / `ASK_EXPIRED`,
   *   403 `FORBIDDEN` / `SELF_APPROVAL_FORBIDDEN`, `ACCEPT_UNCONFIRMED`.
   */
  async decide(askId: string, d: DecideRequest, o: CallOptions = {}): Promise<DecisionAccepted> {
    const body = { ...d, correlation_id: d.correlation_id ?? newId() };
    return this.transport.call({
      method: "POST",
      path: `/approvals/${encodeURIComponent(askId)}/decide`,
      json: body,
      kind: "write",
      correlationId: body.correlation_id,
      ...per(o),
      parse: (b) => DecisionAccepted.parse(b),
    });
  }

  /** {@link decide} with `decision: "approve"`. */
  approve(askId: string, d: Omit<DecideRequest, "decision"> = {}, o?: CallOptions): Promise<DecisionAccepted> {
    return this.decide(askId, { ...d, decision: "approve" }, o);
  }

  /** {@link decide} with `decision: "reject"`. */
  reject(askId: string, d: Omit<DecideRequest, "decision"> = {}, o?: CallOptions): Promise<DecisionAccepted> {
    return this.decide(askId, { ...d, decision: "reject" }, o);
  }

  private settings(path: string, patch: unknown, o: SettingsCallOptions): Promise<SettingsAccepted> {
    const correlationId = o.correlationId ?? newId();
    return this.transport.call({
      method: "PATCH",
      path,
      json: patch,
      headers: { "x-correlation-id": correlationId },
      kind: "write",
      correlationId,
      ...per(o),
      parse: (b) => SettingsAccepted.parse(b),
    });
  }

  /**
   * `PATCH /profile` (`display_name?`, `locale?`, `timezone?`); confirmed by a
   * `settings.updated` report with section `profile` and the request's correlation id.
   * @throws {NexusApiError} 400 `VALIDATION_FAILED`, `ACCEPT_UNCONFIRMED`, …
   */
  updateProfile(patch: ProfilePatch, o: SettingsCallOptions = {}): Promise<SettingsAccepted> {
    return this.settings("/profile", patch, o);
  }

  /** `PATCH /assistant/persona` (`name?`, `tone?`, `instructions?`); see {@link updateProfile}. */
  updatePersona(patch: PersonaPatch, o: SettingsCallOptions = {}): Promise<SettingsAccepted> {
    return this.settings("/assistant/persona", patch, o);
  }

  /** `PATCH /assistant/skin` (`theme?`, `accent_color?` as `#rrggbb`); see {@link updateProfile}. */
  updateSkin(patch: SkinPatch, o: SettingsCallOptions = {}): Promise<SettingsAccepted> {
    return this.settings("/assistant/skin", patch, o);
  }

  /**
   * `PATCH /compliance/settings` (admin): `risk_overrides?` (raise only), `ask_ttl_seconds?`,
   * `approvals_required?`, `allow_self_approval?`; see {@link updateProfile}.
   * @throws {NexusApiError} 400 `RISK_LOWERING_FORBIDDEN`, 403 `FORBIDDEN`, …
   */
  updateCompliance(patch: CompliancePatchInput, o: SettingsCallOptions = {}): Promise<SettingsAccepted> {
    return this.settings("/compliance/settings", patch, o);
  }

  /**
   * `POST /profile/photo` as `multipart/form-data` (field `photo`): one PNG, JPEG or WebP image
   * (judged by its bytes, not `filename`), at most 5 MiB. Confirmed by `settings.updated`.
   * @throws {NexusApiError} 413 `PAYLOAD_TOO_LARGE`, 415 `UNSUPPORTED_MEDIA_TYPE`, …
   */
  uploadPhoto(data: Blob | Uint8Array, filename: string, o: SettingsCallOptions = {}): Promise<SettingsAccepted> {
    const correlationId = o.correlationId ?? newId();
    const form = new FormData();
    form.append("photo", data instanceof Uint8Array ? new Blob([data.slice()]) : data, filename);
    return this.transport.call({
      method: "POST",
      path: "/profile/photo",
      form,
      headers: { "x-correlation-id": correlationId },
      kind: "write",
      correlationId,
      ...per(o),
      parse: (b) => SettingsAccepted.parse(b),
    });
  }

  /**
   * `GET /agent/reports?before=&limit=` — the archive, newest first (docs/contract.md "GET
   * /agent/reports — history"). Page on with `next_before` until it is `null`.
   * @param q.before only reports with a smaller report_id; `q.limit` 1–500; `q.keepReceived`:
   *   each report validated but returned as received (see `StreamOptions.keepReceived`).
   */
  async history(
    q: { before?: string; limit?: number; keepReceived?: boolean } = {},
    o: CallOptions = {},
  ): Promise<HistoryPage> {
    return this.transport.call({
      method: "GET",
      path: "/agent/reports",
      query: { before: q.before, limit: q.limit },
      kind: "read",
      ...per(o),
      parse: (b) => {
        const raw = HistoryPageRaw.parse(b);
        const reports = raw.reports.map((r, i) => {
          const p = parseReportEvent(r, { keepReceived: q.keepReceived });
          if (!p.ok) throw new Error(`reports[${i}]: ${p.issue}`);
          return p.value;
        });
        return { reports, next_before: raw.next_before };
      },
    });
  }

  /**
   * `POST /agent/reports/ticket` → `{ ticket, expires_at }`: a stream credential that works
   * once and lives at most 60 s. {@link events} with `ticket: true` gets one per connection.
   */
  ticket(o: CallOptions = {}): Promise<StreamTicket> {
    return this.transport.call({
      method: "POST",
      path: "/agent/reports/ticket",
      kind: "read",
      ...per(o),
      parse: (b) => StreamTicket.parse(b),
    });
  }

  /**
   * The report stream as an async iterable, with resume, dedupe, backoff and the heartbeat
   * watchdog (see {@link ReportStream}). Nothing connects until iteration starts.
   *
   * @example
   * for await (const ev of client.events()) {
   *   if (ev.type === "report") console.log(ev.data.report_id, ev.data.report.type);
   * }
   */
  events(options: StreamOptions & { keepReceived: true }): ReportStream<LenientProgressEvent>;
  events(options?: StreamOptions): ReportStream;
  events(options: StreamOptions = {}): ReportStream<ProgressData> {
    return new ReportStream<ProgressData>(this.transport, (signal) => this.ticket({ signal }), options);
  }

  /** The report stream with callbacks; see {@link events} and {@link StreamHandlers}. */
  stream(options: Omit<StreamOptions, "keepReceived"> & StreamHandlers = {}): StreamSubscription {
    const s = this.events({ ...options, keepReceived: false });
    const done = (async () => {
      try {
        for await (const ev of s) dispatch(options, ev);
      } catch (err) {
        options.onClose?.(err);
        throw err;
      }
      options.onClose?.();
    })();
    done.catch(() => {});
    return {
      close: () => s.close(),
      done,
      get cursor() {
        return s.cursor;
      },
      stats: s.stats,
    };
  }

  /**
   * Follows the tenant's state: opens the stream (a snapshot first unless `cursor` is given)
   * and feeds a {@link StateFollower}, which applies every report with the contracts'
   * `applyReport`.
   *
   * @example
   * const f = client.follow();
   * await f.ready();
   * const { command_id } = await client.sendCommand({ type: "doc.summary.create", params: { text } });
   * const done = await f.waitForReport((r) => r.causality.command_id === command_id && r.report.type === "command.completed");
   */
  follow(options: FollowOptions = {}): Following {
    const follower = new StateFollower(options.initial);
    if (options.onChange) follower.onChange(options.onChange);
    const waiter = new EventWaiter();
    const s = this.events({ ...options, keepReceived: false });
    const done = (async () => {
      try {
        for await (const ev of s) {
          follower.apply(ev);
          waiter.push(ev);
          options.onEvent?.(ev);
        }
      } catch (err) {
        waiter.fail(err);
        throw err;
      }
      waiter.fail(closedError());
    })();
    done.catch(() => {});
    return {
      follower,
      close: () => s.close(),
      done,
      get cursor() {
        return s.cursor;
      },
      stats: s.stats,
      getState: () => follower.getState(),
      onChange: (fn) => follower.onChange(fn),
      ready: async (o) => {
        const now = follower.getState();
        if (now) return now;
        await waiter.waitFor((ev) => (ev.type === "snapshot" ? true : undefined), { ...o, what: "snapshot" });
        return follower.getState() as Snapshot;
      },
      waitFor: (pick, o) => waiter.waitFor(pick, o ?? {}),
      waitForReport: (pred, o) =>
        waiter.waitFor((ev) => (ev.type === "report" && pred(ev.data) ? ev.data : undefined), {
          ...o,
          what: "matching report",
        }),
      events: () => waiter.events(),
    };
  }

  /**
   * The tenant's current snapshot: opens the stream without a cursor, takes the first
   * `snapshot` event and closes. (There is no separate snapshot endpoint.)
   * @throws {NexusApiError} `STREAM_TIMEOUT` after `timeoutMs` (default 30 000), or the
   *   stream's fatal error (401, 403, …).
   */
  async snapshot(o: WaitOptions & Pick<StreamOptions, "ticket"> = {}): Promise<SnapshotEvent> {
    const f = this.follow({ ticket: o.ticket, signal: o.signal });
    try {
      return await f.waitFor((ev) => (ev.type === "snapshot" ? ev.data : undefined), {
        timeoutMs: o.timeoutMs,
        signal: o.signal,
      });
    } finally {
      f.close();
    }
  }

  /**
   * Admin endpoints for dead letters (admin role). LOCAL shapes: see `wire.ts`.
   * `requeue` and `drop` are retried only on 429/503 (nothing done), never after a lost answer.
   */
  readonly deadLetters = {
    /**
     * `GET /admin/dead-letters?limit=&before=&source=&code=` — the tenant's dead letters, newest
     * first, optionally of one source (`cmd`, `approval`) or failure code.
     */
    list: (
      q: { limit?: number; before?: string; source?: "cmd" | "approval"; code?: string } = {},
      o: CallOptions = {},
    ): Promise<DeadLetterPage> =>
      this.transport.call({
        method: "GET",
        path: "/admin/dead-letters",
        query: { limit: q.limit, before: q.before, source: q.source, code: q.code },
        kind: "read",
        ...per(o),
        parse: (b) => DeadLetterPage.parse(b),
      }),
    /** `GET /admin/dead-letters/{id}` — one dead letter with its `payload`. @throws 404 `NOT_FOUND`. */
    get: (id: string, o: CallOptions = {}): Promise<DeadLetterDetail> =>
      this.transport.call({
        method: "GET",
        path: `/admin/dead-letters/${encodeURIComponent(id)}`,
        kind: "read",
        ...per(o),
        parse: (b) => DeadLetterDetail.parse(b),
      }),
    /** `POST /admin/dead-letters/{id}/requeue` → 202: publishes the original message again. */
    requeue: (id: string, o: CallOptions = {}): Promise<DeadLetterRequeued> =>
      this.transport.call({
        method: "POST",
        path: `/admin/dead-letters/${encodeURIComponent(id)}/requeue`,
        kind: "once",
        ...per(o),
        parse: (b) => DeadLetterRequeued.parse(b ?? {}),
      }),
    /** `DELETE /admin/dead-letters/{id}` → 204. */
    drop: (id: string, o: CallOptions = {}): Promise<void> =>
      this.transport.call({
        method: "DELETE",
        path: `/admin/dead-letters/${encodeURIComponent(id)}`,
        kind: "once",
        ...per(o),
        parse: () => undefined,
      }),
  };
}

/**
 * Creates a {@link NexusClient}.
 *
 * @example
 * const client = createClient({
 *   baseUrl: "http://localhost:8080",
 *   auth: { mode: "headers", tenant: { org_id: "acme", project_id: "nexus" } },
 * });
 */
export function createClient(options: ClientOptions): NexusClient {
  return new NexusClient(options);
}
