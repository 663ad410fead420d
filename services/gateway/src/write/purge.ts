/**
 * The tenant purge (`DELETE /admin/tenants/{org_id}/{project_id}`, docs/archive.md "Purge"):
 * erasure of one tenant's data in Postgres and JetStream, with a report of its own and an
 * audit entry. No transaction is held across a network call:
 *
 * 1. Read W, the tenant's newest report_id (JetStream). Fails → 503, nothing done.
 * 2. Postgres (`purgeTenant` of core): one transaction sets the tenant's purge mark to W (no
 *    read shows an archived report ≤ W from then on; the archiver drops late ones), deletes
 *    commands, asks, history, settings, photo and outboxes, appends the audit entry and stores
 *    the `tenant.purged` report in the report outbox; then the archive rows ≤ W go in batches.
 *    Fails in the transaction → 503, nothing done.
 * 3. JetStream: the tenant's reports below W+1, and all its commands, ask registers,
 *    notifications and dead letters. Fails → 504 ACCEPT_UNCONFIRMED: Postgres is erased,
 *    JetStream maybe not all; repeating the request finishes it (every step is idempotent and
 *    W only grows).
 * 4. Publish `tenant.purged` (report_id > W) and drop its outbox row; if the publish fails the
 *    outbox relay publishes it after its lease (60 s), so every screen still learns of it.
 *
 * | what happened                              | answer |
 * |--------------------------------------------|--------|
 * | everything                                 | 200 with the counts (and the report's id when published now) |
 * | JetStream or Postgres unreachable at 1 / 2 | 503 DEPENDENCY_UNAVAILABLE: nothing erased |
 * | JetStream failed at 3                      | 504 ACCEPT_UNCONFIRMED: repeat the request |
 */
import { randomUUID } from "node:crypto";
import { type PurgeResult, STREAMS, subjects, type Tenant } from "@nexus/contracts";
import { AcceptUnconfirmed, DependencyUnavailable, deleteOutbox, isPgUnavailable, purgeTenant } from "@nexus/core";
import { publishReport } from "@nexus/messaging";
import { faultAt, type GatewayDeps } from "../deps.ts";

/** The JetStream streams a purge empties of the tenant, with the filter of its subjects there. */
function jetStreamTargets(t: Tenant, w: number): { key: string; stream: string; filter: string; below?: number }[] {
  return [
    { key: "nats_reports", stream: STREAMS.reports, filter: subjects.tenantFilter("report", t), below: w + 1 },
    { key: "nats_commands", stream: STREAMS.commands, filter: subjects.tenantFilter("cmd", t) },
    { key: "nats_approvals", stream: STREAMS.approvals, filter: subjects.tenantFilter("approval", t) },
    { key: "nats_notifications", stream: STREAMS.notify, filter: subjects.tenantFilter("notify", t) },
    { key: "nats_dead_letters", stream: STREAMS.dlq, filter: subjects.tenantFilter("dlq", t) },
  ];
}

/**
 * Purges a tenant everywhere (see the module doc).
 * @throws {DependencyUnavailable} (503) before anything was erased; {@link AcceptUnconfirmed}
 *   (504) when Postgres was erased but JetStream did not confirm its part.
 */
export async function purgeTenantEverywhere(
  deps: GatewayDeps,
  tenant: Tenant,
  principal: string,
  correlationId: string | undefined,
): Promise<PurgeResult> {
  const corr = correlationId ?? `corr-${randomUUID()}`;
  let w: number;
  try {
    w = (await deps.readLast(STREAMS.reports, subjects.report(tenant)))?.seq ?? 0;
  } catch (err) {
    throw new DependencyUnavailable("nats", err, "purge");
  }
  let out: Awaited<ReturnType<typeof purgeTenant>>;
  try {
    out = await purgeTenant(deps.db, {
      tenant,
      reportsThrough: w,
      principal,
      correlationId: corr,
      now: deps.now(),
    });
  } catch (err) {
    if (isPgUnavailable(err)) throw new DependencyUnavailable("postgres", err, "purge");
    throw err;
  }
  deps.logger.warn(
    { org_id: tenant.org_id, project_id: tenant.project_id, principal, reports_through: w, counts: out.row.counts },
    "tenant:purged-postgres",
  );
  await faultAt(deps, "purge:after-db");
  const counts: Record<string, number> = { ...out.row.counts };
  try {
    for (const target of jetStreamTargets(tenant, w))
      counts[target.key] = await deps.purge(target.stream, target.filter, target.below);
  } catch (err) {
    deps.logger.error({ err, org_id: tenant.org_id, project_id: tenant.project_id }, "tenant:purge-jetstream-failed");
    throw new AcceptUnconfirmed("nats", err, "purge");
  }
  await faultAt(deps, "purge:after-jetstream");
  let reportId: string | undefined;
  const pending = out.effects.reports[0];
  if (pending) {
    try {
      reportId = String((await publishReport(deps.js, pending, deps.config.PUBLISH_TIMEOUT_MS)).seq);
      await deleteOutbox(deps.db, out.row.outboxId).catch((err) =>
        deps.logger.warn({ err }, "purge:outbox-delete-failed"),
      );
    } catch (err) {
      deps.logger.warn({ err }, "purge:report-deferred-to-relay");
    }
  }
  return {
    purged: true,
    org_id: tenant.org_id,
    project_id: tenant.project_id,
    reports_through: String(w),
    counts,
    ...(reportId ? { report_id: reportId } : {}),
    correlation_id: corr,
  };
}
