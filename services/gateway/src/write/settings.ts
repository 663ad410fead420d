/**
 * The settings endpoints (docs/contract.md "Settings"): commit, then publish, with a recovery path.
 *
 * One short transaction writes the section and stores its `settings.updated` report in the
 * report outbox; after the commit the report is published and the outbox row deleted. A
 * publish that fails (or a process that dies first) leaves the row, and {@link startOutboxRelay}
 * publishes it later with the same `Nats-Msg-Id`. So a `settings.updated` never precedes its
 * commit and is never lost; reports carry the settings version, so a late one never undoes a
 * newer change on a client.
 *
 * | what happened                              | answer |
 * |--------------------------------------------|--------|
 * | committed (published now or by the relay)   | 202 (with `first_followup_report_id` when published now) |
 * | refused by `merge` (bad overrides, …)       | 400 with the standard body; nothing stored |
 * | Postgres unreachable before the commit      | 503 DEPENDENCY_UNAVAILABLE: nothing stored |
 * | the connection died during COMMIT           | 504 ACCEPT_UNCONFIRMED: it may be stored (repeating a settings change is harmless) |
 */
import { randomUUID } from "node:crypto";
import type { CompliancePatch, PhotoInfo, SettingsAccepted, SettingsSection, Tenant } from "@nexus/contracts";
import {
  AcceptUnconfirmed,
  AppError,
  type Database,
  DependencyUnavailable,
  deleteOutbox,
  invalidOverrides,
  isAppError,
  isPgUnavailable,
  leaseDueOutbox,
  type SettingsChange,
  updateSettings,
} from "@nexus/core";
import { buildHeaders, publishReport } from "@nexus/messaging";
import type { Transaction } from "kysely";
import { faultAt, type GatewayDeps } from "../deps.ts";

/**
 * Applies a change to one settings section (see the module doc).
 * @param merge computes the new section values from the current ones; may throw {@link AppError}.
 * @param beforeCommit more work in the same transaction (storing a photo's bytes).
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
  let change: SettingsChange;
  let committing = false;
  try {
    change = await deps.db.transaction().execute(async (trx) => {
      await faultAt(deps, "settings:in-transaction", { trx });
      if (beforeCommit) await beforeCommit(trx);
      const c = await updateSettings(trx, tenant, section, merge, { now: deps.now(), correlationId: corr });
      await faultAt(deps, "settings:before-commit", { trx });
      committing = true; // the callback is done: what fails from here on is the COMMIT itself
      return c;
    });
  } catch (err) {
    if (isAppError(err)) throw err;
    if (isPgUnavailable(err))
      throw committing
        ? new AcceptUnconfirmed("postgres", err, "commit")
        : new DependencyUnavailable("postgres", err, "commit");
    throw err;
  }
  await faultAt(deps, "settings:after-commit");
  let reportId: string | undefined;
  try {
    reportId = String((await publishReport(deps.js, change.report, deps.config.PUBLISH_TIMEOUT_MS)).seq);
    await deleteOutbox(deps.db, change.outboxId).catch((err) =>
      deps.logger.warn({ err }, "settings:outbox-delete-failed"),
    );
  } catch (err) {
    deps.logger.warn({ err, section }, "settings:report-deferred-to-relay");
  }
  await faultAt(deps, "settings:after-publish");
  return { accepted: true, correlation_id: corr, ...(reportId ? { first_followup_report_id: reportId } : {}) };
}

/** A running outbox relay. */
export interface OutboxRelay {
  /** One pass. @returns how many rows were published. */
  tick(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * Publishes report-outbox rows whose inline publish was lost: every `pollMs`, lease due rows
 * (`leaseDueOutbox`: one statement, SKIP LOCKED, no transaction held), publish each in id
 * order with its stored bytes and `Nats-Msg-Id`, delete it. A row that fails stays leased and
 * is retried when its lease ends.
 */
export function startOutboxRelay(
  deps: Pick<GatewayDeps, "db" | "js" | "logger" | "now" | "config">,
  o: { pollMs: number; leaseMs?: number; batch?: number },
): OutboxRelay {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<number> | undefined;
  const tick = async (): Promise<number> => {
    const rows = await leaseDueOutbox(deps.db, deps.now(), o.leaseMs ?? 10_000, o.batch ?? 100);
    let n = 0;
    for (const row of rows) {
      const tenant = { org_id: row.org_id, project_id: row.project_id };
      try {
        await deps.js.publish(row.subject, row.payload, {
          msgID: row.msg_id,
          headers: buildHeaders({ tenant, msgId: row.msg_id, correlationId: row.correlation_id }),
          timeout: deps.config.PUBLISH_TIMEOUT_MS,
        });
        await deleteOutbox(deps.db, row.id);
        n++;
      } catch (err) {
        deps.logger.warn({ err, msg_id: row.msg_id }, "outbox:publish-failed");
        break; // keep order: later rows wait for this one
      }
    }
    if (n > 0) deps.logger.info({ published: n }, "outbox:relayed");
    return n;
  };
  const loop = () => {
    if (stopped) return;
    running = tick().catch((err) => {
      deps.logger.warn({ err }, "outbox:poll-failed");
      return 0;
    });
    void running.then(() => {
      if (!stopped) timer = setTimeout(loop, o.pollMs);
    });
  };
  timer = setTimeout(loop, o.pollMs);
  return {
    tick,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}

/** Shallow merge of a PATCH body: absent keys keep their value. */
export function mergePatch(patch: Record<string, unknown>) {
  return (current: Record<string, unknown>) => ({
    ...current,
    ...Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)),
  });
}

/**
 * Merges a compliance patch: `risk_overrides` and `approvals_required` entries are set per
 * type; `ask_ttl_seconds: null` restores the deployment default.
 * @throws {AppError} `RISK_LOWERING_FORBIDDEN` when an override is below the type's default,
 *   `VALIDATION_FAILED` for an unknown command type.
 */
export function mergeCompliance(patch: CompliancePatch) {
  const bad = invalidOverrides(patch.risk_overrides ?? {});
  const unknownTypes = [
    ...bad.filter((b) => b.issue === "unknown_type").map((b) => `risk_overrides.${b.type}`),
    ...Object.keys(patch.approvals_required ?? {})
      .filter((t) => invalidOverrides({ [t]: "RED" }).length > 0)
      .map((t) => `approvals_required.${t}`),
  ];
  if (unknownTypes.length)
    throw new AppError(
      "VALIDATION_FAILED",
      "names unknown command types",
      unknownTypes.map((path) => ({ path, issue: "unknown command type" })),
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
    if (patch.approvals_required)
      next.approvals_required = {
        ...((current.approvals_required as Record<string, number>) ?? {}),
        ...patch.approvals_required,
      };
    if (patch.ask_ttl_seconds !== undefined) next.ask_ttl_seconds = patch.ask_ttl_seconds;
    if (patch.allow_self_approval !== undefined) next.allow_self_approval = patch.allow_self_approval;
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
