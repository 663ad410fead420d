import { z } from "zod";

/**
 * One half of a tenant id: 1–64 characters of `[A-Za-z0-9_-]`.
 *
 * Tenant ids become NATS subject tokens (`nexus.report.<org>.<project>`), so anything that
 * could widen a subscription or split a token (`.`, `*`, `>`, whitespace) is refused.
 * Source: docs/contract.md "Tenancy" and "Authentication".
 */
export const TenantToken = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "must be 1-64 characters of [A-Za-z0-9_-]");
export type TenantToken = z.infer<typeof TenantToken>;

/** A tenant: the pair (`org_id`, `project_id`). */
export const Tenant = z.object({ org_id: TenantToken, project_id: TenantToken });
export type Tenant = z.infer<typeof Tenant>;

/** Thrown by the subject builders when a token would not be a single safe subject token. */
export class InvalidSubjectToken extends Error {
  override name = "InvalidSubjectToken";
  readonly token: string;
  constructor(token: string) {
    super(`invalid subject token: ${JSON.stringify(token)}`);
    this.token = token;
  }
}

/** True when `s` is a valid tenant token (see {@link TenantToken}). */
export function isTenantToken(s: unknown): s is string {
  return typeof s === "string" && TenantToken.safeParse(s).success;
}

function token(s: string): string {
  if (!isTenantToken(s)) throw new InvalidSubjectToken(s);
  return s;
}

/** Entity ids used inside subjects or message ids (ask ids, command ids). */
const ID_RE = /^[A-Za-z0-9_:-]{1,128}$/;

/** Stream names, fixed by docs/architecture.md "JetStream topology". */
export const STREAMS = {
  commands: "NEXUS_COMMANDS",
  approvals: "NEXUS_APPROVALS",
  reports: "NEXUS_REPORTS",
  dlq: "NEXUS_DLQ",
  notify: "NEXUS_NOTIFY",
} as const;

/** Durable consumer names. */
export const CONSUMERS = {
  commandWorker: "command-worker",
  approvalWorker: "approval-worker",
  /** The archiver's durable pull consumer on NEXUS_REPORTS (every report, in stream order). */
  archiver: "archiver",
} as const;

/**
 * Subject builders. Each throws {@link InvalidSubjectToken} for an invalid tenant token,
 * so no caller can build a subject that matches more than one tenant.
 */
export const subjects = {
  /**
   * `nexus.cmd.<org>.<project>.<command_id>`: one subject per command, so a publish with
   * `Nats-Expected-Last-Subject-Sequence: 0` is an atomic create-if-absent of that command id.
   */
  command(t: Tenant, commandId: string): string {
    if (!ID_RE.test(commandId)) throw new InvalidSubjectToken(commandId);
    return `nexus.cmd.${token(t.org_id)}.${token(t.project_id)}.${commandId}`;
  },
  /** `nexus.cmd.<org>.<project>.<command_id>.approved`: an approved action dispatched to the command-worker. */
  approvedAction(t: Tenant, commandId: string): string {
    if (!ID_RE.test(commandId)) throw new InvalidSubjectToken(commandId);
    return `nexus.cmd.${token(t.org_id)}.${token(t.project_id)}.${commandId}.approved`;
  },
  /** `nexus.approval.<org>.<project>.<ask_id>`: the ask's register (see `AskEventMessage`). */
  approval(t: Tenant, askId: string): string {
    if (!ID_RE.test(askId)) throw new InvalidSubjectToken(askId);
    return `nexus.approval.${token(t.org_id)}.${token(t.project_id)}.${askId}`;
  },
  /** `nexus.report.<org>.<project>`: one subject per tenant, so per-subject limits are per-tenant retention. */
  report(t: Tenant): string {
    return `nexus.report.${token(t.org_id)}.${token(t.project_id)}`;
  },
  /**
   * `nexus.progress.<org>.<project>`: live command progress on **core NATS** (not JetStream: no
   * stream captures it, nothing is stored or replayed). Published by the command-worker, read
   * by the stream service's tenant hub, one subscription per tenant.
   */
  progress(t: Tenant): string {
    return `nexus.progress.${token(t.org_id)}.${token(t.project_id)}`;
  },
  /**
   * `nexus.cmd.<org>.<project>.<id>.requeue` (source `cmd`) or
   * `nexus.approval.<org>.<project>.<id>.requeue` (source `approval`): a dead letter sent back
   * to its worker (see `RequeueMessage`), `id` being the command or ask id of the original.
   */
  requeue(source: "cmd" | "approval", t: Tenant, id: string): string {
    if (!ID_RE.test(id)) throw new InvalidSubjectToken(id);
    return `nexus.${source === "cmd" ? "cmd" : "approval"}.${token(t.org_id)}.${token(t.project_id)}.${id}.requeue`;
  },
  /** `nexus.dlq.<org>.<project>.<source>` where source is `cmd` or `approval`; `_unknown` tenant tokens for unparseable messages. */
  dlq(t: Tenant | null, source: "cmd" | "approval"): string {
    if (!t) return `nexus.dlq._unknown._unknown.${source}`;
    return `nexus.dlq.${token(t.org_id)}.${token(t.project_id)}.${source}`;
  },
  /** `nexus.notify.<org>.<project>.case_action` (docs/contract.md "Notifications for other systems"). */
  caseAction(t: Tenant): string {
    return `nexus.notify.${token(t.org_id)}.${token(t.project_id)}.case_action`;
  },
  /**
   * Everything of one tenant on one stream: `nexus.<kind>.<org>.<project>.>` (commands,
   * approvals, notifications, dead letters) or `nexus.report.<org>.<project>` (reports, one
   * subject). The trailing `>` follows two validated tokens, so it never reaches another
   * tenant. Used as the filter of a tenant purge.
   */
  tenantFilter(kind: "cmd" | "approval" | "report" | "notify" | "dlq", t: Tenant): string {
    if (kind === "report") return subjects.report(t);
    return `nexus.${kind}.${token(t.org_id)}.${token(t.project_id)}.>`;
  },
  /** Stream filter subjects. */
  all: {
    commands: "nexus.cmd.>",
    approvals: "nexus.approval.>",
    reports: "nexus.report.>",
    dlq: "nexus.dlq.>",
    notify: "nexus.notify.>",
  },
} as const;

/**
 * Parses the tenant out of a `nexus.<kind>.<org>.<project>...` subject.
 * @returns the tenant, or `null` when the subject does not carry two valid tokens.
 */
export function tenantFromSubject(subject: string): Tenant | null {
  const parts = subject.split(".");
  const org = parts[2];
  const project = parts[3];
  if (!isTenantToken(org) || !isTenantToken(project)) return null;
  return { org_id: org, project_id: project };
}

/**
 * The query parameters that may carry a credential (`?token=`, `?api_key=`, `?ticket=`, and
 * OAuth's `access_token`): EventSource cannot send headers, so the stream accepts them there.
 */
export const CREDENTIAL_QUERY_PARAMS = ["token", "api_key", "access_token", "ticket"] as const;

const CREDENTIAL_IN_URL = new RegExp(`([?&](?:${CREDENTIAL_QUERY_PARAMS.join("|")})=)[^&#\\s"]*`, "gi");

/**
 * `url` (or any text holding one) with the value of every {@link CREDENTIAL_QUERY_PARAMS}
 * parameter replaced by `[redacted]`, for logs: `/s?token=eyJ…&x=1` → `/s?token=[redacted]&x=1`.
 */
export function redactUrl(url: string): string {
  const out = url.replace(CREDENTIAL_IN_URL, "$1[redacted]");
  return out.includes("/ui") ? out.replace(CONSOLE_CALLBACK, (q) => q.replace(OAUTH_RESPONSE, "$1[redacted]")) : out;
}

/**
 * The console's OIDC redirect (`/ui/?code=…&state=…`, RFC 6749 §4.1.2): the authorization code
 * is a one-use credential until redeemed, so its query is redacted as well. Only under `/ui`:
 * elsewhere `code` is an ordinary filter (dead letters' `?code=RETRIES_EXHAUSTED`).
 */
const CONSOLE_CALLBACK = /\/ui\/?\?[^#\s"]*/g;
const OAUTH_RESPONSE = /([?&](?:code|state|session_state)=)[^&#\s"]*/gi;
