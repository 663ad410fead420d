import type { Tenant, WorklogEntry } from "@nexus/contracts";
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from "preact/hooks";
import { formatInstant, formatSlot, formatTime, slotZone } from "../format.ts";
import { errorText, t, typeLabel } from "../i18n.ts";
import type { Progress } from "../state.ts";
import { readError } from "../wire.ts";
import { zoneOf } from "../zones.ts";
import { focusById, memo } from "./memo.ts";
import type { Env } from "./Params.tsx";

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);
const strs = (v: unknown): string[] | undefined =>
  Array.isArray(v) && v.every((x) => typeof x === "string") ? (v as string[]) : undefined;

/** Why a cancelled command never ran, when its ask is known. */
export type CancelReason = "rejected" | "expired" | undefined;

interface Slots {
  options: { start: string; end: string }[];
  timezone?: string;
}

function readSlots(r: unknown): Slots | null {
  if (!isObject(r) || !Array.isArray(r.options)) return null;
  const options = r.options.filter(
    (o): o is { start: string; end: string } => isObject(o) && typeof o.start === "string" && typeof o.end === "string",
  );
  return { options, ...(typeof r.timezone === "string" ? { timezone: r.timezone } : {}) };
}

/** The zone slots are shown in: the result's (optional field), the one this browser asked for, else the slots' own offset. */
function zoneFor(entry: WorklogEntry, slots: Slots, tenant: Tenant, env: Env) {
  return slotZone(slots.timezone ?? zoneOf(tenant, entry.command_id), slots.options[0]?.start, env.tz);
}

/** One line saying what came of a command. */
function summaryLine(
  w: WorklogEntry,
  reason: CancelReason,
  progress: Progress | undefined,
  tenant: Tenant,
  env: Env,
): string {
  switch (w.status) {
    case "failed": {
      const e = readError(w.error);
      return e ? errorText(e.code) : t("result.failed");
    }
    case "waiting_approval":
      return t("worklog.waiting");
    case "cancelled":
      return t(
        reason === "rejected" ? "worklog.rejected" : reason === "expired" ? "worklog.expired" : "worklog.cancelled",
      );
    case "accepted":
    case "running":
      return progress ? t("worklog.stage", { stage: progress.stage }) : "";
  }
  const r = w.result;
  if (!isObject(r)) return "";
  if (w.type === "draft_email.create") return str(r.subject) ?? "";
  if (w.type === "doc.summary.create") return strs(r.sentences)?.[0] ?? str(r.summary) ?? "";
  if (w.type === "prep_pack.create") return str(r.summary) ?? "";
  if (w.type === "calendar.options.create") {
    const slots = readSlots(r);
    const first = slots?.options[0];
    if (!slots || !first) return "";
    return `${t("result.options", { n: slots.options.length })} · ${formatSlot(first.start, first.end, zoneFor(w, slots, tenant, env), env.locale)}`;
  }
  if (typeof r.share_id === "string") {
    const res = isObject(r.resource) ? r.resource : {};
    return t("result.shared", {
      title: str(res.title) ?? "",
      recipient: str(r.recipient) ?? "",
      channel: t(`channels.${str(r.channel) ?? ""}`) || (str(r.channel) ?? ""),
    });
  }
  return "";
}

/** The readable result of a finished command, by its type. */
function Result(props: { entry: WorklogEntry; tenant: Tenant; env: Env }) {
  const { entry, env } = props;
  const r = entry.result;
  if (isObject(r)) {
    if (typeof r.subject === "string" && typeof r.body === "string") {
      return (
        <div class="email">
          <p>
            <span class="muted">{t("result.subject")}:</span> <strong>{r.subject}</strong>
          </p>
          <pre class="prewrap">{r.body}</pre>
        </div>
      );
    }
    const sentences = strs(r.sentences);
    if (sentences && typeof r.summary === "string") {
      return sentences.length > 0 ? (
        <ol class="sentences">
          {sentences.map((s, i) => (
            <li key={i}>{s}</li>
          ))}
        </ol>
      ) : (
        <p>{r.summary}</p>
      );
    }
    const checklist = strs(r.checklist);
    if (checklist && typeof r.summary === "string") {
      return (
        <div>
          <p>{r.summary}</p>
          <h4 class="small-heading">{t("result.checklist")}</h4>
          <ul class="checklist">
            {checklist.map((c, i) => (
              <li key={i}>{c}</li>
            ))}
          </ul>
        </div>
      );
    }
    const slots = readSlots(r);
    if (slots && slots.options.length > 0) {
      const z = zoneFor(entry, slots, props.tenant, env);
      return (
        <div>
          <p class="muted small" data-testid={`slots-zone-${entry.command_id}`}>
            {t("result.slotsIn", { zone: z.label })}
          </p>
          <ol class="slots">
            {slots.options.map((o) => (
              <li key={o.start}>
                <time dateTime={o.start}>{formatSlot(o.start, o.end, z, env.locale)}</time>
              </li>
            ))}
          </ol>
        </div>
      );
    }
    if (typeof r.share_id === "string") {
      const res = isObject(r.resource) ? r.resource : {};
      const status = str(r.status);
      return (
        <p>
          {t("result.shared", {
            title: str(res.title) ?? "",
            recipient: str(r.recipient) ?? "",
            channel: t(`channels.${str(r.channel) ?? ""}`) || (str(r.channel) ?? ""),
          })}
          {status && <strong> · {t(`result.shareStatus.${status}`) || status}</strong>}
        </p>
      );
    }
  }
  return <pre class="prewrap json">{JSON.stringify(r, null, 2)}</pre>;
}

interface RowProps {
  entry: WorklogEntry;
  env: Env;
  tenant: Tenant;
  expanded: boolean;
  progress: Progress | undefined;
  reason: CancelReason;
  onToggle(id: string): void;
}

/** One worklog row; re-renders only when one of its props changed. */
const Row = memo(function Row(p: RowProps) {
  const { entry: w, env } = p;
  const id = w.command_id;
  const line = summaryLine(w, p.reason, p.progress, p.tenant, env);
  const canExpand = (w.status === "done" && w.result !== undefined) || w.status === "failed";
  const running = w.status === "accepted" || w.status === "running";
  return (
    <li
      class={`row row-${w.status}`}
      id={`work-${id}`}
      data-testid={`work-${id}`}
      data-status={w.status}
      data-id={id}
      aria-labelledby={`work-t-${id}`}
      tabIndex={-1}
    >
      <div class="row-main">
        <div class="row-text">
          <h3 class="row-title" id={`work-t-${id}`}>
            {typeLabel(w.type)}
          </h3>
          {line && (
            <p class="row-sub" data-testid={`work-line-${id}`}>
              {line}
            </p>
          )}
        </div>
        <div class="row-meta">
          <span class={`badge st st-${w.status}`} data-testid={`work-status-${id}`}>
            {t(`status.${w.status}`)}
          </span>
          <time dateTime={w.updated_at} title={formatInstant(w.updated_at, env.tz, env.locale)}>
            {formatTime(w.updated_at, env.tz, env.locale)}
          </time>
        </div>
      </div>
      {canExpand && (
        <button
          type="button"
          class="link toggle"
          aria-expanded={p.expanded}
          aria-controls={`work-d-${id}`}
          aria-describedby={`work-t-${id}`}
          data-testid={`work-toggle-${id}`}
          onClick={() => p.onToggle(id)}
        >
          {p.expanded ? t("worklog.hideDetails") : t("worklog.details")}
        </button>
      )}
      {running && p.progress && (
        <div class="progress" data-testid={`work-progress-${id}`}>
          {p.progress.percent !== undefined && (
            <progress max={100} value={p.progress.percent} aria-label={t("worklog.stage", { stage: p.progress.stage })}>
              {p.progress.percent}%
            </progress>
          )}
          {p.progress.text && <pre class="prewrap stream-text">{p.progress.text}</pre>}
        </div>
      )}
      {p.expanded && w.status === "done" && w.result !== undefined && (
        <div class="result" id={`work-d-${id}`} data-testid={`work-result-${id}`}>
          <Result entry={w} tenant={p.tenant} env={env} />
        </div>
      )}
      {p.expanded && w.status === "failed" && (
        <div class="result error" id={`work-d-${id}`} role="note" data-testid={`work-error-${id}`}>
          {(() => {
            const e = readError(w.error);
            return e ? (
              <>
                <p>{errorText(e.code)}</p>
                <p class="muted small">{t("errors.code", { code: e.code })}</p>
              </>
            ) : (
              t("result.failed")
            );
          })()}
        </div>
      )}
    </li>
  );
});

/** Estimated row height before it was measured, in px. */
const ESTIMATE = 58;
/** Rows rendered above and below the viewport, in px. */
const OVERSCAN = 320;

/** First index whose bottom is below `y` (binary search over the cumulative tops). */
function indexAt(tops: Float64Array, n: number, y: number): number {
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (tops[mid + 1]! <= y) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** "Load older" state, owned by the page. */
export interface OlderControl {
  /** The server has a history endpoint and there is more. */
  available: boolean;
  loading: boolean;
  failed: boolean;
  done: boolean;
  load(): void;
}

/** Props of {@link Worklog}. */
export interface WorklogProps {
  /** Entries in display order; `null` before the first snapshot. */
  entries: WorklogEntry[] | null;
  env: Env;
  tenant: Tenant;
  progress: ReadonlyMap<string, Progress>;
  progressRev: number;
  reasons: ReadonlyMap<string, CancelReason>;
  expanded: ReadonlySet<string>;
  onToggle(id: string): void;
  older: OlderControl;
  stale: boolean;
}

/**
 * The worklog: every command the stream told about, most recently updated first, virtualised —
 * only the rows near the visible part of its scroll box are in the DOM, whatever the length.
 */
export function Worklog(p: WorklogProps) {
  const { entries, env } = p;
  const scroller = useRef<HTMLElement>(null);
  const heights = useRef(new Map<string, number>());
  const [scrollTop, setScrollTop] = useState(0);
  const [viewport, setViewport] = useState(640);
  const [, setMeasured] = useState(0);
  const anchor = useRef<{ id: string; top: number } | null>(null);
  const frame = useRef(0);
  const top = useRef(0);
  const observed = useRef(new WeakSet<Element>());
  const scrollFrame = useRef(0);

  const list = entries ?? [];
  const n = list.length;
  // Forget heights of rows that left the list (bounded memory over long bursts).
  useMemo(() => {
    const h = heights.current;
    if (h.size <= n * 2 + 200) return;
    const keep = new Set(list.map((e) => e.command_id));
    for (const id of h.keys()) if (!keep.has(id)) h.delete(id);
  }, [entries]);
  // Cumulative tops, recomputed every render (heights change without the list changing): O(n) additions.
  const tops = new Float64Array(n + 1);
  for (let i = 0; i < n; i++) tops[i + 1] = tops[i]! + (heights.current.get(list[i]!.command_id) ?? ESTIMATE);
  const total = tops[n] ?? 0;
  // Where each command is in the list, for anchoring while scrolled (not needed at the top).
  const index = useMemo(() => {
    const m = new Map<string, number>();
    if (anchor.current) for (let i = 0; i < n; i++) m.set(list[i]!.command_id, i);
    return m;
  }, [entries, anchor.current !== null]);
  const start = Math.max(0, indexAt(tops, n, scrollTop - OVERSCAN));
  const end = Math.min(n, indexAt(tops, n, scrollTop + viewport + OVERSCAN) + 1);

  // One ResizeObserver measures the rendered rows; a changed height re-renders once per frame.
  const observer = useMemo(
    () =>
      typeof ResizeObserver === "undefined"
        ? null
        : new ResizeObserver((items) => {
            let changed = false;
            for (const it of items) {
              const el = it.target as HTMLElement;
              const id = el.dataset.id;
              if (!id) continue;
              const h = Math.round(it.borderBoxSize?.[0]?.blockSize ?? el.offsetHeight);
              if (h > 0 && heights.current.get(id) !== h) {
                heights.current.set(id, h);
                changed = true;
              }
            }
            if (changed && !frame.current) {
              frame.current = requestAnimationFrame(() => {
                frame.current = 0;
                setMeasured((x) => x + 1);
              });
            }
          }),
    [],
  );
  useEffect(() => () => observer?.disconnect(), [observer]);

  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    // Position in the whole list for assistive technology (set here so that rows, memoised, do
    // not re-render when entries are added above them); new rows are measured from now on.
    const rows = el.firstElementChild?.children ?? [];
    for (let k = 0; k < rows.length; k++) {
      const li = rows[k] as HTMLElement;
      const pos = String(start + k + 1);
      if (li.getAttribute("aria-posinset") !== pos) li.setAttribute("aria-posinset", pos);
      if (li.getAttribute("aria-setsize") !== String(n)) li.setAttribute("aria-setsize", String(n));
      if (!observed.current.has(li)) {
        observed.current.add(li);
        observer?.observe(li);
      }
    }
    // Keep the first visible row where it was when rows were added or grew above it. The
    // scroll position comes from the scroll events: reading it here would force a layout.
    const a = anchor.current;
    let y = top.current;
    if (a && y > 0) {
      const i = index.get(a.id);
      if (i !== undefined && tops[i] !== a.top) {
        y = Math.max(0, y + tops[i]! - a.top);
        el.scrollTop = y;
        top.current = y;
      }
    }
    const first = indexAt(tops, n, y);
    anchor.current = y > 0 && list[first] ? { id: list[first]!.command_id, top: tops[first]! } : null;
  });

  useEffect(() => {
    const el = scroller.current;
    if (!el) return;
    const measure = () => setViewport(el.clientHeight || 640);
    measure();
    const ro = typeof ResizeObserver === "undefined" ? null : new ResizeObserver(measure);
    ro?.observe(el);
    return () => ro?.disconnect();
  }, [entries === null]);

  const onScroll = () => {
    const el = scroller.current;
    if (!el) return;
    top.current = el.scrollTop;
    if (!scrollFrame.current) {
      scrollFrame.current = requestAnimationFrame(() => {
        scrollFrame.current = 0;
        setScrollTop(top.current);
      });
    }
  };

  return (
    <div class="panel work-panel" data-stale={p.stale ? "true" : undefined}>
      <div class="panel-head">
        <h2 id="worklog-h">{t("worklog.title")}</h2>
        {entries !== null && <span class="muted small">{t("worklog.count", { n })}</span>}
        {p.stale && <span class="stale-mark">{t("conn.stale")}</span>}
      </div>
      {entries === null && (
        <div class="skeleton-list" aria-busy="true" data-testid="worklog-loading">
          <span class="sr-only">{t("app.loading")}</span>
          {[0, 1, 2, 3, 4].map((i) => (
            <div key={i} class="skeleton-row" aria-hidden="true">
              <span class="sk sk-line" />
              <span class="sk sk-short" />
            </div>
          ))}
        </div>
      )}
      {entries !== null && n === 0 && !p.older.available && (
        <div class="empty" data-testid="worklog-empty">
          <svg class="empty-icon" viewBox="0 0 24 24" aria-hidden="true">
            <path d="M4 5h16v2H4zm0 6h16v2H4zm0 6h10v2H4z" fill="currentColor" />
          </svg>
          <p class="empty-title">{t("worklog.emptyTitle")}</p>
          <p class="muted small">{t("worklog.empty")}</p>
        </div>
      )}
      {entries !== null && (
        <section
          class="work-scroll"
          ref={scroller}
          onScroll={onScroll}
          // biome-ignore lint/a11y/noNoninteractiveTabindex: a scrollable region must be reachable with the keyboard (WCAG 2.1.1)
          tabIndex={0}
          aria-labelledby="worklog-h"
          data-testid="worklog-scroll"
        >
          <ol
            class="rows"
            data-testid="worklog"
            style={{ paddingTop: `${tops[start]}px`, paddingBottom: `${total - (tops[end] ?? total)}px` }}
          >
            {list.slice(start, end).map((w) => (
              <Row
                key={w.command_id}
                entry={w}
                env={env}
                tenant={p.tenant}
                expanded={p.expanded.has(w.command_id)}
                progress={p.progress.get(w.command_id)}
                reason={w.status === "cancelled" ? p.reasons.get(w.command_id) : undefined}
                onToggle={p.onToggle}
              />
            ))}
          </ol>
          {p.older.available && (
            <div class="older">
              {p.older.done ? (
                <p class="muted small" data-testid="older-done">
                  {t("worklog.noMore")}
                </p>
              ) : (
                <button
                  type="button"
                  data-testid="load-older"
                  disabled={p.older.loading}
                  aria-busy={p.older.loading}
                  onClick={p.older.load}
                >
                  {p.older.loading ? t("worklog.loadingOlder") : t("worklog.loadOlder")}
                </button>
              )}
              {p.older.failed && (
                <p class="error small" role="alert">
                  {t("worklog.olderFailed")}
                </p>
              )}
            </div>
          )}
        </section>
      )}
    </div>
  );
}

/** Scrolls the worklog to the top and focuses the entry of `commandId` once it is rendered. */
export function focusEntry(commandId: string): void {
  const box = document.querySelector<HTMLElement>('[data-testid="worklog-scroll"]');
  if (box) box.scrollTop = 0;
  focusById(`work-${commandId}`);
}
