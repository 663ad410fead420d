import { randomUUID } from "node:crypto";
import {
  COMMAND_TYPES,
  type CommandAccepted,
  type CommandMessage,
  isCommandType,
  msgId,
  type NormalisedCommand,
  subjects,
  type Tenant,
  zodDetails,
} from "@nexus/contracts";
import {
  AppError,
  acceptedReport,
  type CommandRow,
  commandBodyHash,
  DependencyUnavailable,
  effectiveRisk,
  ensureTenant,
  getCommand,
  insertCommand,
  isNatsConnected,
  publishJson,
  readSettings,
  setAcceptedReportId,
} from "@nexus/platform";
import type { GatewayDeps } from "./deps.ts";

/** A validated command ready for acceptance. */
export interface ValidCommand {
  command_id: string;
  type: string;
  context: Record<string, unknown>;
  /** The params as sent (the stored and published form: handlers re-parse them). */
  params: Record<string, unknown>;
  correlation_id: string;
  surface?: string;
}

/**
 * Checks a normalised command against the registry and fills generated ids.
 * @throws {AppError} `UNKNOWN_COMMAND_TYPE` (path `type`) or `VALIDATION_FAILED` with
 *   `params.*` details.
 */
export function validateCommand(c: NormalisedCommand): ValidCommand {
  if (!isCommandType(c.type))
    throw new AppError("UNKNOWN_COMMAND_TYPE", `Unknown command type ${JSON.stringify(c.type)}`, [
      { path: "type", issue: `must be one of ${Object.keys(COMMAND_TYPES).join(", ")}` },
    ]);
  const r = COMMAND_TYPES[c.type].params.safeParse(c.params);
  if (!r.success) throw new AppError("VALIDATION_FAILED", `params do not fit ${c.type}`, zodDetails(r.error, "params"));
  return {
    command_id: c.command_id ?? randomUUID(),
    type: c.type,
    context: c.context,
    params: c.params,
    correlation_id: c.correlation_id ?? `corr-${randomUUID()}`,
    surface: c.surface,
  };
}

function messageFromRow(row: CommandRow, tenant: Tenant, askTtlSeconds: number): CommandMessage {
  return {
    v: 1,
    tenant,
    command_id: row.command_id,
    type: row.type,
    context: row.context,
    params: row.params,
    correlation_id: row.correlation_id,
    ...(row.surface ? { surface: row.surface } : {}),
    risk_level: row.risk_level as CommandMessage["risk_level"],
    policy_version: row.policy_version,
    ask_ttl_seconds: askTtlSeconds,
    accepted_at: row.accepted_at.toISOString(),
    principal: row.principal,
  };
}

/**
 * Accepts a command durably (ARCHITECTURE.md invariant 1) and idempotently on `command_id`.
 *
 * In one transaction: share-lock the tenant's settings (a policy change waits until this
 * command's report is out, so "policy changes apply to commands accepted after
 * settings.updated"), insert the command row (a concurrent duplicate blocks on it), publish the
 * command with `Nats-Msg-Id`, publish `command.accepted`, record its report_id, commit.
 * Any publish failure rolls everything back: 503 and nothing accepted.
 *
 * @returns the 202 body; the same body again for the same command_id and body.
 * @throws {AppError} `IDEMPOTENCY_CONFLICT` (409) for the same id with another body;
 *   {@link DependencyUnavailable} (503) when NATS gives no PubAck.
 */
export async function acceptCommand(
  deps: GatewayDeps,
  tenant: Tenant,
  principal: string,
  cmd: ValidCommand,
): Promise<CommandAccepted> {
  const bodyHash = commandBodyHash(cmd);
  if (!isNatsConnected(deps.nc)) throw new DependencyUnavailable("nats", new Error("NATS disconnected"));
  await ensureTenant(deps.db, tenant);
  return deps.db.transaction().execute(async (trx) => {
    const settings = await readSettings(trx, tenant, "share");
    const askTtl = settings.compliance.ask_ttl_seconds ?? deps.config.ASK_TTL_SECONDS;
    const fresh: CommandMessage = {
      v: 1,
      tenant,
      command_id: cmd.command_id,
      type: cmd.type,
      context: cmd.context,
      params: cmd.params,
      correlation_id: cmd.correlation_id,
      ...(cmd.surface ? { surface: cmd.surface } : {}),
      risk_level: effectiveRisk(cmd.type, settings.compliance.risk_overrides),
      policy_version: settings.policy_version,
      ask_ttl_seconds: askTtl,
      accepted_at: deps.now().toISOString(),
      principal,
    };
    let message = fresh;
    const inserted = await insertCommand(trx, fresh, bodyHash);
    if (!inserted) {
      const existing = await getCommand(trx, tenant, cmd.command_id);
      if (!existing) throw new Error("command row vanished during acceptance");
      if (existing.body_hash !== bodyHash) throw new AppError("IDEMPOTENCY_CONFLICT");
      if (existing.accepted_report_id)
        return {
          accepted: true,
          command_id: existing.command_id,
          first_followup_report_id: existing.accepted_report_id,
          correlation_id: existing.correlation_id,
        };
      // Known but its accepted report is not recorded (a worker inserted it after an earlier
      // attempt's rollback): publish again; Nats-Msg-Id makes both publishes idempotent.
      message = messageFromRow(existing, tenant, askTtl);
    }
    let reportId: string;
    try {
      await publishJson(
        deps.js,
        subjects.command(tenant, message.type),
        message,
        { tenant, msgId: msgId(tenant, message.command_id), correlationId: message.correlation_id },
        deps.config.PUBLISH_TIMEOUT_MS,
      );
      reportId = await deps.reports.publish({
        tenant,
        entityId: message.command_id,
        step: "accepted",
        report: acceptedReport(message),
        causality: { correlation_id: message.correlation_id, command_id: message.command_id },
        ts: message.accepted_at,
      });
    } catch (err) {
      throw new DependencyUnavailable("nats", err);
    }
    await setAcceptedReportId(trx, tenant, message.command_id, reportId);
    return {
      accepted: true,
      command_id: message.command_id,
      first_followup_report_id: reportId,
      correlation_id: message.correlation_id,
    };
  });
}
