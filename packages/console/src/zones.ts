/**
 * The time zone each calendar command asked for (`params.timezone`), remembered for commands sent
 * from this browser: a worklog entry carries the result's slots but not the command's params, and
 * the slots must be shown in the zone that was asked for, also after a reload. At most
 * {@link ZONES_LIMIT} per tenant, in localStorage.
 */
import type { Tenant } from "@nexus/contracts";

/** Commands remembered per tenant. */
export const ZONES_LIMIT = 200;

const cache = new Map<string, Map<string, string>>();

function key(t: Tenant): string {
  return `nexus.console.zones.${t.org_id}/${t.project_id}`;
}

function load(t: Tenant): Map<string, string> {
  const k = key(t);
  let m = cache.get(k);
  if (m) return m;
  m = new Map();
  try {
    const raw = localStorage.getItem(k);
    const list = raw ? (JSON.parse(raw) as [string, string][]) : [];
    if (Array.isArray(list))
      for (const [id, tz] of list) if (typeof id === "string" && typeof tz === "string") m.set(id, tz);
  } catch {
    // No storage: remembered for this page only.
  }
  cache.set(k, m);
  return m;
}

/** Remembers that command `commandId` of tenant `t` asked for zone `tz`. */
export function rememberZone(t: Tenant, commandId: string, tz: string): void {
  const m = load(t);
  m.delete(commandId);
  m.set(commandId, tz);
  while (m.size > ZONES_LIMIT) m.delete(m.keys().next().value as string);
  try {
    localStorage.setItem(key(t), JSON.stringify([...m]));
  } catch {
    // Quota or private mode.
  }
}

/** The zone command `commandId` asked for, when this browser sent it. */
export function zoneOf(t: Tenant, commandId: string): string | undefined {
  return load(t).get(commandId);
}
