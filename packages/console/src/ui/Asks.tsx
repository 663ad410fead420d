import type { Tenant } from "@nexus/contracts";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { type DecisionBody, decide, isUnconfirmed } from "../api.ts";
import { correlationId, formatCountdown, formatInstant } from "../format.ts";
import { errorText, t, typeLabel } from "../i18n.ts";
import type { AskView } from "../state.ts";
import type { WireError } from "../wire.ts";
import { focusLost, memo } from "./memo.ts";
import { ActionParams, type Env } from "./Params.tsx";

/** A decision this page sent that the stream has not settled yet (UI-only; never state). */
export interface Sent {
  decision: "approve" | "reject";
  /**
   * `sending` first request; `sent` 202 (waiting for the stream); `confirming` retrying after
   * an unconfirmed answer; `unconfirmed` retries spent, still waiting; `error` refused.
   */
  phase: "sending" | "sent" | "confirming" | "unconfirmed" | "error";
  error?: WireError;
}

/** Re-renders every `ms` so countdowns move. */
function useNow(ms: number): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const h = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(h);
  }, [ms]);
  return now;
}

/** The outcome of a resolved ask, in words. */
export function askOutcome(a: AskView): string {
  switch (a.status) {
    case "decided":
    case "executing":
      return a.decision === "reject" ? t("asks.outcome.rejected") : t("asks.outcome.approved");
    case "done":
      return t("asks.outcome.done");
    case "failed":
      return t("asks.outcome.failed");
    case "cancelled":
      return t("asks.outcome.rejected");
    case "expired":
      return t("asks.outcome.expired");
    default:
      return t("asks.outcome.open");
  }
}

function Approvals(props: { ask: AskView; env: Env }) {
  const { ask, env } = props;
  const need = ask.approval_progress?.need ?? ask.approvals_required ?? 1;
  const list = ask.approvals ?? [];
  if (need <= 1 && list.length === 0) return null;
  const have = ask.approval_progress?.have ?? list.filter((a) => a.decision === "approve").length;
  return (
    <div class="nofm" data-testid={`ask-approvals-${ask.ask_id}`}>
      {need > 1 && (
        <>
          <p class="small">
            <strong>{t("asks.progress", { have, need })}</strong>
          </p>
          <progress max={need} value={Math.min(have, need)} aria-label={t("asks.progress", { have, need })} />
        </>
      )}
      {list.length > 0 && (
        <ul class="plain small">
          {list.map((a) => (
            <li key={a.principal}>
              {t(a.decision === "approve" ? "asks.approvedBy" : "asks.rejectedBy", { who: a.principal })}
              {a.at && <span class="muted"> · {formatInstant(a.at, env.tz, env.locale)}</span>}
              {a.note && <span class="muted"> — “{a.note}”</span>}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

interface CardProps {
  ask: AskView;
  sent: Sent | undefined;
  now: number;
  env: Env;
  canDecide: boolean;
  onDecide(ask: AskView, decision: "approve" | "reject", note: string): void;
}

const OpenCard = memo(function OpenCard(p: CardProps) {
  const { ask: a, sent, now, env } = p;
  const id = a.ask_id;
  const [note, setNote] = useState("");
  const msLeft = Date.parse(a.expires_at) - now;
  const busy = sent !== undefined && sent.phase !== "error";
  const units = { d: t("units.d"), h: t("units.h"), m: t("units.m"), s: t("units.s") };
  const progress = a.approval_progress;
  let status: string | null = null;
  if (sent?.phase === "sending") status = t("asks.sending");
  else if (sent?.phase === "sent")
    status = progress && progress.have < progress.need ? t("asks.youApproved") : t("asks.sent");
  else if (sent?.phase === "confirming") status = t("asks.confirming");
  else if (sent?.phase === "unconfirmed") status = `${t("asks.confirming")} ${t("asks.confirmingLong")}`;
  return (
    <li class="ask ask-open" data-testid={`ask-${id}`} data-status="open" aria-labelledby={`ask-h-${id}`}>
      <div class="ask-head">
        <h3 class="ask-title" id={`ask-h-${id}`}>
          {typeLabel(a.action.type)}
        </h3>
        <span class={`risk risk-${a.risk_level}`} data-testid={`ask-risk-${id}`} data-level={a.risk_level}>
          {t(`risk.${a.risk_level}`)}
        </span>
      </div>
      <p class="ask-meta small">
        {a.requested_by && (
          <span data-testid={`ask-requester-${id}`}>
            {t("asks.requestedBy")}: <strong>{a.requested_by}</strong>
          </span>
        )}
        <span data-testid={`ask-expiry-${id}`} class={msLeft < 5 * 60_000 ? "soon" : undefined}>
          {msLeft > 0 ? (
            <>
              {t("asks.expiresIn", { left: formatCountdown(msLeft, units) })}{" "}
              <time dateTime={a.expires_at} class="muted">
                {t("asks.expiresAt", { time: formatInstant(a.expires_at, env.tz, env.locale) })}
              </time>
            </>
          ) : (
            t("asks.expiredWaiting")
          )}
        </span>
      </p>
      <h4 class="small-heading">{t("asks.whatRuns")}</h4>
      <ActionParams type={a.action.type} params={a.action.params} env={env} testId={`ask-params-${id}`} />
      <Approvals ask={a} env={env} />
      {p.canDecide && (
        <div class="decide">
          <div class="field">
            <label for={`note-${id}`}>{t("asks.note")}</label>
            <textarea
              id={`note-${id}`}
              data-testid={`note-${id}`}
              rows={2}
              maxLength={2000}
              value={note}
              disabled={busy}
              onInput={(e) => setNote(e.currentTarget.value)}
            />
          </div>
          <div class="buttons">
            <button
              type="button"
              class="approve"
              data-testid={`approve-${id}`}
              disabled={busy}
              onClick={() => p.onDecide(a, "approve", note)}
            >
              {t("asks.approve")}
            </button>
            <button
              type="button"
              class="reject"
              data-testid={`reject-${id}`}
              disabled={busy}
              onClick={() => p.onDecide(a, "reject", note)}
            >
              {t("asks.reject")}
            </button>
          </div>
        </div>
      )}
      <p
        class={status ? "pending" : "sr-only"}
        id={`ask-status-${id}`}
        data-testid={status ? `ask-pending-${id}` : undefined}
        data-phase={sent?.phase}
        role="status"
        tabIndex={-1}
      >
        {status}
      </p>
      {sent?.phase === "unconfirmed" && (
        <button
          type="button"
          class="link"
          data-testid={`ask-retry-${id}`}
          onClick={() => p.onDecide(a, sent.decision, note)}
        >
          {t("asks.retry")}
        </button>
      )}
      {sent?.phase === "error" && sent.error && (
        <div class="error-box" role="alert" data-testid={`ask-error-${id}`} data-code={sent.error.code}>
          <p>{errorText(sent.error.code)}</p>
          <p class="small">{t("errors.code", { code: sent.error.code })}</p>
        </div>
      )}
    </li>
  );
});

const ResolvedCard = memo(function ResolvedCard(p: { ask: AskView; env: Env }) {
  const { ask: a, env } = p;
  const id = a.ask_id;
  const status = a.status ?? "open";
  const who = a.decided_by;
  return (
    <li class={`ask ask-${status}`} data-testid={`ask-${id}`} data-status={status} aria-labelledby={`ask-h-${id}`}>
      <div class="ask-head">
        <h3 class="ask-title" id={`ask-h-${id}`}>
          {typeLabel(a.action.type)}
        </h3>
        <span class={`risk risk-${a.risk_level}`} data-testid={`ask-risk-${id}`} data-level={a.risk_level}>
          {t(`risk.${a.risk_level}`)}
        </span>
      </div>
      <p class={`outcome outcome-${status}`} id={`ask-outcome-${id}`} data-testid={`ask-outcome-${id}`} tabIndex={-1}>
        <strong>{askOutcome(a)}</strong>
      </p>
      {(who || a.decided_at) && (
        <p class="small muted" data-testid={`ask-decider-${id}`}>
          {who && t("asks.decidedBy", { who })}
          {a.decided_at && (
            <>
              {" "}
              <time dateTime={a.decided_at}>
                {t("asks.decidedAt", { time: formatInstant(a.decided_at, env.tz, env.locale) })}
              </time>
            </>
          )}
        </p>
      )}
      {a.note && (
        <blockquote class="note small" data-testid={`ask-note-${id}`}>
          {a.note}
        </blockquote>
      )}
      <Approvals ask={a} env={env} />
      <details class="ran">
        <summary class="small">{t("asks.whatRuns")}</summary>
        <ActionParams type={a.action.type} params={a.action.params} env={env} />
      </details>
    </li>
  );
});

/** How many recent decisions are listed before "show all". */
const RECENT_SHOWN = 4;

/**
 * Open asks first — every parameter of what would run, requester, risk, countdown, N-of-M
 * progress, Approve (always green) / Reject (always red) — then the recent decisions with
 * decider, note and time. A decision answered `504 ACCEPT_UNCONFIRMED` (or not at all) is sent
 * again, same body, with backoff, and shown as "confirming…", never as failed.
 */
export const Asks = memo(function Asks(props: {
  tenant: Tenant;
  open: AskView[] | null;
  resolved: AskView[];
  env: Env;
  canDecide: boolean;
  stale: boolean;
}) {
  const { tenant, open, resolved, env } = props;
  const now = useNow(1000);
  const [sent, setSent] = useState<Record<string, Sent>>({});
  const [showAll, setShowAll] = useState(false);
  const focusAfter = useRef<string | null>(null);

  const decideRef = useRef<(ask: AskView, decision: "approve" | "reject", note: string) => Promise<void>>();
  const onDecide = useCallback(
    (ask: AskView, decision: "approve" | "reject", note: string) => void decideRef.current?.(ask, decision, note),
    [],
  );
  decideRef.current = async (ask: AskView, decision: "approve" | "reject", note: string) => {
    const id = ask.ask_id;
    const set = (s: Sent) => setSent((all) => ({ ...all, [id]: s }));
    set({ decision, phase: "sending" });
    focusAfter.current = id;
    const body: DecisionBody = { decision, correlation_id: correlationId() };
    if (note.trim()) body.note = note.trim();
    if (ask.action_hash) body.action_hash = ask.action_hash;
    const r = await decide(tenant, id, body, () => set({ decision, phase: "confirming" }));
    // A 202 only means "accepted": the card stays until the stream moves the ask out of `open`.
    if (r.ok) set({ decision, phase: "sent" });
    else if (isUnconfirmed(r)) set({ decision, phase: "unconfirmed" });
    else set({ decision, phase: "error", error: r.error });
  };

  // Focus follows the decided ask: its status line, then its outcome once the stream settled it.
  useEffect(() => {
    const id = focusAfter.current;
    if (!id) return;
    const outcome = document.getElementById(`ask-outcome-${id}`);
    const status = document.getElementById(`ask-status-${id}`);
    const target = outcome ?? status;
    if (!target) return;
    const a = document.activeElement;
    const onCard = a instanceof HTMLElement && a.closest(`[data-testid="ask-${id}"]`) !== null;
    if (a !== target && (focusLost() || onCard || (outcome && a === status))) target.focus();
    if (outcome) focusAfter.current = null;
  });

  const recent = showAll ? resolved : resolved.slice(0, RECENT_SHOWN);
  return (
    <section
      class="panel asks-panel"
      id="approvals"
      aria-labelledby="asks-h"
      data-stale={props.stale ? "true" : undefined}
      tabIndex={-1}
    >
      <div class="panel-head">
        <h2 id="asks-h">
          {t("asks.title")}{" "}
          {open && open.length > 0 && (
            <span class="count attention" data-testid="asks-count">
              {open.length}
            </span>
          )}
        </h2>
        {props.stale && <span class="stale-mark">{t("conn.stale")}</span>}
      </div>
      <div data-testid="asks">
        {open === null ? (
          <div class="skeleton-card" aria-busy="true" data-testid="asks-loading">
            <span class="sr-only">{t("app.loading")}</span>
            <span class="sk sk-line" aria-hidden="true" />
            <span class="sk sk-short" aria-hidden="true" />
          </div>
        ) : (
          <>
            <h3 class="sub">{t("asks.open")}</h3>
            {open.length === 0 && (
              <p class="empty-inline small" data-testid="asks-none">
                <svg viewBox="0 0 24 24" aria-hidden="true" class="empty-icon-sm">
                  <path d="M9 16.2 4.8 12l-1.4 1.4L9 19 21 7l-1.4-1.4z" fill="currentColor" />
                </svg>
                {t("asks.none")}
              </p>
            )}
            <ul class="asks" data-testid="asks-open">
              {open.map((a) => (
                <OpenCard
                  key={a.ask_id}
                  ask={a}
                  sent={sent[a.ask_id]}
                  now={now}
                  env={env}
                  canDecide={props.canDecide}
                  onDecide={onDecide}
                />
              ))}
            </ul>
            <h3 class="sub">{t("asks.recent")}</h3>
            {resolved.length === 0 && <p class="muted small">{t("asks.recentNone")}</p>}
            <ul class="asks" data-testid="asks-recent">
              {recent.map((a) => (
                <ResolvedCard key={a.ask_id} ask={a} env={env} />
              ))}
            </ul>
            {resolved.length > RECENT_SHOWN && (
              <button type="button" class="link" aria-expanded={showAll} onClick={() => setShowAll((s) => !s)}>
                {showAll ? t("worklog.hideDetails") : `${t("asks.recent")} (${resolved.length})`}
              </button>
            )}
          </>
        )}
      </div>
    </section>
  );
});
