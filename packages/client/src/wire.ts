/**
 * Wire shapes the SDK needs that `@nexus/contracts` does not define (yet).
 *
 * LOCAL DEFINITIONS — each belongs in `packages/contracts` and should be deleted here once it
 * lands there. They follow the contract's text ("Failure answers of the writing endpoints",
 * "GET /agent/reports — history", the `progress` event, stream tickets) and the admin
 * dead-letter endpoints as announced, and they parse leniently: unknown error codes and
 * fields added later never make a valid answer fail.
 *
 * @module
 */
import { type ErrorCode, ErrorDetail, type ReportEvent, Tenant } from "@nexus/contracts";
import { z } from "zod";

/**
 * Error codes the server may send that the contracts' closed `ErrorCode` enum does not list yet.
 * LOCAL: docs/contract.md "What an answer promises" (`ACCEPT_UNCONFIRMED`),
 * "Tenancy and authentication" (`CREDENTIAL_EXPIRED`), "Roles and separation of duties"
 * (`FORBIDDEN`, `SELF_APPROVAL_FORBIDDEN`).
 */
export const PENDING_SERVER_CODES = [
  "ACCEPT_UNCONFIRMED",
  "CREDENTIAL_EXPIRED",
  "FORBIDDEN",
  "SELF_APPROVAL_FORBIDDEN",
] as const;

/**
 * Codes the SDK itself produces when there is no server error body to report (status 0 for
 * failures without an HTTP answer). They are never sent by a server.
 * - `NETWORK_ERROR`: no answer (connection refused or reset, DNS, per-attempt timeout) on a
 *   call whose repetition could not have taken effect twice anyway (reads, tickets).
 * - `INVALID_RESPONSE`: a 2xx answer whose body does not match its schema.
 * - `HTTP_ERROR`: a non-2xx answer without the standard error body (e.g. from a proxy).
 * - `STREAM_TIMEOUT`: a wait on the stream (`Following.waitFor`, `snapshot()`) timed out.
 * - `STREAM_CLOSED`: the stream was closed while something waited on it.
 */
export const CLIENT_CODES = [
  "NETWORK_ERROR",
  "INVALID_RESPONSE",
  "HTTP_ERROR",
  "STREAM_TIMEOUT",
  "STREAM_CLOSED",
] as const;

/** Every code the SDK knows by name; `(string & {})` keeps unknown future codes assignable. */
export type NexusErrorCode =
  | ErrorCode
  | (typeof PENDING_SERVER_CODES)[number]
  | (typeof CLIENT_CODES)[number]
  | (string & {});

/**
 * The inner `error` object of the standard error body, parsed leniently: any UPPER_SNAKE or
 * unknown `code` string is accepted (the contracts' `ApiError` refuses codes it does not list),
 * plus the optional `stage` (docs/contract.md "The standard error body").
 */
export const LenientApiError = z.object({
  code: z.string().min(1),
  message: z.string(),
  recoverable: z.boolean().default(false),
  details: z.array(ErrorDetail).optional(),
  stage: z.string().optional(),
});
export type LenientApiError = z.infer<typeof LenientApiError> & { code: NexusErrorCode };

/** The standard error body with a lenient `error` (see {@link LenientApiError}). */
export const LenientErrorBody = z.object({ error: LenientApiError, correlation_id: z.string().optional() });
export type LenientErrorBody = z.infer<typeof LenientErrorBody>;

/**
 * `data` of an SSE `error` event (docs/contract.md "The report stream"): the contracts'
 * `ErrorEvent` with a lenient code, so `CREDENTIAL_EXPIRED` and later codes parse.
 */
export const StreamErrorEvent = z.object({ error: LenientApiError, ts: z.string() });
export type StreamErrorEvent = z.infer<typeof StreamErrorEvent>;

/**
 * `data` of the live-only SSE `progress` event (no `id:`, never replayed):
 * `{ progress: { command_id, stage, percent?, text_delta? }, causality, ts }`.
 * `percent` is 0–100; `text_delta` is the next piece of streamed text (e.g. a draft being
 * written), to be appended to earlier deltas of the same command.
 * LOCAL: docs/contract.md "The report stream", `event: progress`.
 */
export const ProgressEvent = z.object({
  progress: z.object({
    command_id: z.string(),
    stage: z.string(),
    percent: z.number().min(0).max(100).optional(),
    text_delta: z.string().optional(),
  }),
  causality: z.object({
    correlation_id: z.string(),
    command_id: z.string().optional(),
    ask_id: z.string().optional(),
  }),
  ts: z.string(),
});
export type ProgressEvent = z.infer<typeof ProgressEvent>;

/**
 * A `progress` event as read in received-object mode (`StreamOptions.keepReceived`): only
 * `progress.command_id` and `progress.stage` are required; `causality` and `ts` may be
 * missing (older servers and mocks omit them), a `percent` outside 0–100 is clamped and a
 * non-numeric one dropped instead of refusing the event. Unknown keys are kept.
 */
export const LenientProgressEvent = z.looseObject({
  progress: z.looseObject({
    command_id: z.string(),
    stage: z.string(),
    percent: z
      .unknown()
      .transform((p) => (typeof p === "number" && Number.isFinite(p) ? Math.max(0, Math.min(100, p)) : undefined))
      .optional(),
    text_delta: z.string().optional(),
  }),
  causality: ProgressEvent.shape.causality.optional(),
  ts: z.string().optional(),
});
export type LenientProgressEvent = z.infer<typeof LenientProgressEvent>;

/**
 * `200` body of `POST /agent/reports/ticket`: a one-use stream credential that lives at most
 * 60 s, bound to tenant and principal; the stream takes it as `?ticket=`.
 * LOCAL: docs/contract.md "Tenancy" and "Authentication".
 */
export const StreamTicket = z.object({ ticket: z.string().min(1), expires_at: z.string() });
export type StreamTicket = z.infer<typeof StreamTicket>;

/**
 * `200` body of `GET /agent/reports?before=&limit=`: reports newest first, in the envelope of
 * stream `report` events; `next_before` is the `before` of the next (older) page, `null` at the end.
 * LOCAL: docs/contract.md "GET /agent/reports — history (archive)". `reports` items are checked by
 * the caller with the contracts' `ReportEvent` (see `parseReportEvent`).
 */
export const HistoryPageRaw = z.object({ reports: z.array(z.unknown()), next_before: z.string().nullable() });
/** A page of history, reports parsed. */
export interface HistoryPage {
  /** Newest first. */
  reports: ReportEvent[];
  /** Pass as `before` to get the next older page; `null` when there is none. */
  next_before: string | null;
}

/** A dead-letter id as sent by the admin endpoints (string or number on the wire; a string here). */
const DeadLetterId = z.union([z.string(), z.number()]).transform(String);

/**
 * One parked message in `GET /admin/dead-letters`: why it was dead-lettered (`reason`, e.g.
 * `poison` or `retries_exhausted`; `code` when an error code applies), the last error text,
 * where it came from (`stream`, `subject`, `tenant` when known), how often it was delivered
 * and when it was parked (`ts`, ISO 8601).
 * LOCAL: the admin dead-letter endpoints announced by the back end (not in docs/contract.md yet).
 */
export const DeadLetterSummary = z.object({
  id: DeadLetterId,
  reason: z.string(),
  code: z.string().optional(),
  error: z.string(),
  stream: z.string(),
  subject: z.string(),
  tenant: Tenant.nullable().optional(),
  deliveries: z.number().int(),
  ts: z.string(),
});
export type DeadLetterSummary = z.infer<typeof DeadLetterSummary>;

/** `GET /admin/dead-letters/{id}`: a {@link DeadLetterSummary} plus the original `payload`. LOCAL. */
export const DeadLetterDetail = DeadLetterSummary.extend({ payload: z.unknown() });
export type DeadLetterDetail = z.infer<typeof DeadLetterDetail>;

/** `GET /admin/dead-letters?limit=&before=`: newest first; `next_before` pages on. LOCAL. */
export const DeadLetterPage = z.object({
  dead_letters: z.array(DeadLetterSummary),
  next_before: z.union([z.string(), z.number()]).transform(String).nullable(),
});
export type DeadLetterPage = z.infer<typeof DeadLetterPage>;

/** `202` body of `POST /admin/dead-letters/{id}/requeue`; its fields are not specified yet. LOCAL. */
export const DeadLetterRequeued = z.record(z.string(), z.unknown());
export type DeadLetterRequeued = z.infer<typeof DeadLetterRequeued>;

/**
 * `PATCH /compliance/settings` body including the fields docs/contract.md "Settings" adds and the
 * contracts' strict `CompliancePatch` does not list yet (`approvals_required`,
 * `allow_self_approval`). LOCAL.
 */
export interface CompliancePatchInput {
  risk_overrides?: Record<string, "GREEN" | "YELLOW" | "RED">;
  ask_ttl_seconds?: number | null;
  /** Distinct approvers needed per command type (default 1). */
  approvals_required?: Record<string, number>;
  /** Whether the requester of a RED command may approve it (default false). */
  allow_self_approval?: boolean;
}
