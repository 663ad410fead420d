import {
  COMMAND_TYPES,
  deriveAutopilot,
  isCommandType,
  type Profile,
  RESOLVED_ASKS_LIMIT,
  RiskLevel,
  type Snapshot,
  type Tenant,
  WORKLOG_LIMIT,
  type WorklogEntry,
  type WorklogStatus,
} from "@nexus/contracts";
import type { Kysely } from "kysely";
import { askToWire, listAsksForSnapshot } from "./asks.ts";
import { type CommandRow, listRecentCommands } from "./commands.ts";
import type { Database } from "./db/schema.ts";
import { readSettings } from "./settings.ts";

/** Reads a tenant's snapshot state from the database; see {@link readSnapshot}. */
export type SnapshotReader = (
  db: Kysely<Database>,
  tenant: Tenant,
  opts?: { worklogLimit?: number },
) => Promise<Snapshot>;

const STATUS_WORD: Record<WorklogStatus, string> = {
  accepted: "accepted",
  running: "running",
  waiting_approval: "waiting for approval",
  done: "ready",
  failed: "failed",
  cancelled: "cancelled",
};

/**
 * The worklog line of a command row: `title` is the registry title plus a status word
 * (`"Draft email ready"`), `updated_at` ISO 8601; `result`, `error`, `ask_id` and a known
 * `risk_level` only when set.
 */
export function worklogEntry(row: CommandRow): WorklogEntry {
  const title = isCommandType(row.type) ? COMMAND_TYPES[row.type].title : row.type;
  const risk = RiskLevel.safeParse(row.risk_level);
  return {
    command_id: row.command_id,
    type: row.type,
    status: row.status,
    title: `${title} ${STATUS_WORD[row.status]}`,
    updated_at: row.updated_at.toISOString(),
    ...(risk.success ? { risk_level: risk.data } : {}),
    correlation_id: row.correlation_id,
    ...(row.result != null ? { result: row.result } : {}),
    ...(row.error != null ? { error: row.error } : {}),
    ...(row.ask_id ? { ask_id: row.ask_id } : {}),
  };
}

/**
 * Reads a tenant's state for a `snapshot` event (docs/contract.md "Snapshot"): settings, the newest
 * `worklogLimit` commands (default {@link WORKLOG_LIMIT}, newest first), every open or in-progress ask plus the newest
 * {@link RESOLVED_ASKS_LIMIT} resolved ones, and the autopilot derived from them.
 *
 * The reads run in one read-only REPEATABLE READ transaction so the tables agree with each
 * other. Callers must read the tenant's last report sequence W *before* calling this and tail
 * from W+1 afterwards (docs/architecture.md invariant 6): every fact in the state is then either
 * at or below W, or re-sent as a report above W, and re-applying a report is harmless.
 *
 * @throws pg / kysely errors when Postgres does not answer.
 */
export const readSnapshot: SnapshotReader = (db, tenant, opts = {}) =>
  db
    .transaction()
    .setIsolationLevel("repeatable read")
    .setAccessMode("read only")
    .execute(async (trx) => {
      const settings = await readSettings(trx, tenant);
      const commands = await listRecentCommands(trx, tenant, opts.worklogLimit ?? WORKLOG_LIMIT);
      const askRows = await listAsksForSnapshot(trx, tenant, RESOLVED_ASKS_LIMIT);
      const worklog = commands.map(worklogEntry);
      const asks = askRows.map(askToWire);
      return {
        autopilot: deriveAutopilot(worklog, asks),
        worklog,
        asks,
        profile: settings.profile as Profile,
        assistant: { persona: settings.persona, skin: settings.skin },
        compliance: settings.compliance,
        settings_versions: {
          profile: settings.settings_version,
          persona: settings.settings_version,
          skin: settings.settings_version,
          compliance: settings.settings_version,
        },
      };
    });
