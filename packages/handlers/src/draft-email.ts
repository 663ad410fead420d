import { DraftEmailParams, DraftEmailResult } from "@nexus/contracts";
import { defineHandler, HandlerError } from "./handler.ts";

/** The tone used when the command does not name one. */
export const DEFAULT_TONE = "neutral";
/** The language used when the command does not name one. */
export const DEFAULT_LANGUAGE = "en";

/**
 * `draft_email.create`: asks the context's language-model provider (`ctx.llm`) for a draft
 * and checks what comes back.
 *
 * - Input: {@link DraftEmailParams} (`brief` required; `tone` defaults to {@link DEFAULT_TONE},
 *   `language` to {@link DEFAULT_LANGUAGE}; `to` and `subject` are passed through).
 * - Output: {@link DraftEmailResult} `{ subject, body }`, both non-blank.
 * - Errors: whatever the provider throws (a {@link HandlerError} with `retryable: true` for
 *   transient provider failures); `HANDLER_FAILED` with `retryable: true` when the provider's
 *   answer is not a `{subject, body}` pair of non-blank strings, since a model may answer
 *   differently on the next attempt.
 */
export const draftEmailHandler = defineHandler("draft_email.create", async (params, ctx) => {
  const draft = await ctx.llm.draftEmail(
    {
      to: params.to,
      subject: params.subject,
      brief: params.brief,
      tone: params.tone ?? DEFAULT_TONE,
      language: params.language ?? DEFAULT_LANGUAGE,
    },
    ctx.signal,
  );
  const checked = DraftEmailResult.safeParse(draft);
  if (!checked.success || checked.data.subject.trim() === "" || checked.data.body.trim() === "") {
    throw new HandlerError(
      "HANDLER_FAILED",
      `The drafting provider "${ctx.llm.name}" returned no usable draft (a non-blank subject and body are required)`,
      true,
    );
  }
  return { subject: checked.data.subject, body: checked.data.body };
});
