import type { PrepPackParams, PrepPackResult } from "@nexus/contracts";
import { answerOffline, defineHandler, HandlerError, llmCallOf } from "./handler.ts";
import { baseLanguage } from "./llm/language.ts";
import { dataMessage, PrepPackAnswer, prepPackSystemPrompt } from "./llm/prompts.ts";

/** Minutes suggested per agenda item in the time-box checklist entry. */
export const MINUTES_PER_AGENDA_ITEM = 10;
/** Minutes suggested at the end of the meeting for decisions and next steps. */
export const WRAP_UP_MINUTES = 5;

const list = new Intl.ListFormat("en", { style: "long", type: "conjunction" });

/**
 * Builds a meeting prep pack from the command's params alone (deterministic, no I/O).
 *
 * Checklist, in this order:
 * 1. "Share the agenda with all attendees: …" (every attendee by name);
 * 2. "Confirm attendance: …" (every attendee by name);
 * 3. one "Read: <title>" per document (a `{ref, title}` document also shows its ref);
 * 4. one "Prepare talking points for agenda item <n>: <item>" per agenda item;
 * 5. a time-box: {@link MINUTES_PER_AGENDA_ITEM} minutes per agenda item plus
 *    {@link WRAP_UP_MINUTES} minutes to wrap up, with the total;
 * 6. "Name a follow-up owner …" for notes, decisions and action items.
 *
 * Summary: one paragraph naming the meeting, the number of attendees and their names, the
 * numbered agenda, the number of documents to read and the suggested length.
 *
 * Attendees, agenda items and documents are trimmed and de-duplicated (attendees ignoring
 * case), keeping their first occurrence and order.
 * @throws {HandlerError} `VALIDATION_FAILED` (not retryable) when no attendee or no agenda item is left after trimming.
 */
export function buildPrepPack(params: PrepPackParams): PrepPackResult {
  const title = params.meeting_title.trim();
  const attendees = unique(params.attendees.map((a) => a.trim()).filter(Boolean), (a) => a.toLowerCase());
  const agenda = unique(params.agenda.map((item) => item.trim().replace(/[.;:]+$/, "")).filter(Boolean), (i) => i);
  const docs = unique(
    (params.docs ?? []).map((d) => (typeof d === "string" ? d.trim() : `${d.title.trim()} (${d.ref.trim()})`)),
    (d) => d,
  ).filter(Boolean);
  if (attendees.length === 0 || agenda.length === 0) {
    throw new HandlerError(
      "VALIDATION_FAILED",
      "A prep pack needs at least one non-blank attendee and agenda item",
      false,
    );
  }
  const names = list.format(attendees);
  const totalMinutes = agenda.length * MINUTES_PER_AGENDA_ITEM + WRAP_UP_MINUTES;

  const checklist = [
    `Share the agenda with all attendees: ${names}`,
    `Confirm attendance: ${names}`,
    ...docs.map((doc) => `Read: ${doc}`),
    ...agenda.map((item, i) => `Prepare talking points for agenda item ${i + 1}: ${item}`),
    `Time-box the meeting: about ${MINUTES_PER_AGENDA_ITEM} minutes per agenda item plus ${WRAP_UP_MINUTES} minutes ` +
      `to agree on decisions and next steps (${totalMinutes} minutes in total)`,
    "Name a follow-up owner who sends the notes, decisions and action items to all attendees after the meeting",
  ];

  const agendaOverview = agenda.map((item, i) => `(${i + 1}) ${item}`).join("; ");
  const reading =
    docs.length === 0
      ? "No documents were provided as pre-reading."
      : `${plural(docs.length, "document")} ${docs.length === 1 ? "is" : "are"} to be read beforehand.`;
  const summary =
    `"${title}" brings together ${plural(attendees.length, "attendee")} (${names}) to discuss ` +
    `${plural(agenda.length, "agenda item")}: ${agendaOverview}. ${reading} ` +
    `Plan for about ${totalMinutes} minutes.`;

  const talking_points = agenda.map(
    (item, i) =>
      `${i + 1}. ${item}: where do we stand, what needs to be decided in this meeting, and who owns the next step?`,
  );

  return { checklist, summary, talking_points, language: "en", provider: "offline" };
}

/** "1 attendee", "3 attendees". */
function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

/** The items whose `key` was not seen before, in order. */
function unique<T>(items: readonly T[], key: (item: T) => string): T[] {
  const seen = new Set<string>();
  return items.filter((item) => {
    const k = key(item);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/**
 * `prep_pack.create`: a meeting prep pack `{ checklist, summary, talking_points, language, provider, model? }`.
 * Offline (no model providers, or every provider failed and `offline` ends the chain):
 * {@link buildPrepPack}. With a model: the chain writes checklist, talking points and summary
 * in the profile's language, from the same params (validated; the params are checked by
 * {@link buildPrepPack} first, so blank input never reaches a model).
 * @throws {HandlerError} `VALIDATION_FAILED` (not retryable) for blank attendees or agenda; the chain's `LLM_*` codes.
 */
export const prepPackHandler = defineHandler("prep_pack.create", async (params, ctx): Promise<PrepPackResult> => {
  const offline = buildPrepPack(params);
  if (ctx.llm.providers.length === 0) return offline;
  const language = baseLanguage(ctx.profile.locale ?? "en");
  ctx.live({ stage: "preparing", percent: 0 });
  try {
    const r = await ctx.llm.generate(
      {
        task: "prep_pack",
        system: prepPackSystemPrompt(language),
        user: dataMessage("The meeting.", {
          meeting_title: params.meeting_title,
          attendees: params.attendees,
          agenda: params.agenda,
          docs: params.docs ?? [],
        }),
        schema: PrepPackAnswer,
        maxOutputTokens: 2000,
        streamField: "summary",
      },
      llmCallOf(ctx, "preparing"),
    );
    return { ...r.value, language, provider: r.provider, model: r.model };
  } catch (err) {
    if (!answerOffline(ctx, err)) throw err;
    ctx.logger.warn({ err }, "prep-pack:offline-fallback");
    return offline;
  }
});
