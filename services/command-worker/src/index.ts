/**
 * Public entry of the command-worker package: the handler modules and the drafting provider,
 * so that the approval-worker can run a type a tenant raised to RED after its approval with the
 * very same handler.
 */
export type { CommandHandler, DraftEmailRequest, HandlerContext, LlmProvider } from "./handler.ts";
export { HandlerError, isHandlerError } from "./handler.ts";
export { greenHandlers } from "./handlers/index.ts";
export { OfflineDraftProvider } from "./llm/offline-provider.ts";
