import { calendarOptionsHandler } from "./calendar-options.ts";
import { docSummaryHandler } from "./doc-summary.ts";
import { draftEmailHandler } from "./draft-email.ts";
import { prepPackHandler } from "./prep-pack.ts";

/**
 * The handler modules of the GREEN command types (CONTRACT.md "Command types"), one per
 * type. The worker looks a handler up by `type`, parses the params with `handler.params`
 * and calls `handler.handle(params, ctx)`.
 */
export const greenHandlers = [draftEmailHandler, prepPackHandler, docSummaryHandler, calendarOptionsHandler] as const;

/** One of {@link greenHandlers}. */
export type GreenHandler = (typeof greenHandlers)[number];
