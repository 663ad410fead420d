import type { DraftEmailResult, Persona, Profile } from "@nexus/contracts";
import {
  answerOffline,
  type DraftEmailRequest,
  defineHandler,
  type HandlerContext,
  llmCallOf,
  type ParamsOf,
} from "./handler.ts";
import { baseLanguage, chooseLanguage } from "./llm/language.ts";
import { OfflineDraftProvider } from "./llm/offline-provider.ts";
import { DraftAnswer, draftSystemPrompt, draftUserMessage } from "./llm/prompts.ts";

/** The tone used when neither the command nor the persona names one. */
export const DEFAULT_TONE = "neutral";
/** The language used when the brief, the command and the profile say nothing. */
export const DEFAULT_LANGUAGE = "en";
/** Output tokens a draft may use. */
export const DRAFT_MAX_OUTPUT_TOKENS = 1500;
/** Live-progress stage of a draft being written. */
export const DRAFT_STAGE = "drafting";

const offline = new OfflineDraftProvider();

/**
 * What a draft is written from: the language ({@link chooseLanguage}: a Hangul brief → `ko`;
 * else `params.language`; else the profile's `locale`; else `en`), the tone (`params.tone`, else
 * the persona's, else neutral) and the sender (the profile's `display_name`).
 */
export function draftRequest(
  params: ParamsOf<"draft_email.create">,
  profile: Profile,
  persona: Persona,
): DraftEmailRequest {
  return {
    ...(params.to !== undefined ? { to: params.to } : {}),
    ...(params.subject !== undefined ? { subject: params.subject } : {}),
    brief: params.brief,
    tone: params.tone ?? persona.tone ?? DEFAULT_TONE,
    language: chooseLanguage({
      text: params.brief,
      ...(params.language ? { requested: params.language } : {}),
      ...(profile.locale ? { locale: profile.locale } : {}),
    }),
    ...(profile.display_name?.trim() ? { senderName: profile.display_name.trim() } : {}),
  };
}

/** The offline draft (template, language-aware), as a result. */
async function offlineDraft(req: DraftEmailRequest, ctx: HandlerContext): Promise<DraftEmailResult> {
  const d = await offline.draftEmail(req, ctx.signal);
  return { subject: d.subject, body: d.body, language: baseLanguage(req.language), provider: offline.name };
}

/**
 * `draft_email.create`: a draft `{ subject, body, language, provider, model? }` in the brief's
 * language ({@link draftRequest}), in the persona's tone and following its instructions, signed
 * with the profile's display name.
 *
 * - With model providers configured: the chain writes it (prompts.ts: the brief, persona and
 *   names go in the delimited user message, never the system text); the body streams as live
 *   progress (stage {@link DRAFT_STAGE}); a missing signature is appended.
 * - Without (or when every provider failed and `offline` ends the chain): the offline template
 *   provider, `provider: "offline"`.
 * - Errors: the chain's `LLM_*` codes (see `LlmClient.generate`); `VALIDATION_FAILED` for a
 *   brief without words (offline).
 */
export const draftEmailHandler = defineHandler("draft_email.create", async (params, ctx): Promise<DraftEmailResult> => {
  const req = draftRequest(params, ctx.profile, ctx.persona);
  if (ctx.llm.providers.length === 0) return offlineDraft(req, ctx);
  ctx.live({ stage: DRAFT_STAGE, percent: 0 });
  try {
    const r = await ctx.llm.generate(
      {
        task: "draft_email",
        system: draftSystemPrompt(req.tone, req.language),
        user: draftUserMessage({
          ...(req.to ? { to: req.to } : {}),
          ...(req.subject ? { subject: req.subject } : {}),
          brief: req.brief,
          ...(req.senderName ? { senderName: req.senderName } : {}),
          persona: {
            ...(ctx.persona.name ? { name: ctx.persona.name } : {}),
            ...(ctx.persona.instructions ? { instructions: ctx.persona.instructions } : {}),
          },
        }),
        schema: DraftAnswer,
        maxOutputTokens: DRAFT_MAX_OUTPUT_TOKENS,
        streamField: "body",
      },
      llmCallOf(ctx, DRAFT_STAGE),
    );
    const body =
      req.senderName && !r.value.body.includes(req.senderName) ? `${r.value.body}\n\n${req.senderName}` : r.value.body;
    return {
      subject: req.subject ?? r.value.subject,
      body,
      language: baseLanguage(req.language),
      provider: r.provider,
      model: r.model,
    };
  } catch (err) {
    if (!answerOffline(ctx, err)) throw err;
    ctx.logger.warn({ err }, "draft:offline-fallback");
    return offlineDraft(req, ctx);
  }
});
