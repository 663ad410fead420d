/**
 * `@nexus/handlers`: the command handlers (one module per command type) and the providers and
 * connectors they use. Used by the command-worker only.
 */
import type { CommandType } from "@nexus/contracts";
import { calendarOptionsHandler } from "./calendar-options.ts";
import { docSummaryHandler } from "./doc-summary.ts";
import { draftEmailHandler } from "./draft-email.ts";
import { echoHandler } from "./echo.ts";
import { externalShareHandler } from "./external-share.ts";
import type { CommandHandler } from "./handler.ts";
import { prepPackHandler } from "./prep-pack.ts";

export * from "./calendar-options.ts";
export * from "./connectors/outbox.ts";
export * from "./connectors/share.ts";
export * from "./connectors/webhook-relay.ts";
export * from "./doc-summary.ts";
export * from "./draft-email.ts";
export * from "./echo.ts";
export * from "./external-share.ts";
export * from "./handler.ts";
export * from "./llm/breaker.ts";
export * from "./llm/client.ts";
export * from "./llm/errors.ts";
export * from "./llm/events.ts";
export * from "./llm/language.ts";
export * from "./llm/ledger.ts";
export * from "./llm/offline-provider.ts";
export * from "./llm/pricing.ts";
export * from "./llm/prompts.ts";
export * from "./llm/providers.ts";
export * from "./llm/router.ts";
export * from "./prep-pack.ts";

/**
 * The handler registry: a list of modules, one per command type of the contracts registry
 * (docs/contract.md "Command types"), looked up by `type`. A RED type's handler runs only as an
 * approved action; a type a tenant raised to RED runs its usual handler after approval.
 */
export const HANDLERS: readonly CommandHandler[] = [
  echoHandler,
  draftEmailHandler,
  prepPackHandler,
  docSummaryHandler,
  calendarOptionsHandler,
  externalShareHandler,
] as readonly CommandHandler<CommandType>[] as readonly CommandHandler[];

/** The handler of `type`, or `undefined`. */
export function handlerFor(type: string): CommandHandler | undefined {
  return HANDLERS.find((h) => h.type === type);
}
