import type { Tenant } from "@nexus/contracts";
import { useEffect, useMemo, useState } from "preact/hooks";
import { announce, effectiveLocale, effectiveTimeZone } from "../format.ts";
import type { ConsoleState } from "../state.ts";
import { createStore } from "../store.ts";
import { StreamClient } from "../stream.ts";
import { initialTenant, rememberTenant } from "../tenant.ts";
import { Asks } from "./Asks.tsx";
import { Composer } from "./Composer.tsx";
import { Header } from "./Header.tsx";
import { Settings } from "./Settings.tsx";
import { Worklog } from "./Worklog.tsx";

function storage(): Storage | null {
  try {
    return window.localStorage;
  } catch {
    return null;
  }
}

/** Keeps the URL's `?org_id=&project_id=` in step with the tenant shown, so a reload keeps it. */
function writeTenantToUrl(t: Tenant): void {
  const url = new URL(window.location.href);
  url.searchParams.set("org_id", t.org_id);
  url.searchParams.set("project_id", t.project_id);
  window.history.replaceState(null, "", url);
}

/**
 * Subscribes to the stream of `tenant` and returns the state it builds. Switching the tenant
 * closes the EventSource, clears the state and connects again without a cursor.
 */
function useConsoleState(tenant: Tenant): ConsoleState {
  const store = useMemo(() => createStore(), []);
  const [state, setState] = useState(store.get());
  useEffect(() => store.subscribe(setState), [store]);
  useEffect(() => {
    store.dispatch({ kind: "reset" });
    store.setTenant(tenant);
    const client = new StreamClient({ tenant, getCursor: () => store.get().lastId, dispatch: store.dispatch });
    client.start();
    return () => client.stop();
  }, [store, tenant]);
  return state;
}

/** Applies the skin from the stream (theme and accent colour) to the whole page. */
function useSkin(theme: string | undefined, accent: string | undefined): void {
  useEffect(() => {
    const root = document.documentElement;
    root.dataset.theme = theme === "light" || theme === "dark" ? theme : "system";
    if (accent && /^#[0-9a-fA-F]{6}$/.test(accent)) root.style.setProperty("--accent", accent);
    else root.style.removeProperty("--accent");
  }, [theme, accent]);
}

/** The console page. */
export function App() {
  const [tenant, setTenant] = useState<Tenant>(() => initialTenant(window.location.search, storage()));
  const state = useConsoleState(tenant);
  const snap = state.snapshot;
  const tz = effectiveTimeZone(snap?.profile.timezone);
  const locale = effectiveLocale(snap?.profile.locale);
  useSkin(snap?.assistant.skin.theme, snap?.assistant.skin.accent_color);

  const [announcement, setAnnouncement] = useState("");
  useEffect(() => {
    if (state.lastReport) setAnnouncement(announce(state.lastReport));
  }, [state.lastReport]);
  useEffect(() => {
    if (state.connState === "resynced") setAnnouncement("Connection resynced: state reloaded from a fresh snapshot");
  }, [state.connState]);

  const switchTenant = (t: Tenant) => {
    rememberTenant(t, storage());
    writeTenantToUrl(t);
    setTenant(t);
  };

  return (
    <>
      <a class="skip" href="#composer">
        Skip to the command composer
      </a>
      <Header tenant={tenant} onSwitch={switchTenant} connState={state.connState} autopilot={snap?.autopilot ?? null} />
      <main class="layout">
        <Composer key={`c-${tenant.org_id}/${tenant.project_id}`} tenant={tenant} snapshot={snap} timezone={tz} />
        <Worklog worklog={snap?.worklog ?? null} timezone={tz} locale={locale} />
        <div class="col-side">
          <Asks
            key={`a-${tenant.org_id}/${tenant.project_id}`}
            tenant={tenant}
            snapshot={snap}
            timezone={tz}
            locale={locale}
          />
          <Settings
            key={`s-${tenant.org_id}/${tenant.project_id}`}
            tenant={tenant}
            snapshot={snap}
            lastReport={state.lastReport}
          />
        </div>
      </main>
      <footer class="statusbar">
        <div aria-live="polite" aria-atomic="true" role="status" data-testid="live-region" class="live-region">
          {announcement}
        </div>
      </footer>
    </>
  );
}
