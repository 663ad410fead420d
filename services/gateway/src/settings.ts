import { randomUUID } from "node:crypto";
import type { CompliancePatch, PhotoInfo, SettingsAccepted, SettingsSection, Tenant } from "@nexus/contracts";
import {
  AppError,
  type Database,
  DependencyUnavailable,
  ensureTenant,
  invalidOverrides,
  isNatsConnected,
  readSettings,
  type TenantSettings,
  writeSection,
} from "@nexus/platform";
import type { Transaction } from "kysely";
import type { GatewayDeps } from "./deps.ts";

const TITLES: Record<SettingsSection, string> = {
  profile: "Profile updated",
  persona: "Assistant persona updated",
  skin: "Assistant skin updated",
  compliance: "Compliance settings updated",
};

/** The stored values of a section as `settings.updated` carries them. */
function sectionValues(s: TenantSettings, section: SettingsSection): Record<string, unknown> {
  if (section === "compliance") return { ...s.compliance };
  return s[section];
}

/**
 * Applies a change to one settings section and publishes `settings.updated` with the section's
 * full new values (so re-applying the report is harmless).
 *
 * In one transaction: lock the tenant's settings row (changes are serialised per tenant, and
 * wait for commands being accepted under the old policy), compute and write the new values,
 * publish the report, commit. A publish failure rolls back: 503 and nothing changed.
 *
 * @param merge computes the new section values from the current ones; may throw {@link AppError}.
 * @param beforeCommit work inside the same transaction before publishing (e.g. storing a photo).
 */
export async function applySettings(
  deps: GatewayDeps,
  tenant: Tenant,
  section: SettingsSection,
  correlationId: string | undefined,
  merge: (current: Record<string, unknown>) => Record<string, unknown>,
  beforeCommit?: (trx: Transaction<Database>) => Promise<void>,
): Promise<SettingsAccepted> {
  const corr = correlationId ?? `corr-${randomUUID()}`;
  if (!isNatsConnected(deps.nc)) throw new DependencyUnavailable("nats", new Error("NATS disconnected"));
  await ensureTenant(deps.db, tenant);
  return deps.db.transaction().execute(async (trx) => {
    const current = await readSettings(trx, tenant, "update");
    const values = merge(sectionValues(current, section));
    if (beforeCommit) await beforeCommit(trx);
    const next = await writeSection(trx, tenant, section, section === "compliance" ? stripVersion(values) : values);
    let reportId: string;
    try {
      reportId = await deps.reports.publish({
        tenant,
        entityId: "settings",
        step: String(next.settings_version),
        report: {
          type: "settings.updated",
          status: "done",
          title: TITLES[section],
          section,
          values: sectionValues(next, section),
        },
        causality: { correlation_id: corr },
        ts: deps.now().toISOString(),
      });
    } catch (err) {
      throw new DependencyUnavailable("nats", err);
    }
    return { accepted: true, correlation_id: corr, first_followup_report_id: reportId };
  });
}

function stripVersion(v: Record<string, unknown>): Record<string, unknown> {
  const { policy_version: _ignored, ...rest } = v;
  return rest;
}

/** Shallow merge of a PATCH body: absent keys keep their value. */
export function mergePatch(patch: Record<string, unknown>) {
  return (current: Record<string, unknown>) => ({
    ...current,
    ...Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)),
  });
}

/**
 * Merges a compliance patch: `risk_overrides` entries are set per type (an override equal to
 * the default is kept, harmlessly); `ask_ttl_seconds: null` restores the deployment default.
 * @throws {AppError} `RISK_LOWERING_FORBIDDEN` when an override is below the type's default,
 *   `VALIDATION_FAILED` for an unknown command type.
 */
export function mergeCompliance(patch: CompliancePatch) {
  const bad = invalidOverrides(patch.risk_overrides ?? {});
  const unknown = bad.filter((b) => b.issue === "unknown_type");
  if (unknown.length)
    throw new AppError(
      "VALIDATION_FAILED",
      "risk_overrides names unknown command types",
      unknown.map((b) => ({ path: `risk_overrides.${b.type}`, issue: "unknown command type" })),
    );
  const lower = bad.filter((b) => b.issue === "below_default");
  if (lower.length)
    throw new AppError(
      "RISK_LOWERING_FORBIDDEN",
      undefined,
      lower.map((b) => ({ path: `risk_overrides.${b.type}`, issue: `must be at least ${b.default}` })),
    );
  return (current: Record<string, unknown>) => {
    const next: Record<string, unknown> = { ...current };
    if (patch.risk_overrides)
      next.risk_overrides = { ...((current.risk_overrides as Record<string, string>) ?? {}), ...patch.risk_overrides };
    if (patch.ask_ttl_seconds !== undefined) next.ask_ttl_seconds = patch.ask_ttl_seconds;
    return next;
  };
}

/** Profile photo metadata for the profile section; `url` serves the bytes. */
export function photoInfo(
  tenant: Tenant,
  sha256: string,
  contentType: PhotoInfo["content_type"],
  bytes: number,
): PhotoInfo {
  const q = new URLSearchParams({ org_id: tenant.org_id, project_id: tenant.project_id, v: sha256.slice(0, 12) });
  return { url: `/profile/photo?${q}`, content_type: contentType, bytes, sha256 };
}
