/**
 * Which tenant the console shows: `?org_id=&project_id=` in the URL wins, then the last one
 * switched to (localStorage), then `acme` / `nexus`.
 */
import { isTenantToken, type Tenant } from "@nexus/contracts";

/** The tenant shown when nothing else is chosen. */
export const DEFAULT_TENANT: Tenant = { org_id: "acme", project_id: "nexus" };
/** localStorage key of the remembered tenant. */
export const TENANT_STORAGE_KEY = "nexus.console.tenant";
/** localStorage key of the recently used tenants. */
export const RECENT_STORAGE_KEY = "nexus.console.recent-tenants";
/** How many recent tenants the switcher lists. */
export const RECENT_LIMIT = 8;

/** A minimal `Storage` (so tests can pass a fake). */
export interface KeyValueStore {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

/** Picks the tenant from the URL's query, else `store`, else {@link DEFAULT_TENANT}. */
export function initialTenant(search: string, store: KeyValueStore | null): Tenant {
  const q = new URLSearchParams(search);
  const org = q.get("org_id");
  const project = q.get("project_id");
  if (isTenantToken(org) && isTenantToken(project)) return { org_id: org, project_id: project };
  try {
    const raw = store?.getItem(TENANT_STORAGE_KEY);
    if (raw) {
      const t = JSON.parse(raw) as Partial<Tenant>;
      if (isTenantToken(t.org_id) && isTenantToken(t.project_id)) return { org_id: t.org_id, project_id: t.project_id };
    }
  } catch {
    // A broken or blocked storage is the same as an empty one.
  }
  return DEFAULT_TENANT;
}

/** Remembers `t` for the next visit and at the top of the recent list; ignores storage that refuses writes. */
export function rememberTenant(t: Tenant, store: KeyValueStore | null): void {
  try {
    store?.setItem(TENANT_STORAGE_KEY, JSON.stringify(t));
    const recent = [t, ...recentTenants(store).filter((r) => !sameTenant(r, t))].slice(0, RECENT_LIMIT);
    store?.setItem(RECENT_STORAGE_KEY, JSON.stringify(recent));
  } catch {
    // Private mode or quota: the URL still carries the tenant.
  }
}

/** True when `a` and `b` name the same tenant. */
export function sameTenant(a: Tenant, b: Tenant): boolean {
  return a.org_id === b.org_id && a.project_id === b.project_id;
}

/** The recently used tenants, most recent first (valid ones only). */
export function recentTenants(store: KeyValueStore | null): Tenant[] {
  try {
    const raw = store?.getItem(RECENT_STORAGE_KEY);
    const list = raw ? (JSON.parse(raw) as unknown) : [];
    if (!Array.isArray(list)) return [];
    return list
      .filter((t): t is Tenant => isTenantToken(t?.org_id) && isTenantToken(t?.project_id))
      .map((t) => ({ org_id: t.org_id, project_id: t.project_id }))
      .slice(0, RECENT_LIMIT);
  } catch {
    return [];
  }
}

/** The HTTP headers that name the tenant on every request. */
export function tenantHeaders(t: Tenant): Record<string, string> {
  return { "x-org-id": t.org_id, "x-project-id": t.project_id };
}

/**
 * The stream URL for `t` (EventSource cannot send headers, so the tenant goes in the query),
 * with `cursor` when resuming after the browser gave up reconnecting. With a one-use `ticket`
 * (signed in) the ticket names tenant and principal, and nothing else goes in the URL.
 */
export function streamUrl(t: Tenant, cursor: number | null, ticket?: string): string {
  const q = ticket
    ? new URLSearchParams({ ticket })
    : new URLSearchParams({ org_id: t.org_id, project_id: t.project_id });
  if (cursor !== null) q.set("cursor", String(cursor));
  return `/agent/reports/stream?${q.toString()}`;
}
