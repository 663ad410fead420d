import {
  type CommandHandler,
  greenHandlers,
  isHandlerError,
  type LlmProvider,
  OfflineDraftProvider,
} from "@nexus/command-worker";
import { apiError } from "@nexus/contracts";
import { ActionError, type ActionModule } from "./types.ts";

/**
 * Wraps a command-worker handler as an approved action, for types a tenant's compliance
 * policy raised to RED (CONTRACT.md "A tenant's compliance settings can raise any type's
 * level"): the command-worker holds such a command as an ask, and after approval the very same
 * handler runs here, with the approved params.
 *
 * A `HandlerError` with `retryable: false` fails the ask with the handler's own code (e.g.
 * `INSUFFICIENT_SLOTS`); a retryable one, or any other error, is transient and retried with
 * backoff. The handlers compute a result without outside effects, so running one again after a
 * crash is harmless; the result is recorded once by the conditional `executing → done` update.
 */
export function handlerAction(h: CommandHandler, llm: LlmProvider): ActionModule {
  return {
    type: h.type,
    params: h.params,
    async execute(params, ctx) {
      try {
        return await h.handle(params, {
          logger: ctx.logger,
          signal: ctx.signal,
          tenant: ctx.tenant,
          commandId: ctx.ask.command_id,
          // Everything that follows a decision carries the decision's correlation id (LOCKED rule 4).
          correlationId: ctx.ask.decision_correlation_id ?? ctx.ask.correlation_id,
          now: ctx.now,
          llm,
          progress: ctx.progress,
        });
      } catch (err) {
        if (isHandlerError(err)) throw new ActionError(apiError(err.code, err.message), err.retryable, { cause: err });
        throw err;
      }
    },
  };
}

/** Every GREEN handler as an action (the default drafting provider is the offline one). */
export function handlerActions(llm: LlmProvider = new OfflineDraftProvider()): ActionModule[] {
  return greenHandlers.map((h) => handlerAction(h as CommandHandler, llm));
}
