import { type ApiError, type Ask, COMMAND_TYPES, isCommandType, type Snapshot, type Tenant } from "@nexus/contracts";
import { useEffect, useState } from "preact/hooks";
import { sendJson } from "../api.ts";
import { correlationId, formatCountdown, formatInstant } from "../format.ts";
import { openAsks, resolvedAsks } from "../state.ts";

/** A decision this page sent and the stream has not confirmed yet (UI-only; never state). */
interface Sent {
  decision: "approve" | "reject";
  error?: ApiError;
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

/** The outcome shown for a resolved ask, from its status in the stream's state. */
export function askOutcome(a: Ask): string {
  switch (a.status) {
    case "decided":
    case "executing":
      return a.decision === "reject" ? "Rejected" : "Approved — executing…";
    case "done":
      return "Executed";
    case "failed":
      return "Execution failed";
    case "cancelled":
      return "Rejected";
    case "expired":
      return "Expired";
    default:
      return "Open";
  }
}

function str(v: unknown): string | undefined {
  return typeof v === "string" && v.length > 0 ? v : undefined;
}

/** The held action, as a definition list of what would happen. */
function ActionDetails(props: { ask: Ask }) {
  const { action } = props.ask;
  const p = action.params;
  const resource =
    typeof p.resource === "object" && p.resource !== null ? (p.resource as Record<string, unknown>) : null;
  const rows: [string, string | undefined][] = [
    ["Action", action.type],
    ["Recipient", str(p.recipient) ?? str(p.to)],
    [
      "Resource",
      resource ? [str(resource.title), str(resource.ref) && `(${resource.ref})`].filter(Boolean).join(" ") : undefined,
    ],
    ["Channel", str(p.channel)],
    ["Message", str(p.message)],
    ["Summary", str(action.summary)],
  ];
  return (
    <dl class="kv">
      {rows
        .filter((r): r is [string, string] => r[1] !== undefined)
        .map(([k, v]) => (
          <div key={k}>
            <dt>{k}</dt>
            <dd class={k === "Message" ? "prewrap" : undefined}>{v}</dd>
          </div>
        ))}
    </dl>
  );
}

function AskCard(props: {
  ask: Ask;
  sent: Sent | undefined;
  now: number;
  timezone: string;
  locale: string | undefined;
  onDecide(ask: Ask, decision: "approve" | "reject", note: string): void;
}) {
  const { ask: a, sent, now, timezone, locale } = props;
  const status = a.status ?? "open";
  const isOpen = status === "open";
  const [note, setNote] = useState("");
  const msLeft = Date.parse(a.expires_at) - now;
  const pending = isOpen && sent !== undefined && sent.error === undefined;
  const id = a.ask_id;
  return (
    <li class={`card ask ask-${status}`} data-testid={`ask-${id}`} data-status={status} aria-labelledby={`ask-h-${id}`}>
      <div class="card-head">
        <h4 class="card-title" id={`ask-h-${id}`}>
          {isCommandType(a.action.type) ? COMMAND_TYPES[a.action.type].title : a.action.type}
        </h4>
        <span class={`risk risk-${a.risk_level}`} data-testid={`ask-risk-${id}`}>
          {a.risk_level}
        </span>
      </div>
      <ActionDetails ask={a} />
      <p class="small muted" data-testid={`ask-expiry-${id}`}>
        {isOpen ? (
          msLeft > 0 ? (
            <>
              Expires in <strong>{formatCountdown(msLeft)}</strong> (
              <time dateTime={a.expires_at}>{formatInstant(a.expires_at, timezone, locale)}</time>)
            </>
          ) : (
            <>
              Expiry time passed (<time dateTime={a.expires_at}>{formatInstant(a.expires_at, timezone, locale)}</time>);
              waiting for the stream to confirm
            </>
          )
        ) : (
          <>
            Expiry <time dateTime={a.expires_at}>{formatInstant(a.expires_at, timezone, locale)}</time>
          </>
        )}
      </p>
      {isOpen && (
        <div class="decide">
          <div class="field">
            <label for={`note-${id}`}>Note (optional)</label>
            <textarea
              id={`note-${id}`}
              data-testid={`note-${id}`}
              rows={2}
              maxLength={2000}
              value={note}
              disabled={pending}
              onInput={(e) => setNote(e.currentTarget.value)}
            />
          </div>
          <div class="buttons">
            <button
              type="button"
              class="primary"
              data-testid={`approve-${id}`}
              disabled={pending}
              onClick={() => props.onDecide(a, "approve", note)}
            >
              Approve
            </button>
            <button
              type="button"
              class="danger"
              data-testid={`reject-${id}`}
              disabled={pending}
              onClick={() => props.onDecide(a, "reject", note)}
            >
              Reject
            </button>
          </div>
        </div>
      )}
      {pending && (
        <p class="pending" data-testid={`ask-pending-${id}`}>
          {sent.decision === "approve" ? "Approve" : "Reject"}: decision sent…
        </p>
      )}
      {sent?.error && isOpen && (
        <p class="error" role="alert" data-testid={`ask-error-${id}`}>
          <strong>{sent.error.code}</strong>: {sent.error.message}
        </p>
      )}
      {!isOpen && (
        <p class={`outcome outcome-${status}`} data-testid={`ask-outcome-${id}`}>
          <strong>{askOutcome(a)}</strong>
          {a.decided_by && <span class="muted small"> · decided by {a.decided_by}</span>}
        </p>
      )}
    </li>
  );
}

/** Open asks with Approve / Reject, and the recent decisions below them. */
export function Asks(props: {
  tenant: Tenant;
  snapshot: Snapshot | null;
  timezone: string;
  locale: string | undefined;
}) {
  const { tenant, snapshot, timezone, locale } = props;
  const now = useNow(1000);
  const [sent, setSent] = useState<Record<string, Sent>>({});
  const open = openAsks(snapshot);
  const resolved = resolvedAsks(snapshot);

  const decide = async (ask: Ask, decision: "approve" | "reject", note: string) => {
    setSent((s) => ({ ...s, [ask.ask_id]: { decision } }));
    const body: Record<string, unknown> = { decision, correlation_id: correlationId() };
    if (note.trim()) body.note = note.trim();
    if (ask.action_hash) body.action_hash = ask.action_hash;
    const r = await sendJson(tenant, "POST", `/approvals/${encodeURIComponent(ask.ask_id)}/decide`, body);
    // A 202 only means "accepted": the card keeps saying "decision sent…" until the stream
    // moves the ask out of `open`.
    if (!r.ok) setSent((s) => ({ ...s, [ask.ask_id]: { decision, error: r.error } }));
  };

  const card = (a: Ask) => (
    <AskCard
      key={a.ask_id}
      ask={a}
      sent={sent[a.ask_id]}
      now={now}
      timezone={timezone}
      locale={locale}
      onDecide={decide}
    />
  );
  return (
    <section class="panel" aria-labelledby="asks-h">
      <h2 id="asks-h">Approvals</h2>
      <div data-testid="asks">
        <h3 class="sub">
          Open asks <span class="count">{open.length}</span>
        </h3>
        {open.length === 0 && <p class="muted small">Nothing waits for a decision.</p>}
        <ul class="cards" data-testid="asks-open">
          {open.map(card)}
        </ul>
        <h3 class="sub">Recent decisions</h3>
        {resolved.length === 0 && <p class="muted small">None yet.</p>}
        <ul class="cards" data-testid="asks-recent">
          {resolved.map(card)}
        </ul>
      </div>
    </section>
  );
}
