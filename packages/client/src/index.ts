/**
 * `@nexus/client` — the typed SDK of NEXUS Console API.
 *
 * - {@link createClient} / {@link NexusClient}: commands, decisions, settings, history, tickets,
 *   dead letters; typed 2xx bodies or {@link NexusApiError}; retries with full jitter.
 * - {@link ReportStream} (`client.events()`), `client.stream()`, `client.follow()`: the report
 *   stream with resume by `Last-Event-ID`, dedupe by `report_id`, backoff and a heartbeat
 *   watchdog; {@link StateFollower} keeps the current snapshot.
 *
 * Runs in browsers and Node 22+: it uses only `fetch`, `AbortController`, `TextDecoder`,
 * `URL`, `FormData`, `Blob` and `crypto.randomUUID`.
 *
 * @module
 */
export type { ApiKeyAuth, BearerAuth, ClientAuth, HeaderAuth } from "./auth.ts";
export { fullJitterMs, parseRetryAfterMs, type RandomSource, reconnectDelayMs } from "./backoff.ts";
export {
  type CallOptions,
  type ClientOptions,
  type CommandParams,
  createClient,
  type DecideRequest,
  type Following,
  type FollowOptions,
  NexusClient,
  type SendCommandRequest,
  type SettingsCallOptions,
  type StreamHandlers,
  type StreamSubscription,
  type WaitOptions,
} from "./client.ts";
export { isNexusApiError, NexusApiError, type NexusApiErrorInit } from "./errors.ts";
export {
  type CallKind,
  type CallSpec,
  DEFAULT_RETRY,
  type ResolvedRetry,
  type RetryInfo,
  type RetryOptions,
  resolveRetry,
  Transport,
  type TransportOptions,
} from "./http.ts";
export {
  compareReportIds,
  isReportId,
  type ParsedReport,
  type ParseReportOptions,
  parseReportEvent,
  withReceivedFields,
} from "./reports.ts";
export { type StateChangeListener, StateFollower } from "./state.ts";
export {
  type ConnectionStateEvent,
  type ErrorStreamEvent,
  type OpenStreamEvent,
  type PingStreamEvent,
  type ProgressData,
  type ProgressStreamEvent,
  type ReconnectingStreamEvent,
  ReportStream,
  type ReportStreamEvent,
  type ResyncedStreamEvent,
  type SnapshotStreamEvent,
  type StreamEvent,
  type StreamOptions,
  type StreamStats,
  type UnrecognizedStreamEvent,
} from "./stream.ts";
export {
  CLIENT_CODES,
  type CompliancePatchInput,
  DeadLetterDetail,
  DeadLetterPage,
  DeadLetterRequeued,
  DeadLetterSummary,
  type HistoryPage,
  LenientApiError,
  LenientErrorBody,
  LenientProgressEvent,
  type NexusErrorCode,
  PENDING_SERVER_CODES,
  ProgressEvent,
  StreamErrorEvent,
  StreamTicket,
} from "./wire.ts";
