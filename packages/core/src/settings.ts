/**
 * Tenant settings (profile, persona, skin, compliance): one row per tenant, written by the
 * gateway in a short transaction that also records the `settings.updated` report in the report
 * outbox (outbox.ts). The gateway publishes the report after the commit and deletes the outbox
 * row; a relay publishes rows whose publish was lost. So a `settings.updated` never precedes its
 * commit and is never lost (docs/architecture.md "The write path").
 */
import { type Compliance, type SettingsSection, subjects, type Tenant } from "@nexus/contracts";
import { sql, type Transaction } from "kysely";
import { preparedQuery } from "./db/database.ts";
import type { Database, Db } from "./db/schema.ts";
import { type PendingReport, reportMessageJson } from "./effects.ts";
import { reportMsgId } from "./ids.ts";
import { insertOutbox } from "./outbox.ts";
import { settingsUpdatedReport } from "./reports.ts";

/** A tenant's settings as the services use them. */
export interface TenantSettings {
  profile: Record<string, unknown>;
  persona: Record<string, unknown>;
  skin: Record<string, unknown>;
  compliance: Compliance;
  /** Incremented on every compliance change; asks record the version they were created under. */
  policy_version: number;
  /** Incremented on every settings change (any section); orders `settings.updated` reports. */
  settings_version: number;
}

type SettingsRow = {
  profile: Record<string, unknown>;
  persona: Record<string, unknown>;
  skin: Record<string, unknown>;
  compliance: Record<string, unknown>;
  policy_version: number;
  settings_version: number;
};

function toSettings(row: SettingsRow): TenantSettings {
  const c = row.compliance as Partial<Compliance>;
  return {
    profile: row.profile,
    persona: row.persona,
    skin: row.skin,
    compliance: {
      risk_overrides: c.risk_overrides ?? {},
      ask_ttl_seconds: c.ask_ttl_seconds ?? null,
      ...(c.approvals_required ? { approvals_required: c.approvals_required } : {}),
      ...(c.allow_self_approval !== undefined ? { allow_self_approval: c.allow_self_approval } : {}),
      policy_version: row.policy_version,
    },
    policy_version: row.policy_version,
    settings_version: row.settings_version,
  };
}

const DEFAULTS: SettingsRow = {
  profile: {},
  persona: {},
  skin: {},
  compliance: {},
  policy_version: 0,
  settings_version: 0,
};

/**
 * Reads a tenant's settings; a tenant without a row reads as defaults. `lock: "update"` (inside
 * a transaction) serialises changes per tenant.
 */
export async function readSettings(db: Db, t: Tenant, lock?: "update"): Promise<TenantSettings> {
  let q = db
    .selectFrom("tenant_settings")
    .select(["profile", "persona", "skin", "compliance", "policy_version", "settings_version"])
    .where("org_id", "=", t.org_id)
    .where("project_id", "=", t.project_id);
  if (lock === "update") q = q.forUpdate();
  const row = await q.executeTakeFirst();
  return toSettings(row ?? DEFAULTS);
}

/** What the command-worker reads before it runs a command (see {@link readCommandContexts}). */
export interface CommandContext {
  /** The tenant's settings (defaults when it has no row). */
  settings: TenantSettings;
  /** Whether the command already has its row (it was received before). */
  recorded: boolean;
}

/**
 * For many commands in one statement: their tenant's settings and whether each command is
 * already recorded — what decides its policy and whether it may run before it is recorded (a
 * command seen before never runs again without its row saying so). A group commit batches the
 * reads of concurrent jobs through it.
 * @returns one {@link CommandContext} per item, in order.
 */
export async function readCommandContexts(
  db: Db,
  items: readonly { tenant: Tenant; commandId: string }[],
): Promise<CommandContext[]> {
  if (items.length === 0) return [];
  const rows = await preparedQuery<
    { i: number; recorded: boolean } & { [K in keyof SettingsRow]: SettingsRow[K] | null }
  >(
    db,
    "nexus_read_command_contexts",
    // One primary-key probe per item: lateral subqueries with `limit 1` cannot be pulled up into
    // a join. A join (or `exists`) lets the planner, who takes the recordset for 100 rows, hash
    // the whole commands table instead, on every call (measured: 2 ms per call at 5,000 rows).
    `select x.i, s.profile, s.persona, s.skin, s.compliance, s.policy_version, s.settings_version,
       c.recorded is not null as recorded
     from jsonb_to_recordset($1::jsonb) as x(i integer, org_id text, project_id text, command_id text)
     left join lateral (
       select profile, persona, skin, compliance, policy_version, settings_version from tenant_settings t
       where t.org_id = x.org_id and t.project_id = x.project_id limit 1
     ) s on true
     left join lateral (
       select true as recorded from commands c
       where c.org_id = x.org_id and c.project_id = x.project_id and c.command_id = x.command_id limit 1
     ) c on true`,
    [
      JSON.stringify(
        items.map((it, i) => ({
          i,
          org_id: it.tenant.org_id,
          project_id: it.tenant.project_id,
          command_id: it.commandId,
        })),
      ),
    ],
  );
  const out: CommandContext[] = [];
  for (const r of rows) {
    const { i, recorded, ...settings } = r;
    out[i] = {
      settings: toSettings(settings.policy_version === null ? DEFAULTS : (settings as SettingsRow)),
      recorded,
    };
  }
  return items.map((_, i) => {
    const c = out[i];
    if (!c) throw new Error(`readCommandContexts: no row for item ${i}`);
    return c;
  });
}

/** The values of a section as `settings.updated` carries them (compliance includes its policy_version). */
export function sectionValues(s: TenantSettings, section: SettingsSection): Record<string, unknown> {
  if (section === "compliance") return { ...s.compliance };
  return s[section];
}

/** The result of {@link updateSettings}. */
export interface SettingsChange {
  settings: TenantSettings;
  /** The `settings.updated` report, also stored in the outbox under `outboxId`. */
  report: PendingReport;
  outboxId: string;
}

/**
 * Changes one settings section: locks the tenant's row (creating it if missing), computes the
 * new values with `merge` (which may throw an `AppError` to refuse the change), writes them,
 * bumps `settings_version` (and `policy_version` for compliance), and records the
 * `settings.updated` report in the outbox — all in the caller's transaction.
 * @param merge new section values from the current ones.
 * @param now the report's `ts`.
 */
export async function updateSettings(
  tx: Transaction<Database>,
  t: Tenant,
  section: SettingsSection,
  merge: (current: Record<string, unknown>) => Record<string, unknown>,
  opts: { now: Date; correlationId: string },
): Promise<SettingsChange> {
  await tx
    .insertInto("tenant_settings")
    .values({ org_id: t.org_id, project_id: t.project_id, profile: "{}", persona: "{}", skin: "{}", compliance: "{}" })
    .onConflict((oc) => oc.columns(["org_id", "project_id"]).doNothing())
    .execute();
  const current = await readSettings(tx, t, "update");
  const merged = merge(sectionValues(current, section));
  const { policy_version: _derived, ...stored } = merged;
  const row = await tx
    .updateTable("tenant_settings")
    .set({
      [section]: JSON.stringify(section === "compliance" ? stored : merged),
      settings_version: sql`settings_version + 1`,
      policy_version: section === "compliance" ? sql`policy_version + 1` : sql`policy_version`,
      updated_at: opts.now,
    })
    .where("org_id", "=", t.org_id)
    .where("project_id", "=", t.project_id)
    .returning(["profile", "persona", "skin", "compliance", "policy_version", "settings_version"])
    .executeTakeFirstOrThrow();
  const settings = toSettings(row);
  const report: PendingReport = {
    tenant: t,
    msgId: reportMsgId(t, "settings", `settings.${settings.settings_version}`),
    report: settingsUpdatedReport(section, sectionValues(settings, section), settings.settings_version),
    causality: { correlation_id: opts.correlationId },
    ts: opts.now.toISOString(),
  };
  const outboxId = await insertOutbox(tx, {
    tenant: t,
    msgId: report.msgId,
    subject: subjects.report(t),
    payload: reportMessageJson(report),
    correlationId: opts.correlationId,
    now: opts.now,
  });
  return { settings, report, outboxId };
}
