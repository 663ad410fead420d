import type { DecisionEntry } from "@nexus/contracts";
import type { ColumnType, Generated, JSONColumnType, Kysely, Selectable, Transaction } from "kysely";

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type Json<T extends object = Record<string, unknown>> = JSONColumnType<T, string, string>;
type NullableJson<T = unknown> = ColumnType<T | null, string | null | undefined, string | null>;

/** Per-tenant settings, one row per tenant. `settings_version` orders settings reports. */
export interface TenantSettingsTable {
  org_id: string;
  project_id: string;
  profile: Json;
  persona: Json;
  skin: Json;
  compliance: Json;
  /** Incremented on every compliance change; asks record the version they were created under. */
  policy_version: Generated<number>;
  settings_version: Generated<number>;
  updated_at: Timestamp;
}

/** Command states: accepted → running → done | failed; RED: accepted → waiting_approval → done | failed | cancelled. */
export type CommandStatus = "accepted" | "running" | "waiting_approval" | "done" | "failed" | "cancelled";

/** One row per accepted command; (org_id, project_id, command_id) is the idempotency key. */
export interface CommandsTable {
  org_id: string;
  project_id: string;
  command_id: string;
  type: string;
  /** sha256 of the canonical JSON of {type, context, params}: same id + other hash → 409. */
  body_hash: string;
  correlation_id: string;
  surface: string | null;
  principal: string;
  params: Json;
  context: Json;
  risk_level: string;
  policy_version: number;
  status: CommandStatus;
  ask_id: string | null;
  result: NullableJson;
  error: NullableJson;
  attempts: Generated<number>;
  /** Times the command was requeued from the dead-letter stream (0 = never). */
  requeues: Generated<number>;
  /** NEXUS_DLQ sequence of the last requeue applied (bigint as string), or null. */
  requeued_from: ColumnType<string | null, string | number | null | undefined, string | number | null>;
  /** NEXUS_COMMANDS sequence of the requeue message that applied `requeued_from` (bigint as string). */
  requeue_msg_seq: ColumnType<string | null, string | number | null | undefined, string | number | null>;
  accepted_at: Timestamp;
  started_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  finished_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  updated_at: Timestamp;
}

export type AskStatusDb = "open" | "decided" | "executing" | "done" | "failed" | "cancelled" | "expired";

/** Asks: the held RED actions and their state machine. */
export interface AsksTable {
  ask_id: string;
  org_id: string;
  project_id: string;
  command_id: string;
  correlation_id: string;
  status: AskStatusDb;
  risk_level: string;
  action: Json;
  /** sha256 of the canonical JSON of the action arguments ("approve exactly what runs"). */
  action_hash: string;
  policy_version: number;
  expires_at: Timestamp;
  decision: "approve" | "reject" | null;
  decided_by: string | null;
  decision_note: string | null;
  decision_correlation_id: string | null;
  decided_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  result: NullableJson;
  error: NullableJson;
  /** The principal who sent the command. */
  requested_by: string | null;
  /** Distinct approvals needed (the tenant's `approvals_required` for the type when the ask was created). */
  approvals_required: Generated<number>;
  /** Every decision so far, oldest first (`DecisionEntry[]`), as the register holds them. */
  decisions: ColumnType<DecisionEntry[], string | undefined, string>;
  /** Sequence of the last register entry applied (bigint as string); older entries are skipped. */
  register_seq: ColumnType<string, string | number | undefined, string | number>;
  created_at: Timestamp;
  updated_at: Timestamp;
}

/** Append-only action history: every decision, execution and expiry. */
export interface ActionHistoryTable {
  id: Generated<string>;
  org_id: string;
  project_id: string;
  ask_id: string;
  command_id: string;
  event: "decided" | "executed" | "execution_failed" | "cancelled" | "expired";
  decision: "approve" | "reject" | null;
  executor_id: string;
  note: string | null;
  correlation_id: string;
  details: NullableJson;
  created_at: Generated<Date>;
}

/** Outbox of external shares, delivered by the approval-worker's relay. */
export interface ShareOutboxTable {
  share_id: string;
  org_id: string;
  project_id: string;
  ask_id: string;
  command_id: string;
  recipient: string;
  channel: string;
  resource: Json;
  message: string | null;
  status: "queued" | "delivered" | "failed";
  attempts: Generated<number>;
  next_attempt_at: Timestamp;
  last_error: string | null;
  created_at: Generated<Date>;
  delivered_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
}

/** Reports of changes the gateway committed itself, until their publish is confirmed. */
export interface ReportOutboxTable {
  id: Generated<string>;
  org_id: string;
  project_id: string;
  /** The report's `Nats-Msg-Id` (unique: one row per fact). */
  msg_id: string;
  subject: string;
  /** The UTF-8 JSON `ReportMessage`, byte for byte what is published. */
  payload: string;
  correlation_id: string;
  created_at: Generated<Date>;
  /** The relay leaves a row alone until this time (a publish in flight, or a fresh row). */
  leased_until: ColumnType<Date, Date | string | undefined, Date | string>;
}

/** The profile photo of a tenant (one per tenant). */
export interface ProfilePhotosTable {
  org_id: string;
  project_id: string;
  sha256: string;
  content_type: string;
  bytes: Buffer;
  created_at: Generated<Date>;
}

/** API keys minted by an admin; only the secret's sha256 is stored. */
export interface ApiKeysTable {
  id: string;
  secret_hash: string;
  principal: string;
  roles: ColumnType<string[], string, string>;
  /** Tenants the key covers: `[{org_id, project_id}]`, or `["*"]` for every tenant. */
  tenants: ColumnType<({ org_id: string; project_id: string } | "*")[], string, string>;
  created_by: string;
  created_at: Generated<Date>;
  revoked_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
}

/** One-use stream tickets; only the ticket's sha256 is stored. */
export interface StreamTicketsTable {
  ticket_hash: string;
  org_id: string;
  project_id: string;
  principal: string;
  roles: ColumnType<string[], string, string>;
  expires_at: Timestamp;
  /** When the credential the ticket was issued for expires (a stream ends then). */
  credential_expires_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  used_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
}

/** `numeric` columns: pg returns them as strings (no precision lost); written as numbers or strings. */
type Numeric = ColumnType<string, number | string | undefined, number | string>;

/** One model call that used tokens, with its estimated cost (the FinOps cost ledger). */
export interface LlmCostLedgerTable {
  id: Generated<string>;
  org_id: string;
  project_id: string;
  /** UTC day of the call (`YYYY-MM-DD`), the budget's day. */
  day: ColumnType<string, string, string>;
  command_id: string;
  provider: string;
  model: string;
  tokens_in: number;
  tokens_out: number;
  cost_usd: Numeric;
  created_at: Generated<Date>;
}

/** A tenant's language-model spend per UTC day. */
export interface LlmBudgetDaysTable {
  org_id: string;
  project_id: string;
  day: ColumnType<string, string, string>;
  spent_usd: Numeric;
  calls: Generated<number>;
  /** Set once, by the call that first crossed the soft threshold that day. */
  soft_warned_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
}

/** One language-model call attempt, for audit (content columns only when enabled). */
export interface LlmAuditTable {
  id: Generated<string>;
  org_id: string;
  project_id: string;
  command_id: string;
  correlation_id: string;
  task: string;
  provider: string;
  model: string;
  outcome: string;
  error_code: string | null;
  tokens_in: Generated<number>;
  tokens_out: Generated<number>;
  cost_usd: Numeric;
  latency_ms: number;
  prompt: NullableJson;
  output: string | null;
  created_at: Generated<Date>;
}

/**
 * The report archive: every report of NEXUS_REPORTS with its place in the tenant's hash chain
 * (migration 0005, docs/archive.md). Rows are inserted by the archiver only; `prev_hash` and
 * `hash` are null until the row is chained, and a chained row never changes.
 */
export interface AgentReportEventsTable {
  org_id: string;
  project_id: string;
  /** The JetStream sequence (bigint as string). */
  report_id: ColumnType<string, string | number, never>;
  /** `report.type`. */
  type: string;
  correlation_id: string | null;
  command_id: string | null;
  ask_id: string | null;
  causality: Json;
  /** The UTF-8 JSON `ReportMessage`, exactly as published. */
  payload: string;
  /** `payload === JSON.stringify(JSON.parse(payload))` and it has no `report_id` key (see `reportEventJsonFast`). */
  compact: Generated<boolean>;
  /** The report's own `ts` (the archive time when the report has none that parses). */
  ts: Timestamp;
  archived_at: Generated<Date>;
  prev_hash: string | null;
  hash: string | null;
}

/** One row per archived tenant: the head of its hash chain and what its archive covers. */
export interface AgentReportChainsTable {
  org_id: string;
  project_id: string;
  /** The newest chained report_id (bigint as string; "0" = none). */
  last_report_id: ColumnType<string, string | number | undefined, string | number>;
  /** Its hash (64 zeros = the genesis before the first report). */
  last_hash: ColumnType<string, string | undefined, string>;
  /** Every report of the tenant with a report_id in (complete_after, last_report_id] is archived. */
  complete_after: ColumnType<string, string | number | undefined, string | number>;
  /** Reports at or below this report_id were erased by a purge and are never archived again. */
  purged_through: ColumnType<string, string | number | undefined, string | number>;
  /** Rows chained so far (pruned and purged rows included). */
  chained: ColumnType<string, string | number | undefined, string | number>;
  /** Times a possible loss before archiving restarted `complete_after`. */
  coverage_resets: ColumnType<number, number | undefined, number>;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

/** The audit entry of a tenant purge (append-only). */
export interface TenantPurgesTable {
  id: Generated<string>;
  org_id: string;
  project_id: string;
  principal: string;
  correlation_id: string;
  reports_through: ColumnType<string, string | number, never>;
  /** The tenant's chain head when it was purged: the `tenant.purged` report chains on from it. */
  chain_report_id: ColumnType<string, string | number, never>;
  chain_hash: string;
  counts: Json<Record<string, number>>;
  created_at: Generated<Date>;
}

/** The kysely database type. */
export interface Database {
  tenant_settings: TenantSettingsTable;
  commands: CommandsTable;
  asks: AsksTable;
  action_history: ActionHistoryTable;
  share_outbox: ShareOutboxTable;
  profile_photos: ProfilePhotosTable;
  report_outbox: ReportOutboxTable;
  api_keys: ApiKeysTable;
  stream_tickets: StreamTicketsTable;
  llm_cost_ledger: LlmCostLedgerTable;
  llm_budget_days: LlmBudgetDaysTable;
  llm_audit: LlmAuditTable;
  agent_report_events: AgentReportEventsTable;
  agent_report_chains: AgentReportChainsTable;
  tenant_purges: TenantPurgesTable;
}

/** A query executor: the pool or an open transaction. */
export type Db = Kysely<Database> | Transaction<Database>;
/** A commands row. */
export type CommandRow = Selectable<CommandsTable>;
/** An asks row. */
export type AskRow = Selectable<AsksTable>;
