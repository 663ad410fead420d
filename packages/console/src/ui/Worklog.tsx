import {
  ApiError,
  CalendarOptionsResult,
  DocSummaryResult,
  DraftEmailResult,
  ExternalShareResult,
  PrepPackResult,
  type WorklogEntry,
} from "@nexus/contracts";
import { formatInstant, formatSlot, formatTime } from "../format.ts";

const STATUS_LABEL: Record<string, string> = {
  accepted: "accepted",
  running: "running",
  waiting_approval: "waiting for approval",
  done: "done",
  failed: "failed",
  cancelled: "cancelled",
};

/** The readable result of a finished command, by its type. */
function Result(props: { entry: WorklogEntry; timezone: string; locale: string | undefined }) {
  const { entry, timezone, locale } = props;
  const r = entry.result;
  const draft = DraftEmailResult.safeParse(r);
  if (entry.type === "draft_email.create" && draft.success) {
    return (
      <div class="email">
        <p>
          <span class="muted">Subject:</span> <strong>{draft.data.subject}</strong>
        </p>
        <pre class="prewrap">{draft.data.body}</pre>
      </div>
    );
  }
  const summary = DocSummaryResult.safeParse(r);
  if (entry.type === "doc.summary.create" && summary.success) {
    return summary.data.sentences.length > 0 ? (
      <ol class="sentences">
        {summary.data.sentences.map((s, i) => (
          <li key={i}>{s}</li>
        ))}
      </ol>
    ) : (
      <p>{summary.data.summary}</p>
    );
  }
  const prep = PrepPackResult.safeParse(r);
  if (entry.type === "prep_pack.create" && prep.success) {
    return (
      <div>
        <p>{prep.data.summary}</p>
        <h4 class="small-heading">Checklist</h4>
        <ul class="checklist">
          {prep.data.checklist.map((c, i) => (
            <li key={i}>{c}</li>
          ))}
        </ul>
      </div>
    );
  }
  const slots = CalendarOptionsResult.safeParse(r);
  if (entry.type === "calendar.options.create" && slots.success) {
    return (
      <div>
        <p class="muted small">Options in {timezone}:</p>
        <ol class="slots">
          {slots.data.options.map((o) => (
            <li key={o.start}>
              <time dateTime={o.start}>{formatSlot(o.start, o.end, timezone, locale)}</time>
            </li>
          ))}
        </ol>
      </div>
    );
  }
  const share = ExternalShareResult.safeParse(r);
  if (share.success) {
    return (
      <p>
        Shared “{share.data.resource.title}” with <strong>{share.data.recipient}</strong> via {share.data.channel}:{" "}
        <strong>{share.data.status}</strong> <span class="muted small">({share.data.share_id})</span>
      </p>
    );
  }
  return <pre class="prewrap json">{JSON.stringify(r, null, 2)}</pre>;
}

/** One worklog line. */
function WorkItem(props: { entry: WorklogEntry; timezone: string; locale: string | undefined }) {
  const { entry: w, timezone, locale } = props;
  const err = ApiError.safeParse(w.error);
  return (
    <li class={`card work status-${w.status}`} data-testid={`work-${w.command_id}`} data-status={w.status}>
      <div class="card-head">
        <h3 class="card-title">{w.title}</h3>
        <span class={`badge st st-${w.status}`} data-testid={`work-status-${w.command_id}`}>
          {STATUS_LABEL[w.status] ?? w.status}
        </span>
      </div>
      <p class="meta small muted">
        <code>{w.type}</code>
        {w.risk_level && <span class={`risk risk-${w.risk_level}`}>{w.risk_level}</span>}
        <time dateTime={w.updated_at} title={formatInstant(w.updated_at, timezone, locale)}>
          {formatTime(w.updated_at, timezone, locale)}
        </time>
      </p>
      {w.status === "done" && w.result !== undefined && (
        <div class="result" data-testid={`work-result-${w.command_id}`}>
          <Result entry={w} timezone={timezone} locale={locale} />
        </div>
      )}
      {w.status === "failed" && (
        <div class="result error" role="note" data-testid={`work-error-${w.command_id}`}>
          {err.success ? (
            <>
              <strong>{err.data.code}</strong>: {err.data.message}
            </>
          ) : (
            "The command failed."
          )}
        </div>
      )}
      {w.status === "waiting_approval" && <p class="small">Waiting for a human decision (see Approvals).</p>}
      {w.status === "cancelled" && <p class="small muted">Cancelled: the action never ran.</p>}
    </li>
  );
}

/** The worklog: every command the stream told about, most recently updated first. */
export function Worklog(props: { worklog: WorklogEntry[] | null; timezone: string; locale: string | undefined }) {
  const { worklog, timezone, locale } = props;
  return (
    <section class="panel col-work" aria-labelledby="worklog-h">
      <h2 id="worklog-h">Worklog</h2>
      {worklog === null && <p class="muted">Waiting for the first snapshot…</p>}
      {worklog !== null && worklog.length === 0 && <p class="muted">No commands yet.</p>}
      <ol class="cards" data-testid="worklog" aria-label="Commands, newest first">
        {(worklog ?? []).map((w) => (
          <WorkItem key={w.command_id} entry={w} timezone={timezone} locale={locale} />
        ))}
      </ol>
    </section>
  );
}
