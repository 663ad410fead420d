/**
 * `POST /sidecar/command` (docs/contract.md, LOCKED): publish first, answer honestly.
 *
 * The command is published to `nexus.cmd.<org>.<project>.<command_id>` with
 * `Nats-Expected-Last-Subject-Sequence: 0` and `Nats-Msg-Id` `<org>.<project>.<command_id>`:
 * JetStream stores at most one message per command id, atomically, so the publish itself is the
 * idempotency check (docs/architecture.md invariant 1: 202 only after the PubAck). That one
 * PubAck is the whole durable work of an accept: no database is touched and no report is
 * published here. The command-worker owns the command's row and every report about it,
 * `command.accepted` included (docs/architecture.md, "The write path"), so the 202 carries no
 * `first_followup_report_id` (the contract makes it optional); clients follow the command on the
 * stream by its `command_id`.
 *
 * | what happened to the publish                       | answer                                  |
 * |----------------------------------------------------|-----------------------------------------|
 * | PubAck                                             | 202                                     |
 * | refused by the server, or NATS disconnected        | 503 DEPENDENCY_UNAVAILABLE: nothing stored, never runs |
 * | no PubAck in time / connection lost meanwhile      | 504 ACCEPT_UNCONFIRMED: may run; a retry learns the outcome |
 * | the command id is taken (sequence check, or dedup) | read the stored command: same body → the same 202; another body → 409 |
 */
import { randomUUID } from "node:crypto";
import {
  COMMAND_TYPES,
  type CommandAccepted,
  CommandMessage,
  HEADERS,
  isCommandType,
  type NormalisedCommand,
  STREAMS,
  subjects,
  type Tenant,
  zodDetails,
} from "@nexus/contracts";
import { AcceptUnconfirmed, AppError, commandBodyHash, commandMsgId, DependencyUnavailable } from "@nexus/core";
import { newTraceparent, publishGuarded } from "@nexus/messaging";
import { faultAt, type GatewayDeps } from "../deps.ts";

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
    throw new AppError(
      "UNKNOWN_COMMAND_TYPE",
      `Unknown command type ${JSON.stringify(c.type)}`,
      [{ path: "type", issue: `must be one of ${Object.keys(COMMAND_TYPES).join(", ")}` }],
      { stage: "validate" },
    );
  const r = COMMAND_TYPES[c.type].params.safeParse(c.params);
  if (!r.success)
    throw new AppError("VALIDATION_FAILED", `params do not fit ${c.type}`, zodDetails(r.error, "params"), {
      stage: "validate",
    });
  return {
    command_id: c.command_id ?? randomUUID(),
    type: c.type,
    context: c.context,
    params: c.params,
    correlation_id: c.correlation_id ?? `corr-${randomUUID()}`,
    ...(c.surface ? { surface: c.surface } : {}),
  };
}

/**
 * Accepts a command durably and idempotently on `command_id` (see the module doc).
 * @returns the 202 body; for the same command id and body again, the first one's ids.
 * @throws {AppError} 409 `IDEMPOTENCY_CONFLICT` (same id, another body); {@link DependencyUnavailable}
 *   (503, nothing stored); {@link AcceptUnconfirmed} (504, may be stored).
 */
export async function acceptCommand(
  deps: GatewayDeps,
  tenant: Tenant,
  principal: string,
  cmd: ValidCommand,
  incomingTraceparent?: string,
): Promise<CommandAccepted> {
  const bodyHash = commandBodyHash(cmd);
  // One trace for the request: the command and all that follows from it.
  const traceparent = incomingTraceparent ?? newTraceparent();
  const message: CommandMessage = {
    v: 1,
    kind: "command",
    tenant,
    command_id: cmd.command_id,
    type: cmd.type,
    context: cmd.context,
    params: cmd.params,
    correlation_id: cmd.correlation_id,
    ...(cmd.surface ? { surface: cmd.surface } : {}),
    accepted_at: deps.now().toISOString(),
    principal,
    body_hash: bodyHash,
    traceparent,
  };
  const subject = subjects.command(tenant, cmd.command_id);
  await faultAt(deps, "accept:before-command-publish");
  const out = await publishGuarded(
    deps.js,
    subject,
    JSON.stringify(message),
    {
      tenant,
      msgId: commandMsgId(tenant, cmd.command_id),
      correlationId: cmd.correlation_id,
      traceparent,
      extra: { [HEADERS.kind]: "command", [HEADERS.commandType]: cmd.type },
    },
    { expectLastSubjectSequence: 0, timeoutMs: deps.config.PUBLISH_TIMEOUT_MS, connected: deps.natsConnected },
  );
  if (out.kind === "refused") throw new DependencyUnavailable("nats", out.cause, "publish");
  if (out.kind === "unconfirmed") throw new AcceptUnconfirmed("nats", out.cause, "publish");
  // A conflict, or a duplicate msg id inside the window (which says nothing about the body):
  // the command id is taken; the stored command decides between "the same 202" and 409.
  if (out.kind === "conflict" || out.duplicate) return existingCommand(deps, tenant, cmd, bodyHash);
  await faultAt(deps, "accept:after-command-publish");
  return accepted(message);
}

/** The 202 body for a stored command (the same for every acceptance of it). */
function accepted(m: CommandMessage): CommandAccepted {
  return { accepted: true, status: "accepted", command_id: m.command_id, correlation_id: m.correlation_id };
}

/**
 * The command id is taken: compare the stored command's body with this one.
 * - same body → the same 202 (the stored command's correlation id);
 * - another body → 409 `IDEMPOTENCY_CONFLICT`;
 * - the stored command cannot be read → 504 (it exists, but whether it is this one is unknown).
 */
async function existingCommand(
  deps: GatewayDeps,
  tenant: Tenant,
  cmd: ValidCommand,
  bodyHash: string,
): Promise<CommandAccepted> {
  let stored: CommandMessage | undefined;
  try {
    const last = await deps.readLast(STREAMS.commands, subjects.command(tenant, cmd.command_id));
    if (last) {
      const parsed = CommandMessage.safeParse(JSON.parse(last.body));
      if (parsed.success) stored = parsed.data;
    }
  } catch (err) {
    throw new AcceptUnconfirmed("nats", err, "publish");
  }
  if (!stored) throw new AcceptUnconfirmed("nats", new Error("the stored command could not be read"), "publish");
  if (stored.body_hash !== bodyHash)
    throw new AppError("IDEMPOTENCY_CONFLICT", undefined, undefined, { stage: "validate" });
  return accepted(stored);
}
