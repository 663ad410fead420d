import type { ColumnType, Generated, JSONColumnType } from "kysely";

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
  accepted_report_id: string | null;
  ask_id: string | null;
  result: NullableJson;
  error: NullableJson;
  attempts: Generated<number>;
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
  decided_report_id: string | null;
  result: NullableJson;
  error: NullableJson;
  /** True once `ask.expired` was published for an expired ask (the sweeper re-publishes otherwise). */
  expiry_reported: Generated<boolean>;
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

/** The profile photo of a tenant (one per tenant). */
export interface ProfilePhotosTable {
  org_id: string;
  project_id: string;
  sha256: string;
  content_type: string;
  bytes: Buffer;
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
}
