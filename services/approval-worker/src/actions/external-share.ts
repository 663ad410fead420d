import { ExternalShareParams, ExternalShareResult } from "@nexus/contracts";
import { shareIdOf } from "../connector/types.ts";
import { handlerActions } from "./command-handlers.ts";
import type { ActionModule } from "./types.ts";

/**
 * `external_share.prepare`: hands the share to the connector with the deterministic share id
 * `share-<ask_id>`, so a re-execution never creates a second share.
 */
export const externalShareAction: ActionModule<ExternalShareParams, ExternalShareResult> = {
  type: "external_share.prepare",
  params: ExternalShareParams,
  async execute(p, ctx) {
    const result = await ctx.connector.share(
      {
        share_id: shareIdOf(ctx.ask.ask_id),
        tenant: ctx.tenant,
        ask_id: ctx.ask.ask_id,
        command_id: ctx.ask.command_id,
        recipient: p.recipient,
        channel: p.channel,
        resource: p.resource,
        ...(p.message !== undefined ? { message: p.message } : {}),
      },
      ctx.signal,
    );
    return ExternalShareResult.parse(result);
  },
};

/**
 * The actions this worker can run, as a list (not a switch): the external share, and every
 * GREEN handler for types a tenant raised to RED.
 */
export const DEFAULT_ACTIONS: ActionModule[] = [externalShareAction as ActionModule, ...handlerActions()];
