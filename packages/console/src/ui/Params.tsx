import type { ComponentChildren } from "preact";
import { formatInstant, formatSlot, isTimeZone, slotZone } from "../format.ts";
import { has, t } from "../i18n.ts";

/** Language, formatting locale and time zone of what is shown (one object per change, so memo works). */
export interface Env {
  lang: string;
  locale: string;
  tz: string;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function text(v: unknown): string | undefined {
  if (typeof v === "string") return v.length > 0 ? v : undefined;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  return undefined;
}

function strings(v: unknown): string[] {
  if (!Array.isArray(v)) return [];
  return v
    .map((x) =>
      typeof x === "string" ? x : isObject(x) ? (text(x.title) ?? text(x.ref) ?? JSON.stringify(x)) : String(x),
    )
    .filter((x) => x.length > 0);
}

/** Human label of an enum-like value (`tones.formal`), the value itself when unknown. */
function valueLabel(group: string, v: string): string {
  return has(`${group}.${v}`) ? t(`${group}.${v}`) : v;
}

type Row = [key: string, label: string, value: ComponentChildren, long?: boolean];

/** Every parameter of an action, readable per command type; unknown keys are listed as they are. */
export function paramRows(type: string, p: Record<string, unknown>, env: Env): Row[] {
  const rows: Row[] = [];
  const used = new Set<string>();
  const add = (key: string, value: ComponentChildren | undefined, long = false, label = t(`params.${key}`)) => {
    used.add(key);
    if (value !== undefined && value !== null && value !== "") rows.push([key, label, value, long]);
  };
  const list = (items: string[], ordered = false) =>
    items.length === 0 ? undefined : ordered ? (
      <ol class="plain">
        {items.map((x, i) => (
          <li key={i}>{x}</li>
        ))}
      </ol>
    ) : (
      items.join(", ")
    );

  switch (type) {
    case "draft_email.create":
      add("to", text(p.to));
      add("subject", text(p.subject));
      add("brief", text(p.brief), true);
      add("tone", text(p.tone) && valueLabel("tones", p.tone as string));
      add("language", text(p.language));
      break;
    case "external_share.prepare": {
      const r = isObject(p.resource) ? p.resource : {};
      add("recipient", text(p.recipient));
      add(
        "resource",
        text(r.title) || text(r.ref) ? (
          <>
            {text(r.title)} {text(r.ref) && <code>{text(r.ref)}</code>}
          </>
        ) : undefined,
      );
      add("channel", text(p.channel) && valueLabel("channels", p.channel as string));
      add("message", text(p.message), true);
      break;
    }
    case "prep_pack.create":
      add("meeting_title", text(p.meeting_title));
      add("attendees", list(strings(p.attendees)));
      add("agenda", list(strings(p.agenda), true));
      add("docs", list(strings(p.docs)));
      break;
    case "doc.summary.create": {
      const body = text(p.text);
      add("text", body && (body.length > 600 ? `${body.slice(0, 600)}…` : body), true);
      add("max_sentences", text(p.max_sentences));
      break;
    }
    case "calendar.options.create": {
      const tz = isTimeZone(text(p.timezone)) ? (p.timezone as string) : env.tz;
      const w = isObject(p.window) ? p.window : {};
      add(
        "duration_minutes",
        typeof p.duration_minutes === "number"
          ? t("params.minutes", { n: p.duration_minutes })
          : text(p.duration_minutes),
      );
      add(
        "window",
        text(w.start) && text(w.end)
          ? formatSlot(w.start as string, w.end as string, slotZone(tz, undefined, tz), env.locale)
          : undefined,
      );
      const busy = Array.isArray(p.busy) ? p.busy.filter(isObject) : [];
      add(
        "busy",
        busy.length === 0
          ? undefined
          : list(
              busy.map((b) =>
                text(b.start) && text(b.end)
                  ? formatSlot(b.start as string, b.end as string, slotZone(tz, undefined, tz), env.locale)
                  : JSON.stringify(b),
              ),
            ),
      );
      add("timezone", text(p.timezone));
      const wh = isObject(p.working_hours) ? p.working_hours : null;
      add("working_hours", wh ? `${text(wh.start) ?? "?"}–${text(wh.end) ?? "?"}` : undefined);
      break;
    }
  }
  // Everything else, as sent: the approver sees every parameter of what will run.
  for (const [k, v] of Object.entries(p)) {
    if (used.has(k)) continue;
    const label = has(`params.${k}`) ? t(`params.${k}`) : k;
    const value =
      text(v) ??
      (typeof v === "string" && /^\d{4}-\d{2}-\d{2}T/.test(v) ? formatInstant(v, env.tz, env.locale) : undefined) ??
      JSON.stringify(v);
    add(k, value, typeof value === "string" && value.length > 60, label);
  }
  return rows;
}

/** The parameters of an action as a definition list. */
export function ActionParams(props: { type: string; params: Record<string, unknown>; env: Env; testId?: string }) {
  const rows = paramRows(props.type, props.params, props.env);
  return (
    <dl class="kv" data-testid={props.testId}>
      {rows.map(([key, label, value, long]) => (
        <div key={key} data-param={key}>
          <dt>{label}</dt>
          <dd class={long ? "prewrap" : undefined}>{value}</dd>
        </div>
      ))}
    </dl>
  );
}
