import { ExternalShareResult } from "@nexus/contracts";
import { shareIdOf } from "./connectors/share.ts";
import { defineHandler, HandlerError } from "./handler.ts";

/**
 * `external_share.prepare` (RED by default): hands the share to the share connector with the
 * deterministic share id `share-<ask_id>`, so running it again after a crash never creates a
 * second share. It runs only as an approved ask's action (`ctx.approval`); reaching it
 * without one would be a policy bug, so it refuses (docs/architecture.md invariant 2).
 * @throws {HandlerError} `HANDLER_FAILED` (permanent) without an approval; the connector's
 *   `ConnectorError`s (the worker maps a permanent one to `CONNECTOR_FAILED`).
 */
export const externalShareHandler = defineHandler("external_share.prepare", async (p, ctx) => {
  if (!ctx.approval)
    throw new HandlerError("HANDLER_FAILED", "external_share.prepare runs only after an approval", false);
  const result = await ctx.connectors.share.share(
    {
      share_id: shareIdOf(ctx.approval.askId),
      tenant: ctx.tenant,
      ask_id: ctx.approval.askId,
      command_id: ctx.commandId,
      recipient: p.recipient,
      channel: p.channel,
      resource: p.resource,
      ...(p.message !== undefined ? { message: p.message } : {}),
    },
    ctx.signal,
  );
  return ExternalShareResult.parse(result);
});
