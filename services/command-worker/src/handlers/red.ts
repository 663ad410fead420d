import { ExternalShareParams } from "@nexus/contracts";
import { type CommandHandler, HandlerError } from "../handler.ts";

/**
 * `external_share.prepare` (RED): the command-worker never runs it; it creates an Ask and the
 * approval-worker executes the share after an approve decision. The module exists so the
 * registry lists every type; `handle` refuses to run, which would only happen if a policy bug
 * let a RED command through.
 */
export const externalShareHandler: CommandHandler = {
  type: "external_share.prepare",
  params: ExternalShareParams,
  risk: "RED",
  async handle() {
    throw new HandlerError("HANDLER_FAILED", "external_share.prepare runs only after an approval", false);
  },
};

/** Handlers of RED types (held for approval, executed by the approval-worker). */
export const redHandlers: readonly CommandHandler[] = [externalShareHandler];
