import {
  COMMAND_TYPES,
  type Compliance,
  compareRisk,
  isCommandType,
  maxRisk,
  type RiskLevel,
  type SettingsSection,
  type Tenant,
} from "@nexus/contracts";
import { type Kysely, sql, type Transaction } from "kysely";
import type { Database } from "./schema.ts";

type Db = Kysely<Database> | Transaction<Database>;

/** A tenant's settings row as the services use it. */
export interface TenantSettings {
  profile: Record<string, unknown>;
  persona: Record<string, unknown>;
  skin: Record<string, unknown>;
  compliance: Compliance;
  policy_version: number;
  settings_version: number;
}

const COLUMN: Record<SettingsSection, "profile" | "persona" | "skin" | "compliance"> = {
  profile: "profile",
  persona: "persona",
  skin: "skin",
  compliance: "compliance",
};

function toSettings(row: {
  profile: Record<string, unknown>;
  persona: Record<string, unknown>;
  skin: Record<string, unknown>;
  compliance: Record<string, unknown>;
  policy_version: number;
  settings_version: number;
}): TenantSettings {
  const c = row.compliance as Partial<Compliance>;
  return {
    profile: row.profile,
    persona: row.persona,
    skin: row.skin,
    compliance: {
      risk_overrides: c.risk_overrides ?? {},
      ask_ttl_seconds: c.ask_ttl_seconds ?? null,
      policy_version: row.policy_version,
    },
    policy_version: row.policy_version,
    settings_version: row.settings_version,
  };
}

/** Creates the tenant's settings row if missing (idempotent). */
export async function ensureTenant(db: Db, t: Tenant): Promise<void> {
  await db
    .insertInto("tenant_settings")
    .values({
      org_id: t.org_id,
      project_id: t.project_id,
      profile: "{}",
      persona: "{}",
      skin: "{}",
      compliance: '{"risk_overrides":{}}',
    })
    .onConflict((oc) => oc.columns(["org_id", "project_id"]).doNothing())
    .execute();
}

/**
 * Reads a tenant's settings; inside a transaction `lock` takes a row lock:
 * `share` (command acceptance: holds policy changes back until the command's report is out)
 * or `update` (settings changes: serialises them per tenant).
 * Call {@link ensureTenant} first; a missing row reads as defaults.
 */
export async function readSettings(db: Db, t: Tenant, lock?: "share" | "update"): Promise<TenantSettings> {
  let q = db
    .selectFrom("tenant_settings")
    .select(["profile", "persona", "skin", "compliance", "policy_version", "settings_version"])
    .where("org_id", "=", t.org_id)
    .where("project_id", "=", t.project_id);
  if (lock === "share") q = q.forShare();
  if (lock === "update") q = q.forUpdate();
  const row = await q.executeTakeFirst();
  if (!row)
    return toSettings({ profile: {}, persona: {}, skin: {}, compliance: {}, policy_version: 0, settings_version: 0 });
  return toSettings(row);
}

/**
 * Writes one settings section (the full new values) and bumps `settings_version`; a compliance
 * change also bumps `policy_version`. Call inside a transaction after `readSettings(…, "update")`.
 * @returns the settings after the write.
 */
export async function writeSection(
  db: Db,
  t: Tenant,
  section: SettingsSection,
  values: Record<string, unknown>,
): Promise<TenantSettings> {
  const col = COLUMN[section];
  const row = await db
    .updateTable("tenant_settings")
    .set({
      [col]: JSON.stringify(values),
      settings_version: sql`settings_version + 1`,
      policy_version: section === "compliance" ? sql`policy_version + 1` : sql`policy_version`,
      updated_at: new Date(),
    })
    .where("org_id", "=", t.org_id)
    .where("project_id", "=", t.project_id)
    .returning(["profile", "persona", "skin", "compliance", "policy_version", "settings_version"])
    .executeTakeFirstOrThrow();
  return toSettings(row);
}

/**
 * The effective risk of a command type under a tenant's overrides: the higher of the registry
 * default and the override (an override can raise a level, never lower it).
 * Source: CONTRACT.md "Risk levels".
 */
export function effectiveRisk(type: string, overrides: Record<string, RiskLevel>): RiskLevel {
  const base: RiskLevel = isCommandType(type) ? COMMAND_TYPES[type].risk : "RED";
  const o = overrides[type];
  return o ? maxRisk(base, o) : base;
}

/**
 * Checks requested overrides against the registry.
 * @returns the offending entries: unknown types and levels below a type's default.
 */
export function invalidOverrides(
  overrides: Record<string, RiskLevel>,
): { type: string; issue: "unknown_type" | "below_default"; default?: RiskLevel }[] {
  const bad: { type: string; issue: "unknown_type" | "below_default"; default?: RiskLevel }[] = [];
  for (const [type, level] of Object.entries(overrides)) {
    if (!isCommandType(type)) bad.push({ type, issue: "unknown_type" });
    else if (compareRisk(level, COMMAND_TYPES[type].risk) < 0)
      bad.push({ type, issue: "below_default", default: COMMAND_TYPES[type].risk });
  }
  return bad;
}
