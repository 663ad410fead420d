import { CURSOR_RE, ReportEvent } from "@nexus/contracts";

/**
 * True when `s` is a report_id: a decimal string without sign or leading zeros (the contracts'
 * `CURSOR_RE`; docs/contract.md "The report stream").
 */
export function isReportId(s: unknown): s is string {
  return typeof s === "string" && CURSOR_RE.test(s);
}

/**
 * Orders two report_ids exactly (as decimal strings: longer is larger, then lexicographic), so
 * no precision is lost whatever their size. Negative when `a` is older than `b`.
 */
export function compareReportIds(a: string, b: string): number {
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The outcome of {@link parseReportEvent}. */
export type ParsedReport = { ok: true; value: ReportEvent } | { ok: false; issue: string };

type Path = readonly PropertyKey[];

function isErrorCodePath(path: Path): boolean {
  return path.length >= 2 && path[path.length - 1] === "code" && path[path.length - 2] === "error";
}

function getAt(obj: unknown, path: Path): unknown {
  let cur = obj;
  for (const k of path) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[k];
  }
  return cur;
}

function setAt(obj: unknown, path: Path, value: unknown): void {
  const parent = getAt(obj, path.slice(0, -1));
  if (parent !== null && typeof parent === "object")
    (parent as Record<PropertyKey, unknown>)[path[path.length - 1] as PropertyKey] = value;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * `parsed` (a zod output: known keys only, defaults filled in) with every key of `received`
 * that zod dropped put back, recursively; arrays are merged element by element. Used for the
 * received-object mode (`StreamOptions.keepReceived`): fields a newer server added before the
 * contracts name them survive ("consumers must treat unknown fields as optional").
 */
export function withReceivedFields<T>(parsed: T, received: unknown): T {
  if (Array.isArray(parsed)) {
    if (!Array.isArray(received)) return parsed;
    return parsed.map((v, i) => withReceivedFields(v, received[i])) as T;
  }
  if (!isObject(parsed) || !isObject(received)) return parsed;
  const out: Record<string, unknown> = { ...received };
  for (const [k, v] of Object.entries(parsed)) out[k] = withReceivedFields(v, received[k]);
  return out as T;
}

/** Options of {@link parseReportEvent}. */
export interface ParseReportOptions {
  /**
   * Return the received object itself once it validates, instead of zod's copy: no allocation
   * per report and no key stripped. The report schemas have no transforms; a default of a
   * nested optional field (e.g. a command's `params`) is then not filled in. Default false.
   */
  keepReceived?: boolean;
}

/**
 * Parses the `data` of a `report` event (or a history item) with the contracts' `ReportEvent`,
 * leniently in one respect: an error `code` the contracts do not list yet (a report's
 * `error.code`, e.g. in `command.failed`) is accepted and kept, because the contract's error
 * catalogue grows and a client must not lose a report over it. Anything else that does not
 * match is refused.
 */
export function parseReportEvent(data: unknown, o: ParseReportOptions = {}): ParsedReport {
  const first = ReportEvent.safeParse(data);
  if (first.success) return { ok: true, value: o.keepReceived ? (data as ReportEvent) : first.data };
  const codePaths = first.error.issues.filter((i) => isErrorCodePath(i.path)).map((i) => i.path);
  const onlyCodes = codePaths.length === first.error.issues.length;
  const allStrings = codePaths.every((p) => typeof getAt(data, p) === "string" && getAt(data, p) !== "");
  if (!onlyCodes || !allStrings) return { ok: false, issue: first.error.message };
  const probe = structuredClone(data);
  const codes = codePaths.map((p) => getAt(data, p));
  for (const p of codePaths) setAt(probe, p, "INTERNAL");
  const second = ReportEvent.safeParse(probe);
  if (!second.success) return { ok: false, issue: second.error.message };
  if (o.keepReceived) return { ok: true, value: data as ReportEvent };
  codePaths.forEach((p, i) => {
    setAt(second.data, p, codes[i]);
  });
  return { ok: true, value: second.data };
}
